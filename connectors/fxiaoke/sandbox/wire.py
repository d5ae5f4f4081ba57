"""How the Fxiaoke sandbox renders the synthetic company, and its query engine.

Follows docs/vendors/fxiaoke.md (§n): `_id` 24-hex, openUserId `FSUID_<32 hex>`, times in epoch
ms, close_date 00:00 Asia/Shanghai in ms, amounts as strings, owner lists with
`__r` companions, life_status / is_deleted, null fields left out (§2). Where the
notes give no form, the choice is marked "guess".
"""

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from connectors.fxiaoke.wire import (
    ACTIVITY_OBJECT,
    OPERATORS,
    SALES_STATUS_OPTIONS,
    day_ms,
    to_ms,
)
from connectors.sandbox import vocab
from connectors.sandbox.dataset import Account, Activity, Company, Deal, Rep, StageDef

ROOT_DEPARTMENT = 999999  # §3: real data shows 999999 as the parent of top departments
MODIFIED = "last_modified_time"
STANDARD = {"AccountObj": "accounts", "NewOpportunityObj": "deals"}  # API name -> entity
GOALS_OBJECT = "object_SalesGoal__c"
READ_ONLY = {ACTIVITY_OBJECT: "activities"}  # served for reading only
# §10 (guess): ActiveRecordObj's interactive_types, a multi-select of how the rep reached the
# customer (codes, labels as `__r`); a plain note has none. Calls and meetings the rep held
# become follow-up records (planned ones would be schedules, ScheduleObj, not served);
# tasks have no object (research §2.B).
INTERACTIVE_TYPES = {"call": ("1", "电话"), "meeting": ("2", "拜访")}
ACTIVE_RECORD_TYPES = (("1", "跟进记录"),)  # guess: active_record_type's one option
# §4 fallback goals object as an admin really gets it: fields created in the object
# designer receive generated API names (field_xxxxx__c, §3: custom fields look like
# field_rU4l5__c in a real record) and select options generated codes; only the labels
# are the admin's. API name -> (type, label, options as (code, label)).
GOAL_FIELDS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "name": ("text", "名称", ()),
    "field_p3Rk1__c": ("date", "Period", ()),
    "field_t7Lq2__c": ("select_one", "Period type", (
        ("option1", "Month"), ("9eL1m3kQz", "Quarter"), ("a8Hw2pX0c", "Year"))),
    "field_e2Mn4__c": ("employee", "Employee", ()),
    "field_d5Hs6__c": ("department", "Department", ()),
    "field_rU4l5__c": ("currency", "Target", ()),
    "field_m8Kc7__c": ("select_one", "Metric", (
        ("option1", "Bookings"), ("Jx0b7R2sd", "Deals won"))),
    "field_x9Wd3__c": ("text", "External ID", ()),
    "owner": ("employee", "负责人", ()),
}
GOAL_KEY_FIELD = "field_x9Wd3__c"  # the unique text field
_CENT = Decimal("0.01")
_STATUS_OF = {"open": "1", "won": "2", "lost": "3"}  # guess beyond "2" = 赢单 (§3)
# Describe labels follow the tenant's language (§3: a real traditional-Chinese tenant shows
# 贏單): sales_status options (1-4) and the two outcome stages, per language.
LANGUAGES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "zh-CN": (tuple(label for _, label in SALES_STATUS_OPTIONS), "赢单", "输单"),
    "zh-TW": (("進行中", "贏單", "輸單", "無效"), "贏單", "輸單"),
    "en": (("In Progress", "Won", "Lost", "Invalid"), "Won", "Lost"),
}
INDUSTRY_CODES = {name: str(i + 1) for i, name in enumerate(vocab.INDUSTRIES)}


class QueryError(Exception):
    """A rejected query: errorCode and message in the vendor's words where known."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def hex_id(record_id: str) -> str:
    """Dataset ids (19-digit numbers) as 24-hex ids, in the same order (§3: ObjectId-like)."""
    return f"{int(record_id):024x}"


def dataset_id(value: str) -> str | None:
    try:
        return str(int(value, 16)) if len(value) == 24 else None
    except ValueError:
        return None


def open_user_id(rep: Rep) -> str:
    return "FSUID_" + hashlib.md5(rep.id.encode()).hexdigest().upper()  # §1.1 ID format


@dataclass(frozen=True)
class FxStage:
    code: str  # §3: a position inside its sales process; processes reuse codes
    label: str
    process_id: str
    pipeline: str
    probability: int


@dataclass
class Tenant:
    """The company seen as one Fxiaoke tenant: directory, stage codes, currency."""

    company: Company
    currency: str = "CNY"
    language: str = "zh-CN"  # the labels describe answers in (LANGUAGES)
    multi_currency: bool = False  # deals in their own currency with mc_* fields
    employee: dict[str, str] = field(default_factory=dict)  # rep id -> employee id ("1000")
    fsuid: dict[str, str] = field(default_factory=dict)  # rep id -> FSUID_...
    rep_of: dict[str, Rep] = field(default_factory=dict)  # FSUID_... -> rep
    department: dict[str, int] = field(default_factory=dict)  # team -> department id
    processes: dict[str, str] = field(default_factory=dict)  # pipeline -> process _id
    stages: list[FxStage] = field(default_factory=list)
    stage_of: dict[str, FxStage] = field(default_factory=dict)  # dataset stage id -> FxStage
    manager: Rep = field(init=False)  # the directory is fixed: looked up once, not per row

    def __post_init__(self) -> None:
        company = self.company
        self.manager = company.manager
        for i, rep in enumerate(company.reps):
            self.employee[rep.id] = str(1000 + i)
            self.fsuid[rep.id] = open_user_id(rep)
            self.rep_of[self.fsuid[rep.id]] = rep
            self.department.setdefault(rep.team, 1001 + len(self.department))
        # §3: sales_stage is a position inside its sales process (the real record: stage
        # "5" of 5 = 贏單, currentStageIndex / totalStageCount), so every process numbers
        # its stages from 1 and codes overlap between processes; a process ends in the two
        # outcome stages won / lost.
        _, won, lost = LANGUAGES[self.language]
        for pipeline in company.pipelines():
            self.processes[pipeline] = hashlib.md5(pipeline.encode()).hexdigest()[:24]
            own = [s for s in company.stages if s.pipeline == pipeline]
            outcome: dict[str, FxStage] = {}
            for stage in own:
                label = stage.name if stage.category == "open" else \
                    won if stage.category == "won" else lost
                fx = outcome.get(label) or self._add_stage(label, pipeline, stage.probability)
                if stage.category != "open":
                    outcome[label] = fx
                self.stage_of[stage.id] = fx

    def _add_stage(self, label: str, pipeline: str, probability: int) -> FxStage:
        position = 1 + sum(1 for s in self.stages if s.pipeline == pipeline)
        fx = FxStage(str(position), label, self.processes[pipeline], pipeline, probability)
        self.stages.append(fx)
        return fx

    def deal_money(self, deal: Deal) -> dict[str, Any]:
        """amount in the tenant currency; in multi-currency mode the deal's own amount and
        currency with mc_exchange_rate = tenant-currency units per one deal-currency unit
        (connectors.fxiaoke.mapping._in_home states the convention)."""
        if not self.multi_currency or deal.currency == self.currency:
            return {"amount": f"{self.amount(deal):.2f}"}
        rate = (self.amount_of(Decimal(1) / deal.exchange_rate)).quantize(Decimal("0.000001"))
        return {"amount": f"{deal.amount.quantize(_CENT):.2f}", "mc_currency": deal.currency,
                "mc_exchange_rate": f"{rate}", "mc_functional_currency": self.currency}

    def amount_of(self, home: Decimal) -> Decimal:
        """An amount in the dataset's home currency, in the tenant's currency."""
        rate = Decimal(1) if self.currency == self.company.home_currency else \
            self.company.currencies[self.currency]
        return home * rate

    def amount(self, deal: Deal) -> Decimal:
        """The deal's value in the tenant currency (the dataset keeps other currencies)."""
        return self.amount_of(deal.amount / deal.exchange_rate).quantize(_CENT)

    # ---- directory (§3) ---------------------------------------------------------------------
    def departments(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"id": ROOT_DEPARTMENT, "name": self.company.name,
                                       "isStop": False, "order": 0}]
        rows += [{"id": dept, "name": team, "parentId": ROOT_DEPARTMENT, "isStop": False,
                  "order": i + 1} for i, (team, dept) in enumerate(self.department.items())]
        return rows

    def user(self, rep: Rep) -> dict[str, Any]:
        index = int(self.employee[rep.id]) - 1000
        dept = self.department[rep.team]
        manager = self.manager
        # Many Fxiaoke reps have a mobile and no email: the last two reps have none.
        email = None if index >= len(self.company.reps) - 2 and rep is not manager \
            else rep.email
        row: dict[str, Any] = {
            "openUserId": self.fsuid[rep.id], "name": rep.full_name, "nickName": rep.first_name,
            "isStop": not rep.active, "mobile": f"1380013{index:04d}",
            "position": rep.role, "departmentIds": [dept], "mainDepartmentId": dept,
            "employeeNumber": f"E{index + 1:04d}", "createTime": to_ms(rep.created_at),
        }
        if email:  # §2: empty fields are left out
            row["email"] = email
        if rep is not manager:
            row["leaderId"] = self.fsuid[manager.id]
        return row

    def owner(self, rep_id: str) -> dict[str, Any]:
        rep = self.company.rep_by_id[rep_id]
        dept = str(self.department[rep.team])
        return {"owner": [self.fsuid[rep_id]],
                "owner__r": {"id": self.employee[rep_id], "name": rep.full_name, "dept": dept},
                "owner_department_id": dept, "data_own_department": [dept]}

    # ---- records (§3) -----------------------------------------------------------------------
    def account_row(self, account: Account, voided_at: int | None,
                    names: dict[str, str]) -> dict[str, Any]:
        row: dict[str, Any] = {"_id": hex_id(account.id), "name": account.name,
                               **self.owner(account.owner_id)}
        if account.industry:
            row["industry_level1"] = INDUSTRY_CODES.get(account.industry, "0")
            row["industry_level1__r"] = account.industry
        row.update(self._system(account.owner_id, account.created_at, account.modified_at,
                                voided_at, "AccountObj"))
        names[account.id] = account.name
        return row

    def deal_row(self, deal: Deal, voided_at: int | None,
                 account_names: dict[str, str]) -> dict[str, Any]:
        stage: StageDef = self.company.stage_by_id[deal.stage_id]
        fx = self.stage_of[stage.id]
        amount = self.amount(deal)
        row: dict[str, Any] = {
            "_id": hex_id(deal.id), "name": deal.name, **self.deal_money(deal),
            "close_date": day_ms(deal.close_date),
            "sales_process_id": fx.process_id, "sales_process_id__r": fx.pipeline,
            "sales_stage": fx.code, "sales_stage__r": fx.label,
            "sales_status": _STATUS_OF[stage.category],
            "sales_status__r": LANGUAGES[self.language][0][int(_STATUS_OF[stage.category]) - 1],
            "probability": deal.probability,
            "probability_amount": f"{(amount * deal.probability / 100).quantize(_CENT):.2f}",
            "stg_changed_time": to_ms(deal.history[-1].changed_at if deal.history
                                      else deal.created_at),
            **self.owner(deal.owner_id),
        }
        if deal.account_id is not None:  # §2: null fields are left out
            row["account_id"] = hex_id(deal.account_id)
            if deal.account_id in account_names:
                row["account_id__r"] = account_names[deal.account_id]
        row.update(self._system(deal.owner_id, deal.created_at, deal.modified_at, voided_at,
                                "NewOpportunityObj"))
        return row

    def activity_row(self, activity: Activity, voided_at: int | None) -> dict[str, Any]:
        """§10 (field names unverified): content, type, interactive types, the deal and
        account as lookups and in related_object_data; create_time is when it happened."""
        row: dict[str, Any] = {
            "_id": hex_id(activity.id), "name": f"AR{int(activity.id) % 10**8:08d}",
            "active_record_content": activity.subject,
            "active_record_type": ACTIVE_RECORD_TYPES[0][0],
            "active_record_type__r": ACTIVE_RECORD_TYPES[0][1],
            **self.owner(activity.owner_id)}
        if activity.kind in INTERACTIVE_TYPES:
            code, label = INTERACTIVE_TYPES[activity.kind]
            row["interactive_types"], row["interactive_types__r"] = [code], label
        related = []
        deal = self.company.deals.get(activity.deal_id or "")
        if activity.deal_id is not None:
            row["new_opportunity_id"] = hex_id(activity.deal_id)
            related.append({"describe_api_name": "NewOpportunityObj",
                            "id": hex_id(activity.deal_id), "name": deal.name if deal else None})
        if activity.account_id is not None:
            account = self.company.accounts.get(activity.account_id)
            row["account_id"] = hex_id(activity.account_id)
            related.append({"describe_api_name": "AccountObj", "id": hex_id(activity.account_id),
                            "name": account.name if account else None})
        if related:
            row["related_object_data"] = related
        row.update(self._system(activity.owner_id, activity.start, activity.modified_at,
                                voided_at, ACTIVITY_OBJECT))
        return row

    def _system(self, owner_id: str, created: Any, modified: Any, voided_at: int | None,
                api_name: str) -> dict[str, Any]:
        manager = self.fsuid[self.manager.id]
        return {"created_by": [self.fsuid[owner_id]], "create_time": to_ms(created),
                "last_modified_by": [manager],
                MODIFIED: to_ms(modified) if voided_at is None else voided_at,
                "life_status": "normal" if voided_at is None else "invalid",
                "lock_status": "0", "is_deleted": False, "record_type": "default__c",
                "object_describe_api_name": api_name}

    # ---- describe (§2; nesting under data.describe is a guess) -------------------------------
    def describe(self, api_name: str) -> dict[str, Any]:
        system: dict[str, dict[str, Any]] = {
            "_id": {"type": "text", "label": "ID"},
            "name": {"type": "text", "label": "名称", "is_required": True},
            "owner": {"type": "employee", "label": "负责人", "is_required": True},
            "create_time": {"type": "date_time", "label": "创建时间"},
            MODIFIED: {"type": "date_time", "label": "最后修改时间"},
            "life_status": {"type": "select_one", "label": "生命状态", "options": [
                {"value": "normal", "label": "正常"}, {"value": "invalid", "label": "作废"}]},
            "is_deleted": {"type": "true_or_false", "label": "is_deleted"},
        }
        if api_name == ACTIVITY_OBJECT:
            fields: dict[str, dict[str, Any]] = {
                **system,
                "active_record_content": {"type": "long_text", "label": "跟进内容"},
                "active_record_type": {"type": "select_one", "label": "跟进类型", "options": [
                    {"value": c, "label": lbl} for c, lbl in ACTIVE_RECORD_TYPES]},
                "interactive_types": {"type": "select_many", "label": "跟进方式", "options": [
                    {"value": c, "label": lbl} for c, lbl in INTERACTIVE_TYPES.values()]},
                "account_id": {"type": "object_reference", "label": "客户名称",
                               "target_api_name": "AccountObj"},
                "new_opportunity_id": {"type": "object_reference", "label": "商机",
                                       "target_api_name": "NewOpportunityObj"},
                "related_object_data": {"type": "related_object", "label": "关联对象"}}
        elif api_name == "AccountObj":
            fields = {**system, "industry_level1": {
                "type": "select_one", "label": "行业", "options": [
                    {"value": code, "label": name} for name, code in INDUSTRY_CODES.items()]}}
        else:
            fields = {**system,
                      "amount": {"type": "currency", "label": "商机金额"},
                      "close_date": {"type": "date", "label": "预计成交日期"},
                      "account_id": {"type": "object_reference", "label": "客户名称",
                                     "target_api_name": "AccountObj"},
                      "probability": {"type": "percentile", "label": "赢率"},
                      # each process lists its own stages, in order, as cascade options
                      # (value, label: the official demo's child_options shape) with their
                      # probability; sales_stage itself only holds the positions.
                      "sales_process_id": {"type": "select_one", "label": "销售流程", "options": [
                          {"value": pid, "label": pipeline, "child_options": [
                              {"value": s.code, "label": s.label, "probability": s.probability}
                              for s in self.stages if s.process_id == pid]}
                          for pipeline, pid in self.processes.items()]},
                      "sales_stage": {"type": "select_one", "label": "商机阶段", "options": [
                          {"value": c, "label": f"阶段{c}"}
                          for c in sorted({s.code for s in self.stages}, key=int)]},
                      "sales_status": {"type": "select_one", "label": "阶段状态", "options": [
                          {"value": str(i + 1), "label": lbl}
                          for i, lbl in enumerate(LANGUAGES[self.language][0])]}}
            if self.multi_currency:
                codes = sorted({self.currency, *self.company.currencies})
                fields.update({
                    "mc_currency": {"type": "select_one", "label": "币种", "options": [
                        {"value": c, "label": c} for c in codes]},
                    "mc_exchange_rate": {"type": "number", "label": "汇率"},
                    "mc_functional_currency": {"type": "text", "label": "本位币"}})
        return {"api_name": api_name, "fields": {k: {"api_name": k, **v}
                                                 for k, v in fields.items()}}


# ---- the query engine (§2) -------------------------------------------------------------------
def _number(value: Any) -> Decimal | None:
    if type(value) is str:  # the usual case first: ids, texts, numbers as text
        return _text_number(value)
    if isinstance(value, bool) or value is None:
        return None
    return _text_number(str(value))


@lru_cache(maxsize=1 << 16)
def _text_number(text: str) -> Decimal | None:
    """A text as a number, if it is one. Cached: a keyset query compares every id of a
    table (text, never a number) with its bound, and a failed Decimal() costs an exception."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _compare(value: Any, other: Any) -> int | None:
    """-1/0/1 for comparable values (numbers numerically, else as text); None if absent."""
    if value is None or other is None:
        return None
    a, b = _number(value), _number(other)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    x, y = str(value), str(other)
    return (x > y) - (x < y)


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _eq(value: Any, other: Any) -> bool:
    return any(_compare(v, other) == 0 for v in _values(value))


def matches(row: dict[str, Any], name: str, operator: str, wanted: list[Any]) -> bool:
    value = row.get(name)
    first = wanted[0] if wanted else None
    if operator in ("IS", "ISN"):
        empty = value in (None, "", [])
        return empty if operator == "IS" else not empty
    if operator in ("EQ", "N"):
        return _eq(value, first) == (operator == "EQ")
    if operator in ("GT", "GTE", "LT", "LTE"):
        order = _compare(value, first)
        return order is not None and {"GT": order > 0, "GTE": order >= 0, "LT": order < 0,
                                      "LTE": order <= 0}[operator]
    if operator in ("IN", "NIN", "HASANYOF", "NHASANYOF"):
        hit = any(_eq(value, w) for w in wanted)
        return hit == (operator in ("IN", "HASANYOF"))
    if operator in ("BETWEEN", "NBETWEEN"):
        low, high = (_compare(value, wanted[0]), _compare(value, wanted[1]))
        inside = low is not None and high is not None and low >= 0 and high <= 0
        return inside == (operator == "BETWEEN")
    text, needle = ("" if value is None else str(value)), str(first or "")
    return {"LIKE": needle in text, "NLIKE": needle not in text, "CONTAINS": needle in text,
            "STARTWITH": text.startswith(needle), "ENDWITH": text.endswith(needle)}[operator]


_ORDERS: dict[str, Callable[[int], bool]] = {
    "GT": lambda order: order > 0, "GTE": lambda order: order >= 0,
    "LT": lambda order: order < 0, "LTE": lambda order: order <= 0}


def _predicate(name: str, operator: str, wanted: list[Any]) -> Callable[[dict[str, Any]], bool]:
    """matches(row, name, operator, wanted) as a function of the row, the bound of GT, GTE,
    LT and LTE read once (a keyset query compares every row of a table with it)."""
    bound = wanted[0] if wanted else None
    if operator not in _ORDERS or bound is None:
        return lambda row: matches(row, name, operator, wanted)
    number, text, test = _number(bound), str(bound), _ORDERS[operator]

    def keep(row: dict[str, Any]) -> bool:  # _compare(value, bound), then the operator
        value = row.get(name)
        if value is None:
            return False
        own = _number(value)
        if own is not None and number is not None:
            return test((own > number) - (own < number))
        other = str(value)
        return test((other > text) - (other < text))

    return keep


def parse_filters(raw: Any) -> list[tuple[str, str, list[Any]]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise QueryError(10006, "filters must be a list")
    parsed = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("field_name"), str):
            raise QueryError(10006, "each filter needs field_name, operator and field_values")
        operator = item.get("operator")
        if operator not in OPERATORS:  # §2: unknown operators (e.g. NEQ) are rejected
            raise QueryError(10006, f"unsupported operator {operator!r}")
        values = item.get("field_values")
        if not isinstance(values, list):  # §2: field_values is always a list
            raise QueryError(10006, "field_values must be a list")
        if operator in ("BETWEEN", "NBETWEEN") and len(values) != 2:
            raise QueryError(10006, f"{operator} needs two field_values")
        if operator not in ("IS", "ISN") and not values:
            raise QueryError(10006, f"{operator} needs field_values")
        parsed.append((item["field_name"], operator, values))
    return parsed


def parse_orders(raw: Any) -> list[tuple[str, bool]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
            isinstance(o, dict) and isinstance(o.get("fieldName"), str) for o in raw):
        raise QueryError(10006, "orders must be a list of {fieldName, isAsc}")
    return [(o["fieldName"], o.get("isAsc", True) is not False) for o in raw]


@dataclass
class Table:
    """Rows of one object sorted by (last_modified_time, _id): the connector's usual order."""

    rows: list[dict[str, Any]]
    keys: list[tuple[int, str]] = field(init=False)
    # the rows in another order, sorted once per table (a keyset query by _id asks for
    # the same order each page): filtering the sorted rows keeps what sorting the filtered
    # ones gives, the sorts being stable
    ordered: dict[tuple[tuple[str, bool], ...], list[dict[str, Any]]] = field(
        init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rows.sort(key=lambda r: (r.get(MODIFIED, 0), r["_id"]))
        self.keys = [(r.get(MODIFIED, 0), r["_id"]) for r in self.rows]

    def select(self, filters: list[tuple[str, str, list[Any]]],
               orders: list[tuple[str, bool]]) -> Sequence[dict[str, Any]]:
        lo, hi, rest = 0, len(self.rows), []
        for name, operator, values in filters:  # narrow by the time index first
            bound = _number(values[0]) if values else None
            if name != MODIFIED or bound is None or bound != bound.to_integral_value() or \
                    operator not in ("EQ", "GT", "GTE", "LT", "LTE"):
                rest.append((name, operator, values))
                continue
            first, last = (int(bound), ""), (int(bound), "\uffff")
            if operator in ("GTE", "EQ"):
                lo = max(lo, bisect_left(self.keys, first))
            if operator == "GT":
                lo = max(lo, bisect_right(self.keys, last))
            if operator in ("LTE", "EQ"):
                hi = min(hi, bisect_right(self.keys, last))
            if operator == "LT":
                hi = min(hi, bisect_left(self.keys, first))
        chosen: Sequence[dict[str, Any]] = self.rows[lo:hi] if lo < hi else []
        resort = bool(orders) and orders[:2] not in ([(MODIFIED, True), ("_id", True)],
                                                     [(MODIFIED, True)])
        if resort and (lo, hi) == (0, len(self.rows)):  # the whole table: sorted once
            chosen, resort = self.sorted(orders), False
        for name, operator, values in rest:
            keep = _predicate(name, operator, values)
            chosen = [r for r in chosen if keep(r)]
        return _sort(chosen, orders) if resort else chosen

    def sorted(self, orders: list[tuple[str, bool]]) -> list[dict[str, Any]]:
        key = tuple(orders)
        if key not in self.ordered:
            self.ordered[key] = _sort(self.rows, orders)
        return self.ordered[key]


def _sort(rows: Sequence[dict[str, Any]], orders: list[tuple[str, bool]]
          ) -> list[dict[str, Any]]:
    ordered = list(rows)
    for name, ascending in reversed(orders):  # stable sorts, last key first
        ordered.sort(key=_sort_key(name), reverse=not ascending)
    return ordered


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(name)
        if value is None:
            return (0, "")
        number = _number(value)
        return (1, number) if number is not None else (2, str(value))

    return key


def project(row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return row
    return {k: row[k] for k in ("_id", *fields) if k in row}
