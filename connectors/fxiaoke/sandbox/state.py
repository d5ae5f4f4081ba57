"""The Fxiaoke sandbox's tenant: its data, app credentials, tokens, limits, custom objects
and callbacks (docs/vendors/fxiaoke.md, cited as §n).

Deletions: a record deleted through the control API (or `/data/invalid`) is voided:
it stays queryable with life_status "invalid" (§2). `/data/delete` then purges a
voided record for good. Records the dataset generated as already deleted count as
purged long ago. Data changes fire signed, encrypted CRM callbacks (§5) to
`callback_url` when one is set (notifications.py).
"""

import copy
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request

from connectors.fxiaoke.sandbox.errors import FxError
from connectors.fxiaoke.sandbox.notifications import Callback, Outbox
from connectors.fxiaoke.sandbox.wire import (
    GOAL_FIELDS,
    INTERACTIVE_TYPES,
    READ_ONLY,
    STANDARD,
    Table,
    Tenant,
    hex_id,
)
from connectors.fxiaoke.wire import (
    ACTIVITY_OBJECT,
    BAD_PARAMETER,
    CALL_LIMIT,
    CORP_NOT_FOUND,
    DAILY_QUOTA,
    MISSING_TOKEN,
    TENANT_TZ,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    to_ms,
)
from connectors.sandbox.dataset import Account, Activity, Company, Deal, Entity, Operation
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company

SANDBOX_APP_ID = "FSAID_sandbox0001"
SANDBOX_APP_SECRET = "sandbox-app-secret"
SANDBOX_PERMANENT_CODE = "sandbox-permanent-code"
SANDBOX_AES_KEY = "c2FuZGJveC1mc2lkZS1hZXMta2V5LTMyLWJ5dGVzISE="  # base64 of 32 bytes


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
    language: str = "zh-CN"  # describe's labels (wire.LANGUAGES)
    multi_currency: bool = False  # mc_currency / mc_exchange_rate on deals and goals
    revoked: set[str] = field(default_factory=set)  # tokens answered with 11014
    workflow_runs: int = 0  # custom-object writes that triggered the object's workflows
    tenant: Tenant = field(init=False, repr=False)
    _known: dict[str, Deal | Account] = field(default_factory=dict, repr=False)
    _snapshot: Company | None = field(default=None, repr=False)
    _tables: dict[str, tuple[tuple[int, ...], Table]] = field(default_factory=dict, repr=False)
    # rows rendered, by (object, record id): (what else the row shows, the row); kept while
    # every change of the company came with its ids (_rows_at: the version followed)
    _rows: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=dict, repr=False)
    _rows_at: int = 0
    _custom_version: int = 0
    _outbox: Outbox = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._outbox = Outbox(self.callback_log)
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self._attach()

    def _attach(self) -> None:
        self.tenant = Tenant(self.company, self.currency, self.language, self.multi_currency)
        self._known = {**self.company.deals, **self.company.accounts}
        self.voided.clear()
        self.purged.clear()
        self._tables.clear()
        self._rows.clear()
        self._rows_at = self.company.version
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
        if self._rows_at == self.company.version - 1:  # no change went by unannounced
            self._rows_at = self.company.version
        for record_id in ids:
            self._rows.pop((api_name, record_id), None)
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
            self.notify(event, api_name, hex_id(record_id))

    def table(self, api_name: str) -> Table:
        """Rows of an object, rebuilt only when its data changed."""
        entity = STANDARD.get(api_name)
        version = (self.company.version, self._custom_version, len(self.voided),
                   len(self.purged))
        cached = self._tables.get(api_name)
        if cached is not None and cached[0] == version:
            return cached[1]
        if self._rows_at != self.company.version:  # a change without its ids: render all
            self._rows.clear()
            self._rows_at = self.company.version
        if api_name in READ_ONLY:
            rows = self._activity_rows()
        elif entity is None:
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

    def _activity_rows(self) -> list[dict[str, Any]]:
        """§10: the calls and meetings held and the notes, as follow-up records; deleted ones
        voided (in the recycle bin) or gone (deleted for good)."""
        company = self.company
        rows = [self._activity_row(a, None) for a in company.activities.values()
                if a.done and (a.kind in INTERACTIVE_TYPES or a.kind == "note")]
        voided = [d for d in company.deletions if d.entity == "activities" and not d.permanent
                  and d.kind != "task"]
        for deletion in voided:
            activity = company.deleted_activities.get(deletion.id)
            if activity is not None and activity.done:
                rows.append(self._activity_row(activity, to_ms(deletion.deleted_at)))
        return rows

    def _activity_row(self, activity: Activity, voided_at: int | None) -> dict[str, Any]:
        deal = self.company.deals.get(activity.deal_id or "")
        account = self.company.accounts.get(activity.account_id or "")
        shown = (voided_at, deal.name if deal else None, account.name if account else None)
        return self._cached(ACTIVITY_OBJECT, activity.id, shown,
                            lambda: self.tenant.activity_row(activity, voided_at))

    def _row(self, record: Deal | Account, voided_at: int | None,
             names: dict[str, str]) -> dict[str, Any]:
        if isinstance(record, Deal):
            return self._cached("NewOpportunityObj", record.id,
                                (voided_at, names.get(record.account_id or "")),
                                lambda: self.tenant.deal_row(record, voided_at, names))
        return self._cached("AccountObj", record.id, (voided_at,),
                            lambda: self.tenant.account_row(record, voided_at, {}))

    def _cached(self, api_name: str, record_id: str, shown: tuple[Any, ...],
                render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A record's row, rendered again only when the record changed (the listener drops
        it) or what else it shows did (`shown`: its void time, the names it shows)."""
        cached = self._rows.get((api_name, record_id))
        if cached is not None and cached[0] == shown:
            return cached[1]
        row = render()
        self._rows[(api_name, record_id)] = (shown, row)
        return row

    # ---- callbacks (§5) ----------------------------------------------------------------------
    def notify(self, event_type: str, api_name: str, data_id: str) -> None:
        """Queue a signed, encrypted callback for delivery (when a callback_url is set)."""
        if not self.callback_url:
            return
        message_id = uuid.uuid4().hex.upper()[:33]
        content = {"tenantId": self.tenant_id, "eventType": event_type, "apiName": api_name,
                   "dataId": data_id, "timestamp": int(time.time() * 1000),
                   "messageId": message_id}
        self._outbox.put(Callback(self.callback_url, content, self.aes_key,
                                  self.enterprise_account, self.callback_attempts))

    def wait_for_callbacks(self, timeout: float = 10.0) -> None:
        """Block until every queued callback was delivered or given up (for tests)."""
        self._outbox.wait(timeout)

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
        if user == self.tenant.fsuid[self.tenant.manager.id]:
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


def state_of(request: Request) -> FxiaokeState:
    state: FxiaokeState = request.app.state.fxiaoke
    return state
