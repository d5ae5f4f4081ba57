"""The Salesforce sandbox's org: its company, connected app and integration user, sessions,
API allocation, query cursors, recycle bin, quotas and feature switches, and the hooks of
the kit's harness and control API (docs/vendors/salesforce.md, cited as §n).

Deletions: a deal or account deleted through the control API goes to the recycle bin:
`queryAll` returns it with IsDeleted = true and getDeleted lists it, for 15 days (§4).
Records the dataset generated as already deleted are in the bin (or purged, `permanent`)
without their fields: getDeleted lists the ones of the last 15 days, queries never show
them. A time comes from the company's clock, so tests can move "now".
"""

import copy
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.requests import Request

from connectors.salesforce.auth import load_private_key
from connectors.salesforce.sandbox.errors import SfError
from connectors.salesforce.sandbox.soql import Schema, SoqlError, object_named
from connectors.salesforce.sandbox.wire import (
    FORECAST_OBJECTS,
    PREFIX,
    Org,
    activity_object,
    dated_rates,
    forecasting_types,
    periods,
    schema_of,
    sf_id,
)
from connectors.salesforce.wire import (
    CONCURRENT_REQUESTS,
    INVALID_QUERY_LOCATOR,
    INVALID_SESSION,
    RECYCLE_BIN_DAYS,
    REQUEST_LIMIT,
    TOTAL_REQUESTS,
)
from connectors.sandbox.dataset import Account, Company, Deal, Entity, Operation
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company

SANDBOX_CLIENT_ID = "3MVG9sandbox.crmsync.consumer.key"
SANDBOX_CLIENT_SECRET = "sandbox-consumer-secret"
SANDBOX_REFRESH_TOKEN = "5Aep861sandbox.refresh.token"
SANDBOX_USERNAME = "integration@crmsync.sandbox"
# A throwaway RSA key for the sandbox's connected app (JWT bearer flow, §1): the sandbox
# verifies assertions with its public half; never use it anywhere else.
SANDBOX_PRIVATE_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC3IOu2rzHgOe8x
u2hyPze2FiqrCnBD2wW3egfsGn0ht9ziIX5mqPAviQJzAddExrC8BadDfGQF01Km
mW7FHEuswX+tv4Q8ZINS/s+e09GvTjDZJrTURHdR4ce8yeWQciGN66dt4XROGqzQ
J/4HTEC5CnaMJeBviTL1qSJ5wbn4dgCur+mdKjzhsCFdK+Wz0PvE0nOI8JqsSjuh
aRAEY/qGiP8Wc7Zy3lxkOkjQj0JIel7tN1zoUHhYiJH2ylRbaF+8CeSACqYS8Ihj
5D0gL99xZDbxGICEuC4gV0DEYsc95aYLfUFCc+vXEF1o0hTvvtuGMfEaoKt7ILU1
3saQB/YFAgMBAAECggEACGtOCu8RBvMC6TFpgt8fK5LnUUfAk44NPDszBArPt+4h
DJBnpEaeDEFrSGhMQlA0LeDAqNyeKJpnkVs6eXtsizu2KAHHDZO9aeJnHzEz0bBx
lHowFBY1uiD8MtTBZhupKUItR2L3GuQlD8jW5/T8gMVXX+gZ4mbXXe3xtNFQQHjw
c87Hen7NX+VvWN4N9E9MI7pR2aAB9KcifSWqrn/vRZzFalnLPCQ5UmfLnHSXnrhU
FPgTYifghpQBHFYBj0BrWhMgLSy145Ud6SJkABa5hpyxr0lzj/541qGfLsyHUhrd
bVEahV2YCsjidGf10hHpewdnZ2ZRGxLoFCKklB4XgQKBgQDb4mCPRT7WHpM7pFzP
d1+9P/XVF3UXqrFyXZRltLgooWve5AzoeX4bkcXqZNJId82oSHxr/BWotOSR0xhH
qthLoittduTzWeFkYacdXiQSbYl9hJRt4H880holZ5H55KI80p7gGQm82PrVrHk7
eMsh2/8PznOzXIaVaFpWtxMrJQKBgQDVNQ1lR9ZXUvmduxGhNUitezjByyH+fUxj
9moMbovOtGzSGoIy1U/QyNfyUuk8fHqEEF4hFA5mwOiYBzjl7HcMKEXC4lPp7OMr
+WB1RvR32fKoxbe+krd4TnRZmzRfApVFsPbdAEgpsUgmK8k9Ng+3i7TBSEp+gE+Y
yiRzWfYZYQKBgQDKyV9WIn2OCYqt0arKp4RDTC6TRNv3ZLPcDpPirKW+ywhp+pYw
/IMiN/F4d107+klP7vHYwRbUjWfTWQSma9ipADne7Wy/ReBJrInr2ruXxy+q88/T
+dw+omH8pyUIeyRoxbJCaLUDVnUXBMaV45QrePIliLhJ7YYtWp0eJh9mhQKBgCj2
I1e1AIIQZ/Kc0RtGsGrcBKB+1U4eZoHCAsfWqTeSRGHtQ9xeTRJQs+RTd4nuZF9h
AaSbRNUK9OTYZl8OGiUUy6pQb0y+/ToilByUAD3SeqNgMRgE+gi8EfBxOBOU3Hbi
M9trxXF1JOZofSYsb8KUraqAqAc7wY8aLvyWaQihAoGAZY1wGTQZyUe9TgQ+4AaY
wZRtc8D2Cd6PvL2WYxlnk5EadQzTfbyVd+W2QYUdjV3LYq1qvisZOxYDfgUtVGY6
e7FJFdiukBuZnR0MQiMS7QVwHdLsnRZjkAWKS54FuaTLQ9eMsvzLtIBZv8j92EG5
nG28Wd2/iK5mCR+NNPqFGwk=
-----END PRIVATE KEY-----

"""
OBJECTS = ("User", "Account", "Opportunity", "OpportunityStage", "Organization",
           "CurrencyType", "DatedConversionRate", "Period", "ForecastingType",
           "ForecastingQuota", "OpportunityHistory", "Task", "Event")
MAX_CURSORS = 10  # §2: open query cursors per user; the oldest closes
CURSOR_IDLE = 15 * 60.0  # §2: a cursor expires after 15 minutes without a fetch


@dataclass
class Session:
    user_id: str
    expires_at: float  # time.time()


@dataclass
class Cursor:
    """A query locator: the answer's records, served batch by batch (§2)."""

    records: list[dict[str, Any]]
    batch: int
    user_id: str
    used_at: float


@dataclass
class SalesforceState:
    """The org: data, connected app, sessions, limits, cursors, quotas, switches."""

    company: Company
    harness: Harness
    multi_currency: bool = True  # §5: CurrencyIsoCode and CurrencyType exist
    advanced_currency: bool = False  # §5: DatedConversionRate has rows
    forecasts_enabled: bool = True  # §8: Collaborative Forecasts (ForecastingQuota exists)
    manage_quotas: bool = True  # §8: the integration user's Manage Quotas permission
    forecast_period: str = "Quarter"  # §8: Month or Quarter (guess: the sandbox's default)
    api_max: int = 100_000  # §6: DailyApiRequests Max
    api_used: int = 0
    session_ttl: float = 7200.0  # §1: the org's session timeout (2 hours)
    query_timeout_rows: int | None = None  # a query matching more rows fails QUERY_TIMEOUT
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    username: str = SANDBOX_USERNAME
    public_key_pem: str = ""  # §1: the certificate's key uploaded to the connected app
    org_id: str = sf_id(PREFIX["Organization"], 1)
    integration_user_id: str = sf_id(PREFIX["User"], 900_001)
    refresh_tokens: set[str] = field(default_factory=lambda: {SANDBOX_REFRESH_TOKEN})
    sessions: dict[str, Session] = field(default_factory=dict)
    cursors: "OrderedDict[str, Cursor]" = field(default_factory=OrderedDict)
    quotas: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_labels: dict[str, str] = field(default_factory=dict)  # ApiName -> renamed label
    token_calls: int = 0
    org: Org = field(init=False, repr=False)
    recycle: dict[str, tuple[Deal | Account, datetime]] = field(default_factory=dict)
    _known: dict[str, Deal | Account] = field(default_factory=dict, repr=False)
    _snapshot: Company | None = field(default=None, repr=False)
    _tables: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]], list[dict[str, Any]]]] = \
        field(default_factory=dict, repr=False)
    _fixed: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _indexes: dict[str, tuple[list[dict[str, Any]], list[datetime], list[dict[str, Any]]]] = \
        field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.public_key_pem:
            key = load_private_key(SANDBOX_PRIVATE_KEY)
            self.public_key_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self._attach()

    def _attach(self) -> None:
        created = min((r.created_at for r in self.company.reps), default=self.company.now())
        self.org = Org(self.company, multi_currency=self.multi_currency,
                       integration_user=self._integration_user(created),
                       stage_labels=self.stage_labels)
        self._known = {**self.company.deals, **self.company.accounts}
        self.recycle.clear()
        self._tables.clear()
        closes = [d.close_date for d in self.company.deals.values()] or [created.date()]
        self._fixed = {
            "CurrencyType": self.org.currency_types() if self.multi_currency else [],
            "DatedConversionRate": dated_rates(self.company, min(closes), max(closes))
            if self.multi_currency and self.advanced_currency else [],
            "Period": periods(min(closes).year - 1, max(closes).year + 2, created),
            "ForecastingType": forecasting_types(created),
        }
        self.company.listeners.append(self._on_change)

    def _integration_user(self, created: datetime) -> dict[str, Any]:
        return {"Id": self.integration_user_id, "Username": self.username,
                "Name": "Integration User", "FirstName": "Integration", "LastName": "User",
                "Email": self.username, "IsActive": True, "ManagerId": None,
                "UserRoleId": None, "UserType": "Standard", "Title": "API integration",
                "Department": None, "CreatedDate": created, "LastModifiedDate": created,
                "SystemModstamp": created}

    # ---- harness hooks (connectors.sandbox.faults.ErrorBodies) ----------------------------
    def too_many_requests(self) -> tuple[int, Any]:
        # §6: no 429; the concurrent long-running limit is 403 REQUEST_LIMIT_EXCEEDED.
        return 403, SfError(403, REQUEST_LIMIT, CONCURRENT_REQUESTS).body()

    def internal_error(self) -> tuple[int, Any]:
        return 500, SfError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please "
                            "include this ErrorId if you contact support: 1234567890-12345 "
                            "(-1234567890)").body()  # §7

    def expire_tokens(self) -> None:
        self.sessions.clear()

    # ---- control API hooks (connectors.sandbox.control.SandboxState) -----------------------
    def reset(self) -> None:
        params = self.company.generated_with
        self.company = generate_company(**params) if params is not None else \
            copy.deepcopy(self._snapshot or self.company)
        self.company.listeners.clear()
        self.stage_labels.clear()
        self._attach()
        self.quotas.clear()
        self.cursors.clear()
        self.sessions.clear()
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.api_used = 0

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "api_used": self.api_used, "api_max": self.api_max,
                "sessions": len(self.sessions), "cursors": len(self.cursors),
                "deals": len(self.company.deals), "accounts": len(self.company.accounts),
                "recycle_bin": len(self.recycle), "quotas": len(self.quotas)}

    # ---- data ------------------------------------------------------------------------------
    def _on_change(self, entity: Entity, operation: Operation, ids: list[str]) -> None:
        pool: dict[str, Any] = self.company.deals if entity == "deals" else \
            self.company.accounts
        for record_id in ids:
            if operation == "delete":  # §4: into the recycle bin, for 15 days
                record = self._known.get(record_id)
                if record is not None:
                    deleted = next(d for d in reversed(self.company.deletions)
                                   if d.id == record_id)
                    if not deleted.permanent:
                        self.recycle[record_id] = (record, deleted.deleted_at)
            else:
                self._known[record_id] = pool[record_id]
                self.recycle.pop(record_id, None)

    def now(self) -> datetime:
        return self.company.clock().replace(microsecond=0)

    def in_recycle_bin(self, deleted_at: datetime) -> bool:
        return deleted_at >= self.now() - timedelta(days=RECYCLE_BIN_DAYS)

    def object_name(self, name: str) -> str:
        """The object's API name, or INVALID_TYPE (forecast objects need Collaborative
        Forecasts, currency objects multi-currency: §5, §8)."""
        found = object_named(OBJECTS, name)
        if (found in FORECAST_OBJECTS and not self.forecasts_enabled) or \
                (found in ("CurrencyType", "DatedConversionRate") and not self.multi_currency):
            raise SoqlError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        return found

    def schema(self, object_name: str) -> Schema:
        schema = schema_of(object_name, self.multi_currency)
        if object_name == "ForecastingQuota" and not self.multi_currency:
            schema = {k: v for k, v in schema.items() if k != "CurrencyIsoCode"}
        return schema

    def rows(self, object_name: str) -> list[dict[str, Any]]:
        """Every row of an object, deleted ones (IsDeleted) included; cached per version."""
        if object_name in self._fixed:
            return self._fixed[object_name]
        if object_name == "ForecastingQuota":
            return list(self.quotas.values())
        if object_name == "Organization":
            return [self.org.organization(self.org_id)]
        version = (self.company.version, len(self.recycle), tuple(self.stage_labels.items()))
        cached = self._tables.get(object_name)
        if cached is None or cached[0] != version:
            cached = (version, *self._build(object_name))
            self._tables[object_name] = cached
        _, live, binned = cached
        if not binned:
            return live
        return live + [r for r in binned if self.in_recycle_bin(r["SystemModstamp"])]

    def _build(self, object_name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(live rows, recycle-bin rows) of a company object."""
        if object_name == "User":
            return self.org.users(), []
        if object_name == "OpportunityStage":
            return self.org.stages(), []
        if object_name == "Account":
            return ([self.org.account(a) for a in self.company.accounts.values()],
                    [self.org.account(r, at) for r, at in self.recycle.values()
                     if isinstance(r, Account)])
        if object_name in ("Task", "Event"):  # §12; the company's own deletions are binned
            return ([self.org.activity(a) for a in self.company.activities.values()
                     if a.kind != "note" and activity_object(a.kind) == object_name],
                    [self.org.activity(self.company.deleted_activities[d.id], d.deleted_at)
                     for d in self.company.deletions
                     if d.entity == "activities" and not d.permanent
                     and d.id in self.company.deleted_activities
                     and d.kind not in (None, "note")
                     and activity_object(d.kind) == object_name])
        if object_name == "OpportunityHistory":  # §11: deleted with its opportunity
            return ([r for d in self.company.deals.values()
                     for r in self.org.opportunity_history(d)],
                    [r for d, at in self.recycle.values() if isinstance(d, Deal)
                     for r in self.org.opportunity_history(d, at)])
        return ([self.org.opportunity(d) for d in self.company.deals.values()],
                [self.org.opportunity(r, at) for r, at in self.recycle.values()
                 if isinstance(r, Deal)])

    def index(self, object_name: str, rows: list[dict[str, Any]]
              ) -> tuple[list[datetime], list[dict[str, Any]]]:
        """`rows` sorted by SystemModstamp, and their stamps (kept while `rows` is the same
        list: rows() hands out a new list whenever the data changed)."""
        cached = self._indexes.get(object_name)
        if cached is None or cached[0] is not rows:
            ordered = sorted(rows, key=lambda r: r["SystemModstamp"])
            cached = (rows, [r["SystemModstamp"] for r in ordered], ordered)
            self._indexes[object_name] = cached
        return cached[1], cached[2]

    def rate_for(self, currency: str, on: date) -> Decimal:
        """§5: the conversion rate Salesforce applies to an opportunity closing `on`."""
        if currency == self.company.home_currency:
            return Decimal(1)
        for row in self._fixed["DatedConversionRate"]:
            if row["IsoCode"] == currency and row["StartDate"] <= on < row["NextStartDate"]:
                return Decimal(row["ConversionRate"])
        return self.company.currencies[currency]

    # ---- sessions and the API allocation (§1, §6) -----------------------------------------
    def mint_session(self, user_id: str) -> str:
        now = time.time()
        if len(self.sessions) > 1000:
            self.sessions = {t: s for t, s in self.sessions.items() if s.expires_at > now}
        token = f"{self.org_id[:15]}!AR{secrets.token_urlsafe(48)}"
        self.sessions[token] = Session(user_id, now + self.session_ttl)
        return token

    def session_user(self, authorization: str | None) -> str:
        """The user of a Bearer session, or 401 INVALID_SESSION_ID (§1)."""
        token = (authorization or "").removeprefix("Bearer ").removeprefix("OAuth ").strip()
        session = self.sessions.get(token)
        if session is None or session.expires_at <= time.time():
            self.sessions.pop(token, None)
            raise SfError(401, INVALID_SESSION, "Session expired or invalid")
        return session.user_id

    def spend(self) -> None:
        """§6: one call of the daily allocation; over it, 403 REQUEST_LIMIT_EXCEEDED."""
        if self.api_used >= self.api_max:
            self.harness.served["REQUEST_LIMIT_EXCEEDED"] += 1
            raise SfError(403, REQUEST_LIMIT, TOTAL_REQUESTS)
        self.api_used += 1

    @property
    def usage(self) -> tuple[int, int]:
        return self.api_used, self.api_max

    # ---- query cursors (§2) ---------------------------------------------------------------
    def open_cursor(self, records: list[dict[str, Any]], batch: int, user_id: str) -> str:
        now = time.time()
        for locator in [k for k, c in self.cursors.items() if c.used_at + CURSOR_IDLE <= now]:
            del self.cursors[locator]
        mine = [k for k, c in self.cursors.items() if c.user_id == user_id]
        while len(mine) >= MAX_CURSORS:
            del self.cursors[mine.pop(0)]
        locator = "01g" + secrets.token_hex(8)[:15].upper()
        self.cursors[locator] = Cursor(records, batch, user_id, now)
        return locator

    def cursor(self, locator: str, user_id: str) -> Cursor:
        found = self.cursors.get(locator)
        if found is None or found.user_id != user_id or \
                found.used_at + CURSOR_IDLE <= time.time():
            self.cursors.pop(locator, None)
            raise SfError(400, INVALID_QUERY_LOCATOR, "invalid query locator")
        found.used_at = time.time()
        return found


def state_of(request: Request) -> SalesforceState:
    state: SalesforceState = request.app.state.salesforce
    return state
