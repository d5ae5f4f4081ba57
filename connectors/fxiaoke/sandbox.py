"""A simulated Fxiaoke (纷享销客) tenant speaking the Open API wire format.

Behaviour follows docs/vendors/fxiaoke.md (cited as §n); where the notes
have no answer, the choice is marked "guess" and kept strict. Every call is a JSON
POST answered with HTTP 200; errors are `{"errorCode": n, "errorMessage": ...}`.
The synthetic company (connectors.sandbox.dataset) is the tenant's data; the neutral
control API lives under /_sandbox, plus /_sandbox/fxiaoke for callbacks and quotas.

Deletions: a record deleted through the control API (or `/data/invalid`) is voided:
it stays queryable with life_status "invalid" (§2). `/data/delete` then purges a
voided record for good. Records the dataset generated as already deleted count as
purged long ago. Data changes fire signed, encrypted CRM callbacks (§5) to
`callback_url` when one is set.
"""

import copy
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.fxiaoke import callbacks
from connectors.fxiaoke.sandbox_wire import (
    MODIFIED,
    QueryError,
    Table,
    Tenant,
    dataset_id,
    parse_filters,
    parse_orders,
    project,
)
from connectors.fxiaoke.wire import (
    BAD_PARAMETER,
    CALL_LIMIT,
    CORP_NOT_FOUND,
    CUSTOM_QUERY_PATH,
    DAILY_QUOTA,
    DEPARTMENT_LIST_PATH,
    DESCRIBE_PATH,
    MAX_LIMIT,
    MAX_OFFSET,
    MISSING_TOKEN,
    QUERY_PATH,
    TENANT_TZ,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_PATH,
    USER_BY_MOBILE_PATH,
    USER_LIST_PATH,
    to_ms,
)
from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import (
    Account,
    Company,
    Deal,
    Entity,
    Operation,
    generate_company,
)
from connectors.sandbox.faults import Harness, HarnessMiddleware

log = logging.getLogger("crmsync.sandbox.fxiaoke")

SANDBOX_APP_ID = "FSAID_sandbox0001"
SANDBOX_APP_SECRET = "sandbox-app-secret"
SANDBOX_PERMANENT_CODE = "sandbox-permanent-code"
SANDBOX_AES_KEY = "c2FuZGJveC1mc2lkZS1hZXMta2V5LTMyLWJ5dGVzISE="  # base64 of 32 bytes
STANDARD = {"AccountObj": "accounts", "NewOpportunityObj": "deals"}
GOALS_OBJECT = "object_SalesGoal__c"
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
SYSTEM_FIELDS = frozenset({"_id", "dataObjectApiName", "create_time", MODIFIED, "created_by",
                           "last_modified_by", "life_status", "is_deleted", "lock_status",
                           "record_type", "object_describe_api_name"})
TOKEN_CALLS_PER_MINUTE = 10  # §1.2


class FxError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body)  # §6: always HTTP 200


def _ok(**extra: Any) -> Response:
    return _json({"errorCode": 0, "errorMessage": "OK", "errorDescription": "success",
                  "traceId": f"E-O.sandbox.{uuid.uuid4().hex[:12]}", **extra})


def _error(code: int, message: str) -> Response:
    return _json({"errorCode": code, "errorMessage": message,
                  "traceId": f"E-O.sandbox.{uuid.uuid4().hex[:12]}"})


@dataclass
class FxiaokeState:
    """The tenant: its data, app credentials, tokens, limits, custom objects, callbacks."""

    company: Company
    harness: Harness
    app_id: str = SANDBOX_APP_ID
    app_secret: str = SANDBOX_APP_SECRET
    permanent_code: str = SANDBOX_PERMANENT_CODE
    aes_key: str = SANDBOX_AES_KEY
    corp_id: str = "FSCID_SANDBOX0001"
    enterprise_account: str = "acmedemo"
    tenant_id: int = 700001
    currency: str = "CNY"
    token_ttl: int = 7200  # §1.1: expiresIn <= 7200 s
    calls_per_window: int = 100  # §6: 100 calls per 20 s per interface
    window: float = 20.0
    daily_quota: int | None = None  # §6: the purchased pack; None = unlimited
    quota_used: int = 0
    quota_day: str = ""  # §6: the daily quota resets at midnight (tenant time)
    callback_url: str | None = None
    callback_attempts: int = 3  # guess: the platform retries a callback, counting retryTimes
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    token_calls: deque[float] = field(default_factory=deque)
    recent: dict[str, deque[float]] = field(default_factory=dict)
    custom: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    voided: dict[str, tuple[Deal | Account, int]] = field(default_factory=dict)
    purged: set[str] = field(default_factory=set)
    callback_log: list[dict[str, Any]] = field(default_factory=list)
    language: str = "zh-CN"  # describe's labels (sandbox_wire.LANGUAGES)
    multi_currency: bool = False  # mc_currency / mc_exchange_rate on deals and goals
    revoked: set[str] = field(default_factory=set)  # tokens answered with 11014
    workflow_runs: int = 0  # custom-object writes that triggered the object's workflows
    tenant: Tenant = field(init=False, repr=False)
    _known: dict[str, Deal | Account] = field(default_factory=dict, repr=False)
    _snapshot: Company | None = field(default=None, repr=False)
    _tables: dict[str, tuple[tuple[int, ...], Table]] = field(default_factory=dict, repr=False)
    _custom_version: int = 0
    _outbox: "queue.Queue[dict[str, Any]] | None" = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self._attach()

    def _attach(self) -> None:
        self.tenant = Tenant(self.company, self.currency, self.language, self.multi_currency)
        self._known = {**self.company.deals, **self.company.accounts}
        self.voided.clear()
        self.purged.clear()
        self._tables.clear()
        self.company.listeners.append(self._on_change)

    # ---- harness hooks (connectors.sandbox.faults.ErrorBodies) ----------------------------
    def too_many_requests(self) -> tuple[int, dict[str, Any]]:
        return 200, {"errorCode": CALL_LIMIT, "errorMessage": "调用次数超过限制"}  # §6

    def internal_error(self) -> tuple[int, dict[str, Any]]:
        return 200, {"errorCode": -1, "errorMessage": "系统繁忙"}  # §6: busy, retry

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # ---- control API hooks (connectors.sandbox.control.SandboxState) -----------------------
    def reset(self) -> None:
        params = self.company.generated_with
        self.company = generate_company(**params) if params is not None else \
            copy.deepcopy(self._snapshot or self.company)
        self.company.listeners.clear()
        self._attach()
        self.custom.clear()
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.recent.clear()
        self.quota_used = 0
        self.callback_log.clear()

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "live_tokens": len(self.tokens),
                "quota_used": self.quota_used, "deals": len(self.company.deals),
                "accounts": len(self.company.accounts), "voided": len(self.voided),
                "callbacks": len(self.callback_log)}

    # ---- data ------------------------------------------------------------------------------
    def _on_change(self, entity: Entity, operation: Operation, ids: list[str]) -> None:
        pool: dict[str, Any] = self.company.deals if entity == "deals" else \
            self.company.accounts
        api_name = "NewOpportunityObj" if entity == "deals" else "AccountObj"
        for record_id in ids:
            if operation == "delete":  # §2: a delete through the UI voids (作废) the record
                record = self._known.get(record_id)
                if record is not None:
                    deleted = next(d for d in reversed(self.company.deletions)
                                   if d.id == record_id)
                    self.voided[record_id] = (record, to_ms(deleted.deleted_at))
                event = "invalid"
            else:
                self._known[record_id] = pool[record_id]
                self.voided.pop(record_id, None)
                event = "add" if operation == "insert" else "update"
            self.notify(event, api_name, _hex(record_id))

    def table(self, api_name: str) -> Table:
        """Rows of an object, rebuilt only when its data changed."""
        entity = STANDARD.get(api_name)
        version = (self.company.version, self._custom_version, len(self.voided),
                   len(self.purged))
        cached = self._tables.get(api_name)
        if cached is not None and cached[0] == version:
            return cached[1]
        if entity is None:
            rows = [dict(r) for r in self.custom.get(api_name, {}).values()]
        else:
            names = {a.id: a.name for a in self.company.accounts.values()}
            names.update({i: r.name for i, (r, _) in self.voided.items()
                          if isinstance(r, Account)})
            rows = []
            for record in (self.company.deals if entity == "deals"
                           else self.company.accounts).values():
                rows.append(self._row(record, None, names))
            for record_id, (record, at) in self.voided.items():
                if record_id not in self.purged and isinstance(
                        record, Deal if entity == "deals" else Account):
                    rows.append(self._row(record, at, names))
        table = Table(rows)
        self._tables[api_name] = (version, table)
        return table

    def _row(self, record: Deal | Account, voided_at: int | None,
             names: dict[str, str]) -> dict[str, Any]:
        if isinstance(record, Deal):
            return self.tenant.deal_row(record, voided_at, names)
        return self.tenant.account_row(record, voided_at, {})

    # ---- callbacks (§5) ----------------------------------------------------------------------
    def notify(self, event_type: str, api_name: str, data_id: str) -> None:
        """Queue a signed, encrypted callback for delivery (when a callback_url is set)."""
        if not self.callback_url:
            return
        message_id = uuid.uuid4().hex.upper()[:33]
        content = {"tenantId": self.tenant_id, "eventType": event_type, "apiName": api_name,
                   "dataId": data_id, "timestamp": int(time.time() * 1000),
                   "messageId": message_id}
        if self._outbox is None:
            self._outbox = queue.Queue()
            threading.Thread(target=self._deliver_forever, daemon=True,
                             name="fxiaoke-callbacks").start()
        self._outbox.put({"url": self.callback_url, "content": content})

    def wait_for_callbacks(self, timeout: float = 10.0) -> None:
        """Block until every queued callback was delivered or given up (for tests)."""
        deadline = time.monotonic() + timeout
        while self._outbox is not None and self._outbox.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("callbacks still pending")
            time.sleep(0.01)

    def _deliver_forever(self) -> None:
        assert self._outbox is not None
        with httpx.Client(timeout=3.0) as client:  # §5 (legacy callback): answer within 3 s
            while True:
                job = self._outbox.get()
                try:
                    self._deliver(client, job)
                finally:
                    self._outbox.task_done()

    def _deliver(self, client: httpx.Client, job: dict[str, Any]) -> None:
        content = job["content"]
        entry = {"messageId": content["messageId"], "eventType": content["eventType"],
                 "apiName": content["apiName"], "dataId": content["dataId"],
                 "attempts": 0, "status": "failed", "error": None}
        self.callback_log.append(entry)
        for attempt in range(self.callback_attempts):
            body = callbacks.build_callback(
                content, self.aes_key, enterprise_account=self.enterprise_account,
                message_id=content["messageId"], retry_times=attempt or None)
            entry["attempts"] = attempt + 1
            try:
                response = client.post(job["url"], json=body)
                result = callbacks.read_acknowledgement(response.json(), self.aes_key)
            except (httpx.HTTPError, ValueError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                continue
            if result == callbacks.SUCCESS:
                entry["status"], entry["error"] = "delivered", None
                return
            entry["error"] = f"acknowledged {result!r}"

    # ---- auth and limits ------------------------------------------------------------------
    def mint_token(self) -> str:
        now = time.time()
        if len(self.tokens) > 1000:
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        token = secrets.token_hex(16).upper()
        self.tokens[token] = now + self.token_ttl
        return token

    def check_token(self, body: dict[str, Any]) -> None:
        token = body.get("corpAccessToken")
        if not token:
            raise FxError(MISSING_TOKEN, "corpAccessToken不能为空")  # §6 10013
        if str(token) in self.revoked:  # 11014 参数corpAccessToken不合法 (§6 code table)
            raise FxError(TOKEN_INVALID, "参数corpAccessToken不合法")
        expiry = self.tokens.get(str(token))
        if expiry is None or expiry <= time.time():
            self.tokens.pop(str(token), None)
            raise FxError(TOKEN_EXPIRED, "corpAccessToken不存在或者已经过期")  # §1.1 20016
        if body.get("corpId") != self.corp_id:
            raise FxError(CORP_NOT_FOUND, "corpId不存在")  # §6 20017

    def spend(self, path: str) -> None:
        """§6: 100 calls per 20 s per interface (14001), then the daily quota (30002)."""
        now = time.monotonic()
        recent = self.recent.setdefault(path, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.calls_per_window:
            self.harness.served["14001"] += 1
            raise FxError(CALL_LIMIT, "调用次数超过限制")
        today = datetime.now(TENANT_TZ).date().isoformat()
        if today != self.quota_day:
            self.quota_day, self.quota_used = today, 0
        if self.daily_quota is not None and self.quota_used >= self.daily_quota:
            self.harness.served["30002"] += 1
            raise FxError(DAILY_QUOTA, "今日调用配额已用完")
        recent.append(now)
        self.quota_used += 1

    def acting_user(self, body: dict[str, Any]) -> str:
        """§1.1: CRM calls need currentOpenUserId, an active employee (guess: any one)."""
        user = body.get("currentOpenUserId")
        rep = self.tenant.rep_of.get(str(user)) if user else None
        if rep is None or not rep.active:
            raise FxError(BAD_PARAMETER, "currentOpenUserId参数错误")
        return str(user)

    def revoke_tokens(self) -> None:
        """Tokens the platform stops accepting (answered 11014, not 20016)."""
        self.revoked |= set(self.tokens)
        self.tokens.clear()

    def visible(self, body: dict[str, Any], rows: Sequence[dict[str, Any]]
                ) -> Sequence[dict[str, Any]]:
        """§1.1: a call runs with the acting user's data permissions. The CRM admin (the
        manager here) sees the whole company; anyone else sees the records they own and
        those of their subordinates (leaderId), the CRM's default data scope."""
        user = str(body.get("currentOpenUserId"))
        if user == self.tenant.fsuid[self.company.manager.id]:
            return rows
        team = {user} | {self.tenant.fsuid[r.id] for r in self.company.reps
                         if self.tenant.user(r).get("leaderId") == user}
        return [r for r in rows if set(r.get("owner") or ()) & team]

    def goal_fields(self) -> dict[str, tuple[str, str, tuple[tuple[str, str], ...]]]:
        """The goals object's fields; a multi-currency tenant's objects carry mc_currency."""
        if not self.multi_currency:
            return GOAL_FIELDS
        codes = sorted({self.currency, *self.company.currencies})
        return {**GOAL_FIELDS, "mc_currency": ("select_one", "币种",
                                               tuple((c, c) for c in codes))}


def _hex(record_id: str) -> str:
    return f"{int(record_id):024x}"


Handler = Callable[[dict[str, Any], FxiaokeState], Awaitable[Response]]


def _state(request: Request) -> FxiaokeState:
    state: FxiaokeState = request.app.state.fxiaoke
    return state


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise FxError(BAD_PARAMETER, "请求体不是合法的JSON") from None
    if not isinstance(body, dict):
        raise FxError(BAD_PARAMETER, "请求体必须是JSON对象")
    return body


def endpoint(handler: Handler, *, crm: bool) -> Callable[[Request], Awaitable[Response]]:
    """Token, tenant, acting user (CRM calls), rate limit and quota, then the handler."""

    async def wrapped(request: Request) -> Response:
        state = _state(request)
        try:
            body = await _body(request)
            state.check_token(body)
            if crm:
                state.acting_user(body)
            state.spend(request.url.path)
            return await handler(body, state)
        except (FxError, QueryError) as exc:
            return _error(exc.code, str(exc))

    return wrapped


# ---- token (§1.1) ----------------------------------------------------------------------------
async def token_endpoint(request: Request) -> Response:
    state = _state(request)
    try:
        body = await _body(request)
    except FxError as exc:
        return _error(exc.code, exc.message)
    now = time.monotonic()
    while state.token_calls and state.token_calls[0] <= now - 60:
        state.token_calls.popleft()
    if len(state.token_calls) >= TOKEN_CALLS_PER_MINUTE:  # §1.2: 10 calls/min
        return _error(CALL_LIMIT, "调用次数超过限制")
    state.token_calls.append(now)
    given = [str(body.get(k) or "") for k in ("appId", "appSecret", "permanentCode")]
    wanted = [state.app_id, state.app_secret, state.permanent_code]
    if not all(secrets.compare_digest(a, b) for a, b in zip(given, wanted, strict=True)):
        return _error(BAD_PARAMETER, "appId、appSecret或permanentCode错误")  # §8.1: 10006
    return _json({"errorCode": 0, "errorMessage": "success", "corpAccessToken": state.mint_token(),
                  "corpId": state.corp_id, "expiresIn": state.token_ttl})


# ---- directory (§3) --------------------------------------------------------------------------
async def department_list(_: dict[str, Any], state: FxiaokeState) -> Response:
    return _json({"errorCode": 0, "errorMessage": "success",
                  "departments": state.tenant.departments()})


async def user_list(body: dict[str, Any], state: FxiaokeState) -> Response:
    tenant = state.tenant
    try:
        dept = int(body.get("departmentId"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FxError(BAD_PARAMETER, "departmentId参数错误") from None
    known = {d["id"]: d for d in tenant.departments()}
    if dept not in known:
        raise FxError(BAD_PARAMETER, "departmentId不存在")
    wanted = {dept}
    if body.get("fetchChild") is True:
        wanted |= {d for d, row in known.items() if row.get("parentId") == dept}
    users = [tenant.user(r) for r in state.company.reps if tenant.department[r.team] in wanted]
    return _json({"errorCode": 0, "errorMessage": "success", "userList": users})


async def user_by_mobile(body: dict[str, Any], state: FxiaokeState) -> Response:
    mobile = str(body.get("mobile") or "").strip()
    if not mobile:
        raise FxError(BAD_PARAMETER, "mobile不能为空")
    found = [state.tenant.user(r) for r in state.company.reps
             if state.tenant.user(r)["mobile"] == mobile]
    return _json({"errorCode": 0, "errorMessage": "success", "empList": found})


# ---- CRM objects (§2, §4) --------------------------------------------------------------------
def _object_name(value: Any, *, custom: bool) -> str:
    name = str(value or "")
    if not name:
        raise FxError(BAD_PARAMETER, "dataObjectApiName不能为空")
    if name.endswith("__c") != custom:  # §2/§8.3: custom objects have their own paths
        raise FxError(BAD_PARAMETER, f"对象{name}请使用{'custom/' if not custom else ''}v2接口")
    return name


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise FxError(BAD_PARAMETER, "data参数错误")
    return data


def _int_param(info: dict[str, Any], name: str, default: int) -> int:
    value = info.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FxError(BAD_PARAMETER, f"{name}参数错误")
    return value


async def _query(body: dict[str, Any], state: FxiaokeState, *, custom: bool) -> Response:
    data = _data(body)
    api_name = _object_name(data.get("dataObjectApiName"), custom=custom)
    if not custom and api_name not in STANDARD:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    if custom and api_name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    info = data.get("search_query_info")
    if not isinstance(info, dict):
        raise FxError(BAD_PARAMETER, "search_query_info不能为空")
    limit, offset = _int_param(info, "limit", 20), _int_param(info, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:  # §2: limit <= 100 (strict to the likeliest form)
        raise FxError(BAD_PARAMETER, f"limit must be between 1 and {MAX_LIMIT}")
    if offset > MAX_OFFSET:  # §2: exact body from the docs
        raise FxError(MISSING_TOKEN, "offset out of range 10000")
    if offset < 0 or offset % limit:  # §2: offset must be a multiple of limit
        raise FxError(BAD_PARAMETER, "offset must be a non-negative multiple of limit")
    filters = parse_filters(info.get("filters"))
    orders = parse_orders(info.get("orders"))
    fields = info.get("fieldProjection")
    if fields is not None and not (isinstance(fields, list)
                                   and all(isinstance(f, str) for f in fields)):
        raise FxError(BAD_PARAMETER, "fieldProjection must be a list of field names")
    chosen = state.table(api_name).select(filters, orders)
    if not custom:
        chosen = state.visible(body, chosen)
    page = [project(r, fields) for r in chosen[offset:offset + limit]]
    total = len(chosen) if data.get("find_explicit_total_num") is True else 0  # §2
    return _ok(data={"dataList": page, "total": total, "offset": offset, "limit": limit})


async def query_standard(body: dict[str, Any], state: FxiaokeState) -> Response:
    return await _query(body, state, custom=False)


async def query_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    return await _query(body, state, custom=True)


async def describe(body: dict[str, Any], state: FxiaokeState) -> Response:
    api_name = str(body.get("apiName") or "")
    if api_name in STANDARD:
        return _ok(data={"describe": state.tenant.describe(api_name)})
    if api_name == GOALS_OBJECT:
        fields = {name: {"api_name": name, "type": kind, "label": label,
                         **({"options": [{"value": c, "label": lbl} for c, lbl in options]}
                            if options else {})}
                  for name, (kind, label, options) in state.goal_fields().items()}
        return _ok(data={"describe": {"api_name": api_name, "fields": fields}})
    raise FxError(BAD_PARAMETER, f"对象{api_name or '(空)'}不存在")


async def get_record(body: dict[str, Any], state: FxiaokeState) -> Response:
    data = _data(body)
    name = str(data.get("dataObjectApiName") or "")
    if name not in STANDARD and name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{name or '(空)'}不存在")
    wanted = str(data.get("objectDataId") or "")
    rows = [r for r in state.table(name).rows if r["_id"] == wanted]
    row = next(iter(rows if name == GOALS_OBJECT else state.visible(body, rows)), None)
    if row is None:  # guess: the generic 10006 (§6), for a missing or hidden record alike
        raise FxError(BAD_PARAMETER, "数据不存在或没有权限")
    return _ok(data=row)


def _standard_target(data: dict[str, Any]) -> tuple[str, str]:
    name = _object_name(data.get("dataObjectApiName"), custom=False)
    if name not in STANDARD:
        raise FxError(BAD_PARAMETER, f"对象{name}不存在")
    return STANDARD[name], name


async def invalid_record(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /data/invalid {object_data_id} voids a record (it stays queryable, §2)."""
    data = _data(body)
    entity, _ = _standard_target(data)
    record_id = dataset_id(str(data.get("object_data_id") or ""))
    pool: dict[str, Any] = state.company.deals if entity == "deals" else state.company.accounts
    if record_id is None or record_id not in pool:
        raise FxError(BAD_PARAMETER, "数据不存在或已作废")
    if entity == "deals":
        state.company.delete_deal(record_id)
    else:
        state.company.delete_account(record_id)
    return _ok()


async def delete_records(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /data/delete {idList}: only voided records can be deleted; then they are gone."""
    data = _data(body)
    entity, api_name = _standard_target(data)
    ids = data.get("idList")
    if not isinstance(ids, list) or not ids:
        raise FxError(BAD_PARAMETER, "idList不能为空")
    chosen = [dataset_id(str(i)) for i in ids]
    for record_id in chosen:
        voided = state.voided.get(record_id or "")
        if record_id is None or voided is None or record_id in state.purged or (
                (entity == "deals") != isinstance(voided[0], Deal)):
            raise FxError(BAD_PARAMETER, "只能删除已作废的数据")
    for record_id in chosen:
        state.purged.add(str(record_id))
        state.notify("delete", api_name, _hex(str(record_id)))  # [INF] event name
    return _ok()


# ---- custom-object writes (§4) --------------------------------------------------------------
def _check_goal_fields(values: dict[str, Any], state: FxiaokeState) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name in SYSTEM_FIELDS:
            continue
        known = state.goal_fields()
        if name not in known:
            raise FxError(BAD_PARAMETER, f"字段{name}不存在")
        kind, _, choices = known[name]
        options = [code for code, _ in choices]
        if value is None:
            continue
        if kind == "currency":  # §4 [INF]: amounts as strings (numbers tolerated)
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                raise FxError(BAD_PARAMETER, f"字段{name}必须是数字") from None
            if not amount.is_finite():
                raise FxError(BAD_PARAMETER, f"字段{name}必须是数字")
            value = f"{amount.quantize(Decimal('0.01')):.2f}"
        elif kind == "date" and (isinstance(value, bool) or not isinstance(value, int)):
            raise FxError(BAD_PARAMETER, f"字段{name}必须是毫秒时间戳")  # §4: dates as ms
        elif kind == "select_one" and value not in options:
            raise FxError(BAD_PARAMETER, f"字段{name}的选项{value!r}不存在")
        elif kind == "employee":  # §4: employee fields are lists
            if not isinstance(value, list) or not all(v in state.tenant.rep_of for v in value):
                raise FxError(BAD_PARAMETER, f"字段{name}必须是员工ID列表")
        elif kind in ("text", "department") and not isinstance(value, str | int):
            raise FxError(BAD_PARAMETER, f"字段{name}类型错误")
        clean[name] = value
    return clean


def _object_data(body: dict[str, Any]) -> dict[str, Any]:
    data = _data(body)
    record = data.get("object_data")
    if not isinstance(record, dict):
        raise FxError(BAD_PARAMETER, "object_data不能为空")
    return record


def _unique_external_id(state: FxiaokeState, api_name: str, values: dict[str, Any],
                        own_id: str | None) -> None:
    ext = values.get(GOAL_KEY_FIELD)
    if ext is None:
        return
    for row in state.custom.get(api_name, {}).values():
        if row.get(GOAL_KEY_FIELD) == ext and row["_id"] != own_id:
            raise FxError(BAD_PARAMETER, f"{GOAL_KEY_FIELD} {ext!r} 已存在")  # unique field


def _run_workflows(body: dict[str, Any], state: FxiaokeState) -> None:
    """triggerWorkFlow is a top-level parameter next to `data`, default true (the custom
    object create/update pages, e.g.
    https://developer.fxiaoke.com/openapi_v2/en/object/CustomCapabilities/CustomObj/update.html);
    placed anywhere else it is not read (inside object_data it is an unknown field)."""
    if body.get("triggerWorkFlow") is not False:
        state.workflow_runs += 1


async def create_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    record = _object_data(body)
    api_name = _object_name(record.get("dataObjectApiName"), custom=True)
    if api_name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    values = _check_goal_fields(record, state)
    if not values.get("owner"):
        raise FxError(BAD_PARAMETER, "负责人(owner)不能为空")
    if not values.get("name"):
        raise FxError(BAD_PARAMETER, "name不能为空")
    _unique_external_id(state, api_name, values, None)
    now = int(time.time() * 1000)
    record_id = secrets.token_hex(12)
    row = {"_id": record_id, **values, "create_time": now, MODIFIED: now,
           "created_by": [body["currentOpenUserId"]], "last_modified_by": [
               body["currentOpenUserId"]], "life_status": "normal", "lock_status": "0",
           "is_deleted": False, "record_type": "default__c",
           "object_describe_api_name": api_name}
    state.custom.setdefault(api_name, {})[record_id] = row
    state._custom_version += 1
    _run_workflows(body, state)
    state.notify("add", api_name, record_id)
    return _ok(dataId=record_id)


async def update_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    record = _object_data(body)
    if not record.get("_id") or not record.get("dataObjectApiName"):
        # §4: fx-crm-sync got a NullPointerException until both sat inside object_data
        raise FxError(BAD_PARAMETER, "java.lang.NullPointerException")
    api_name = _object_name(record["dataObjectApiName"], custom=True)
    row = state.custom.get(api_name, {}).get(str(record["_id"]))
    if row is None:
        raise FxError(BAD_PARAMETER, "数据不存在")
    if row.get("life_status") == "invalid":
        raise FxError(BAD_PARAMETER, "数据已作废，不能编辑")  # guess: voided records are read-only
    if "owner" in record:  # §4: the owner changes only through changeOwner
        raise FxError(BAD_PARAMETER, "负责人不能通过编辑修改，请使用更换负责人接口")
    values = _check_goal_fields(record, state)
    _unique_external_id(state, api_name, values, row["_id"])
    row.update(values)
    row[MODIFIED] = max(int(time.time() * 1000), row[MODIFIED] + 1)
    row["last_modified_by"] = [body["currentOpenUserId"]]
    state._custom_version += 1
    _run_workflows(body, state)
    state.notify("update", api_name, row["_id"])
    return _ok(dataId=row["_id"])


async def invalid_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /custom/v2/data/invalid {dataObjectApiName, object_data_id} voids a record; it
    stays queryable with life_status "invalid" (§2)."""
    data = _data(body)
    api_name = _object_name(data.get("dataObjectApiName"), custom=True)
    row = state.custom.get(api_name, {}).get(str(data.get("object_data_id") or ""))
    if row is None or row.get("life_status") == "invalid":
        raise FxError(BAD_PARAMETER, "数据不存在或已作废")  # guess: as for standard objects
    row["life_status"] = "invalid"
    row[MODIFIED] = max(int(time.time() * 1000), row[MODIFIED] + 1)
    row["last_modified_by"] = [body["currentOpenUserId"]]
    state._custom_version += 1
    state.notify("invalid", api_name, row["_id"])
    return _ok()


# ---- sandbox settings (control) -------------------------------------------------------------
async def settings_endpoint(request: Request) -> Response:
    """GET/PATCH /_sandbox/fxiaoke: callback_url, daily_quota, quota_used; GET lists
    the callbacks sent."""
    state = _state(request)
    if request.method == "PATCH":
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "the body is not valid JSON"}, 400)
        allowed = {"callback_url", "daily_quota", "quota_used"}
        if not isinstance(body, dict) or not body or set(body) - allowed:
            return JSONResponse({"error": f"send a JSON object with keys among "
                                          f"{sorted(allowed)}"}, 400)
        url = body.get("callback_url", state.callback_url)
        if url is not None and not (isinstance(url, str) and url.startswith(("http://",
                                                                             "https://"))):
            return JSONResponse({"error": "callback_url must be an http(s) URL or null"}, 400)
        for key in ("daily_quota", "quota_used"):
            value = body.get(key, 0)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                return JSONResponse({"error": f"{key} must be a non-negative integer"}, 400)
        state.callback_url = url
        state.daily_quota = body.get("daily_quota", state.daily_quota)
        state.quota_used = body.get("quota_used", state.quota_used) or 0
    return JSONResponse({"callback_url": state.callback_url, "daily_quota": state.daily_quota,
                         "quota_used": state.quota_used, "aes_key_configured": True,
                         "callbacks": list(state.callback_log)})


# ---- app ------------------------------------------------------------------------------------
async def _fallback(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(CONTROL_PREFIX):
        return JSONResponse({"error": "not found" if status == 404 else "method not allowed"},
                            status)
    return _error(BAD_PARAMETER, "参数错误或接口不存在")  # §6: 10006 also for unknown paths


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               latency: float = 0.0, concurrency_limit: int | None = 10,
               hang_seconds: float = 30.0, calls_per_window: int = 100,
               window: float = 20.0, daily_quota: int | None = None,
               token_ttl: int = 7200, callback_url: str | None = None,
               currency: str = "CNY", language: str = "zh-CN",
               multi_currency: bool = False) -> Starlette:
    """A Fxiaoke sandbox app; its state is `app.state.fxiaoke` (a FxiaokeState)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=(TOKEN_PATH,))
    state = FxiaokeState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        harness=harness, calls_per_window=calls_per_window, window=window,
        daily_quota=daily_quota, token_ttl=token_ttl, callback_url=callback_url,
        currency=currency, language=language, multi_currency=multi_currency)
    crm: list[tuple[str, Handler]] = [
        (DESCRIBE_PATH, describe),
        (QUERY_PATH, query_standard),
        ("/cgi/crm/v2/data/get", get_record),
        ("/cgi/crm/v2/data/invalid", invalid_record),
        ("/cgi/crm/v2/data/delete", delete_records),
        (CUSTOM_QUERY_PATH, query_custom),
        ("/cgi/crm/custom/v2/data/get", get_record),
        ("/cgi/crm/custom/v2/data/create", create_custom),
        ("/cgi/crm/custom/v2/data/update", update_custom),
        ("/cgi/crm/custom/v2/data/invalid", invalid_custom),
    ]
    directory: list[tuple[str, Handler]] = [
        (DEPARTMENT_LIST_PATH, department_list),
        (USER_LIST_PATH, user_list),
        (USER_BY_MOBILE_PATH, user_by_mobile),
    ]
    routes = [
        *control_routes(state),
        Route(f"{CONTROL_PREFIX}/fxiaoke", settings_endpoint, methods=["GET", "PATCH"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        *(Route(path, endpoint(h, crm=True), methods=["POST"]) for path, h in crm),
        *(Route(path, endpoint(h, crm=False), methods=["POST"]) for path, h in directory),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
        exception_handlers={404: _fallback, 405: _fallback},
    )
    app.state.fxiaoke = state
    return app


def serve(host: str = "127.0.0.1", port: int = 8720, **create_app_kwargs: Any) -> None:
    """Run the sandbox with uvicorn until interrupted (`crmsync sandbox fxiaoke`)."""
    import gc

    import uvicorn

    app = create_app(**create_app_kwargs)
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


__all__ = ["GOAL_FIELDS", "GOAL_KEY_FIELD", "SANDBOX_AES_KEY", "SANDBOX_APP_ID",
           "SANDBOX_APP_SECRET", "SANDBOX_PERMANENT_CODE",
           "FxiaokeState", "create_app", "serve"]
