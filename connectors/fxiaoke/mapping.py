"""Fxiaoke records -> normalized records. Pure functions (docs/vendors/fxiaoke.md, cited as §n).

§2/§3: times are epoch milliseconds, close_date is a day at 00:00 Asia/Shanghai
in ms, amounts are strings ("21739535.00"), owner is a list of openUserIds,
`__r` fields carry display values, null fields are left out. Won/lost come from
the describe API's option labels (赢单 / 输单), never from option codes. A record
with life_status "invalid" (作废) or is_deleted is a tombstone.

Where the vendor notes mark a form unverified, these functions accept both forms
(numbers or numeric strings for times, a list or a bare id for owner, fields
as a dict or a list in describe).
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.fxiaoke.wire import LOST_LABELS, NOT_LIVE_STATUSES, WON_LABELS, from_ms, ms_day
from core.errors import SourceError
from core.records import AccountRecord, ActivityRecord, DealRecord, StageRecord, UserRecord
from core.types import ActivityType, DealStatus


@dataclass
class Directory:
    """What deals and accounts need to name their owners: users by openUserId."""

    users: dict[str, UserRecord] = field(default_factory=dict)


@dataclass
class DealMeta:
    """From describe: stages by remote id ("<sales_process_id>:<sales_stage>"), outcome
    category by sales_status value, and whether the tenant is multi-currency."""

    stages: dict[str, StageRecord] = field(default_factory=dict)
    status: dict[str, DealStatus] = field(default_factory=dict)
    multi_currency: bool = False


def stage_id(process: Any, code: Any) -> str:
    """§3: sales_stage is a position inside its sales_process_id, so a stage is keyed by
    both (a deal of another process with the same code is in another stage)."""
    return f"{process}:{code}" if process not in (None, "") else str(code)


def category(label: Any) -> DealStatus:
    text = str(label or "").strip().casefold()
    if text in WON_LABELS:
        return DealStatus.WON
    if text in LOST_LABELS:
        return DealStatus.LOST
    return DealStatus.OPEN


def money(value: Any, what: str, record_id: Any) -> Decimal | None:
    """An amount as sent (a string; a JSON number is tolerated), exactly, never a float."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SourceError(f"Fxiaoke record {record_id}: {what} is a boolean, not an amount")
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise SourceError(f"Fxiaoke record {record_id}: {what} {value!r} is not a number") from None
    if not number.is_finite():
        raise SourceError(f"Fxiaoke record {record_id}: {what} {value!r} is not a number")
    return number


def moment(value: Any) -> datetime | None:
    """An epoch-ms time (a number, or digits in a string) as aware UTC."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit():
            return None
        value = int(text)
    return from_ms(value)


def day(value: Any) -> date | None:
    """close_date: epoch ms of 00:00 Asia/Shanghai (§3); "YYYY-MM-DD" tolerated."""
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        return date.fromisoformat(value[:10])
    instant = moment(value)
    return None if instant is None else ms_day(int(instant.timestamp() * 1000))


def first_id(value: Any) -> str | None:
    """owner / created_by: a list of ids (§3); a bare id tolerated."""
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value not in (None, "") else None


def is_tombstone(raw: dict[str, Any]) -> bool:
    """Voided (invalid), never effective (ineffective) or deleted: see wire.NOT_LIVE_STATUSES."""
    deleted = raw.get("is_deleted")
    return raw.get("life_status") in NOT_LIVE_STATUSES or deleted is True or \
        str(deleted) == "true"


def _deleted_at(raw: dict[str, Any]) -> datetime | None:
    if not is_tombstone(raw):
        return None
    # The void is the record's last change; last_modified_time is when it happened.
    return moment(raw.get("last_modified_time")) or moment(raw.get("create_time"))


def _display(value: Any) -> str | None:
    """A `__r` companion: a string, or an object with a name."""
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value not in (None, "") else None


# ---- directory (§3) --------------------------------------------------------------------------
def departments(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = body.get("departments") or []
    return {str(d["id"]): d for d in rows if isinstance(d, dict) and d.get("id") is not None}


def root_departments(depts: dict[str, dict[str, Any]]) -> list[str]:
    """Departments without a parent in the list (0 in the SDK, 999999 in real data)."""
    roots = [i for i, d in depts.items() if str(d.get("parentId") or "0") not in depts]
    return roots or ["999999"]


def user(raw: dict[str, Any], depts: dict[str, dict[str, Any]]) -> UserRecord:
    main = raw.get("mainDepartmentId")
    if main is None and raw.get("departmentIds"):
        main = raw["departmentIds"][0]
    team = depts.get(str(main), {}).get("name") if main is not None else None
    email, mobile = raw.get("email"), str(raw.get("mobile") or "").strip()
    return UserRecord(
        remote_id=str(raw["openUserId"]),
        name=str(raw.get("name") or raw.get("nickName") or raw["openUserId"]),
        email=str(email).strip().lower() if email else None,
        mobile=mobile or None,  # §3 userList: many reps have a mobile and no email
        active=not bool(raw.get("isStop")),
        role=raw.get("position") or None,
        team=team,
        raw=raw,
    )


# ---- describe (§2) ---------------------------------------------------------------------------
def describe_fields(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The object's fields by api name, wherever the response nests them."""
    found_data = body.get("data")
    data: dict[str, Any] = found_data if isinstance(found_data, dict) else {}
    for holder in (data.get("describe"), data.get("objectDescribe"), data,
                   body.get("describe"), body):
        if isinstance(holder, dict) and "fields" in holder:
            found = holder["fields"]
            if isinstance(found, dict):
                return {str(k): v for k, v in found.items() if isinstance(v, dict)}
            if isinstance(found, list):
                return {str(f.get("api_name")): f for f in found if isinstance(f, dict)}
    return {}


def _options(fields: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    options = fields.get(name, {}).get("options") or []
    return [o for o in options if isinstance(o, dict) and o.get("value") is not None]


def deal_meta(fields: dict[str, dict[str, Any]]) -> DealMeta:
    """Stages per sales process, outcomes from sales_status's labels (OpportunityObj: status).

    §3: sales_stage is a position inside a sales process, so each sales_process_id option
    lists its own stages in its child_options, in order: either stage options
    ({value, label, probability}, the cascade shape of the official demo's describe,
    openfxiaoke/demo utils/Test.java) or {"sales_stage": [codes]} naming options of the
    sales_stage field. Codes overlap between processes; a stage is (process, code).
    Describe: https://developer.fxiaoke.com/openapi_v2/common/system/object-describe/describe.html
    """
    flat = {str(o["value"]): o for o in _options(fields, "sales_stage")}
    meta = DealMeta(multi_currency="mc_currency" in fields)
    placed: set[str] = set()
    for process in _options(fields, "sales_process_id"):
        pid, name = str(process["value"]), str(process.get("label") or process["value"])
        for child in process.get("child_options") or []:
            if not isinstance(child, dict):
                continue
            options = [child] if child.get("value") is not None else \
                [flat.get(str(c), {"value": c}) for c in child.get("sales_stage") or []]
            for option in options:
                placed.add(str(option["value"]))
                _add_stage(meta, pid, name, option)
    for code, option in flat.items():  # stages of no known process (e.g. OpportunityObj)
        if code not in placed:
            _add_stage(meta, None, None, option)
    for option in _options(fields, "sales_status") or _options(fields, "status"):
        meta.status[str(option["value"])] = category(option.get("label"))
    return meta


def _add_stage(meta: DealMeta, process: str | None, pipeline: str | None,
               option: dict[str, Any]) -> None:
    code = str(option["value"])
    probability = option.get("probability")
    order = 1 + sum(1 for s in meta.stages.values() if s.pipeline == pipeline)
    remote_id = stage_id(process, code)
    meta.stages[remote_id] = StageRecord(
        remote_id=remote_id,
        name=str(option.get("label") or code),
        category=category(option.get("label")),
        pipeline=pipeline,
        sort_order=order,
        probability=None if probability in (None, "") else Decimal(str(probability)),
        raw=option,
    )


# ---- records (§3) ----------------------------------------------------------------------------
def account(raw: dict[str, Any], directory: Directory) -> AccountRecord:
    owner_id = first_id(raw.get("owner"))
    owner = directory.users.get(owner_id or "")
    return AccountRecord(
        remote_id=str(raw["_id"]),
        name=str(raw.get("name") or ""),
        industry=_display(raw.get("industry_level1__r")) or raw.get("industry_level1"),
        owner_remote_id=owner_id,
        owner_email=owner.email if owner else None,
        owner_name=_display(raw.get("owner__r")) or (owner.name if owner else None),
        remote_created_at=moment(raw.get("create_time")),
        remote_modified_at=moment(raw.get("last_modified_time")),
        deleted_at=_deleted_at(raw),
        raw=raw,
    )


def deal(raw: dict[str, Any], meta: DealMeta, directory: Directory,
         currency: str) -> DealRecord:
    """`currency` is the tenant's (home) currency. A multi-currency tenant's records carry
    mc_currency (the deal's currency) and mc_exchange_rate; see _in_home."""
    record_id = raw["_id"]
    amount = money(raw.get("amount", raw.get("expected_deal_amount")), "amount", record_id)
    deal_currency, rate, amount_home = _in_home(raw, amount, currency)
    code = raw.get("sales_stage")
    stage = meta.stages.get(stage_id(raw.get("sales_process_id"), code)) \
        if code is not None else None
    status_code = raw.get("sales_status", raw.get("status"))
    status_label = raw.get("sales_status__r", raw.get("status__r"))
    if status_label:  # the record's own label first, then describe's label for its code
        status = category(status_label)
    elif status_code is not None and str(status_code) in meta.status:
        status = meta.status[str(status_code)]
    else:
        status = stage.category if stage else DealStatus.OPEN
    owner_id = first_id(raw.get("owner"))
    owner = directory.users.get(owner_id or "")
    probability = raw.get("probability")
    return DealRecord(
        remote_id=str(record_id),
        name=str(raw.get("name") or ""),
        amount=amount,
        currency=deal_currency,
        exchange_rate=rate,
        amount_home=amount_home,
        stage=_display(raw.get("sales_stage__r")) or (stage.name if stage else None),
        stage_remote_id=stage.remote_id if stage else None,
        status=status,
        probability=money(probability, "probability", record_id),
        close_date=day(raw.get("close_date")),
        remote_created_at=moment(raw.get("create_time")),
        remote_modified_at=moment(raw.get("last_modified_time")),
        owner_remote_id=owner_id,
        owner_email=owner.email if owner else None,
        owner_name=_display(raw.get("owner__r")) or (owner.name if owner else None),
        account_remote_id=first_id(raw.get("account_id")),
        account_name=_display(raw.get("account_id__r")),
        pipeline=_display(raw.get("sales_process_id__r")) or (stage.pipeline if stage else None),
        deleted_at=_deleted_at(raw),
        raw=raw,
    )


def _in_home(raw: dict[str, Any], amount: Decimal | None,
             home: str) -> tuple[str, Decimal, Decimal | None]:
    """(currency, exchange rate, amount in the home currency) of a deal.

    A multi-currency tenant (describe shows mc_currency) stores each amount in the record's
    own currency `mc_currency`, with `mc_exchange_rate` = units of the tenant's functional
    currency (`mc_functional_currency`) per one unit of the record's currency [INF: the
    public docs do not spell the direction out; this is the convention of the CRM's
    multi-currency settings, 1 原币 = rate 本位币], so amount_home = amount x rate (Zoho's
    rate runs the other way and divides). Records without mc_currency are in `home`."""
    currency = str(raw.get("mc_currency") or "").strip().upper()
    if not currency or currency == home:
        return home, Decimal(1), amount
    rate = money(raw.get("mc_exchange_rate"), "mc_exchange_rate", raw.get("_id"))
    if rate is None or rate <= 0:
        raise SourceError(f"Fxiaoke record {raw.get('_id')} is in {currency} without a "
                          "usable mc_exchange_rate")
    return currency, rate, None if amount is None else amount * rate


# ---- follow-up records (§10) -------------------------------------------------------------------
# §10: how the rep reached the customer, from the labels of interactive_types (unverified
# field; its codes are the tenant's own, so the labels decide). No match: a note.
INTERACTION_WORDS: tuple[tuple[ActivityType, tuple[str, ...]], ...] = (
    (ActivityType.CALL, ("电话", "電話", "通话", "通話", "phone", "call")),
    (ActivityType.MEETING, ("拜访", "拜訪", "面谈", "面談", "会议", "會議", "见面", "visit",
                            "meeting")),
    (ActivityType.EMAIL, ("邮件", "郵件", "email", "e-mail", "mail")),
)


def _labels(value: Any) -> list[str]:
    """A `__r` of a multi-select: a string, a list of strings, or of {name} objects."""
    items = value if isinstance(value, list) else [value]
    return [label for label in (_display(v) for v in items) if label]


def interaction(raw: dict[str, Any]) -> tuple[ActivityType, str | None]:
    """The activity type and the vendor's own label of a follow-up record (§10)."""
    labels = _labels(raw.get("interactive_types__r"))
    for kind, words in INTERACTION_WORDS:
        for label in labels:
            if any(word in label.casefold() for word in words):
                return kind, label
    return ActivityType.NOTE, labels[0] if labels else None


def _related(raw: dict[str, Any], api_name: str) -> str | None:
    for item in raw.get("related_object_data") or []:
        if isinstance(item, dict) and item.get("describe_api_name") == api_name \
                and item.get("id"):
            return str(item["id"])
    return None


def activity(raw: dict[str, Any], directory: Directory, deal_object: str) -> ActivityRecord:
    """§10: a follow-up record (ActiveRecordObj) as an activity that happened when it was
    written (create_time; done). Its deal and account: the lookups new_opportunity_id
    (opportunity_id for the older OpportunityObj) and account_id, else
    related_object_data. Voided or deleted: a tombstone."""
    owner_id = first_id(raw.get("owner"))
    owner = directory.users.get(owner_id or "")
    kind, label = interaction(raw)
    created = moment(raw.get("create_time"))
    deal_field = "new_opportunity_id" if deal_object == "NewOpportunityObj" else "opportunity_id"
    return ActivityRecord(
        remote_id=str(raw["_id"]), type=kind, kind=label,
        subject=raw.get("active_record_content") or raw.get("name"),
        occurred_at=created, done=True,
        owner_remote_id=owner_id, owner_email=owner.email if owner else None,
        owner_name=_display(raw.get("owner__r")) or (owner.name if owner else None),
        deal_remote_id=first_id(raw.get(deal_field)) or _related(raw, deal_object),
        account_remote_id=first_id(raw.get("account_id")) or _related(raw, "AccountObj"),
        remote_created_at=created, remote_modified_at=moment(raw.get("last_modified_time")),
        deleted_at=_deleted_at(raw), raw=raw)
