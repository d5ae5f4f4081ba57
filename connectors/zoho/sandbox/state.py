"""The Zoho sandbox's org: its data, OAuth client, tokens, credits and page tokens.

Behaviour follows docs/vendors/zoho.md (cited as §n).
"""

import copy
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request

from connectors.sandbox.dataset import SORT_KEYS, Company, SortField
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company
from connectors.sandbox.paging import PageTokenStore, Window
from connectors.zoho.sandbox.errors import ZohoError, not_found
from connectors.zoho.sandbox.wire import MODULES, ModuleSpec, Wire

PAGE_TOKEN_CAP = 100_000  # §2: page_token reaches up to 100,000 records
RESERVED = {"settings", "org", "users", "actions", "coql", "bulk"}


@dataclass
class ZohoState:
    """Everything the app knows: the org's data, its OAuth client, tokens and counters."""

    company: Company
    client_id: str
    client_secret: str
    refresh_token: str
    token_ttl: int
    tz: ZoneInfo
    harness: Harness
    token_grant_limit: int = 10  # §1: at most 10 access tokens per refresh token per 10 min
    token_grant_window: float = 600.0
    credits_per_day: int | None = None  # §7: optional 24 h credit budget
    pagination_cap: int = PAGE_TOKEN_CAP
    multi_currency: bool = True  # False: an org below Enterprise (one currency, §8)
    page_tokens: PageTokenStore = field(default_factory=PageTokenStore)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    grants: deque[float] = field(default_factory=deque)  # monotonic times of recent grants
    credits: deque[float] = field(default_factory=deque)
    token_grants: int = 0
    grant_codes: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> expiry, scope
    wire: Wire = field(init=False, repr=False)
    _snapshot: Company | None = field(default=None, repr=False)
    _filtered: dict[tuple[Any, ...], Window[Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.multi_currency:
            one_currency(self.company)
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self.wire = Wire(self.company, self.tz, self.multi_currency)

    # ---- harness hooks (connectors.sandbox.faults.ErrorBodies) ----------------------------
    def too_many_requests(self) -> tuple[int, dict[str, Any]]:
        # §7: 429 TOO_MANY_REQUESTS in the standard envelope, no Retry-After; message unverified.
        return 429, ZohoError(429, "TOO_MANY_REQUESTS",
                              "You have exceeded the API call limit. Please try again later."
                              ).body()

    def internal_error(self) -> tuple[int, dict[str, Any]]:
        return 500, ZohoError(500, "INTERNAL_ERROR", "Internal Server Error").body()  # §7

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # ---- control API hooks (connectors.sandbox.control.SandboxState) -----------------------
    def reset(self) -> None:
        """Back to the initial data (a new `company` object); faults, counters and page tokens
        cleared; access tokens stay valid."""
        params, listeners = self.company.generated_with, self.company.listeners
        if params is not None:
            self.company = generate_company(**params)
        else:
            self.company = copy.deepcopy(self._snapshot or self.company)
        self.company.listeners[:] = listeners  # notifications (notifications.py) keep firing
        if not self.multi_currency:
            one_currency(self.company)
        self.wire = Wire(self.company, self.tz, self.multi_currency)
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.page_tokens.clear()
        self._filtered.clear()
        self.grants.clear()
        self.credits.clear()
        self.token_grants = 0

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "token_grants": self.token_grants,
                "served_429": self.harness.served["429"], "live_tokens": len(self.tokens),
                "credits_used_24h": len(self.credits),
                "deals": len(self.company.deals), "accounts": len(self.company.accounts),
                "activities": len(self.company.activities)}

    # ---- OAuth -----------------------------------------------------------------------------
    def mint_token(self) -> str:
        if len(self.tokens) > 1000:  # forget expired tokens now and then
            now = time.time()
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.tokens[token] = time.time() + self.token_ttl
        self.token_grants += 1
        return token

    def token_expiry(self, token: str) -> float | None:
        expiry = self.tokens.get(token)
        if expiry is None:
            return None
        if expiry <= time.time():
            del self.tokens[token]
            return None
        return expiry

    def spend_credit(self) -> int | None:
        """Charge one credit (§7: most calls cost 1); remaining credits, or None if unlimited."""
        if self.credits_per_day is None:
            return None
        now = time.monotonic()
        while self.credits and self.credits[0] <= now - 86_400:
            self.credits.popleft()
        if len(self.credits) >= self.credits_per_day:
            self.harness.served["429"] += 1
            raise ZohoError(429, "TOO_MANY_REQUESTS",
                            "You have exceeded the API credit limit for the day.")
        self.credits.append(now)
        return self.credits_per_day - len(self.credits)

    # ---- records ---------------------------------------------------------------------------
    def module(self, name: str) -> ModuleSpec:
        spec = MODULES.get(name.lower())
        if spec is None:
            if name.lower() in RESERVED:
                raise not_found()
            # crm-oas v8 record.yaml: INVALID_MODULE carries resource_path_index.
            raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                            {"resource_path_index": 0})
        return spec

    def pool(self, spec: ModuleSpec) -> dict[str, Any]:
        """The module's live records by id (an activity module: its kind's)."""
        pool = self.company.pool(spec.entity)
        if spec.kind is None:
            return pool
        return {i: r for i, r in pool.items() if r.kind == spec.kind}

    def window(self, spec: ModuleSpec, order: SortField, since: int | None,
               ids: list[str] | None) -> Window[Any]:
        """The records to page through, ascending by (order, id), in O(log N) when cached."""
        company, entity = self.company, spec.entity
        if ids is not None:
            pool = self.pool(spec)
            chosen = [pool[i] for i in dict.fromkeys(ids) if i in pool]
            if since is not None:
                chosen = [r for r in chosen if r.modified_at.timestamp() >= since]
            pairs = sorted((SORT_KEYS[order](r), r) for r in chosen)
            return Window([k for k, _ in pairs], [r for _, r in pairs])
        index = company.index(entity, order, spec.kind)
        if since is None:
            return index.window()
        if order == "modified_at":  # the usual incremental read: a suffix of the index
            return index.window().starting_at((since, ""))
        key = (entity, spec.kind, order, since, company.version)
        if key not in self._filtered:
            if len(self._filtered) > 16:
                self._filtered.clear()
            pairs = [(k, r) for k, r in zip(index.keys, index.items, strict=True)
                     if r.modified_at.timestamp() >= since]
            self._filtered[key] = Window([k for k, _ in pairs], [r for _, r in pairs])
        return self._filtered[key]


def one_currency(company: Company) -> None:
    """The company as an org without multi-currency holds it: every amount in the home
    currency (converted at the deal's own rate, to the cent), one currency in the org."""
    home, cent = company.home_currency, Decimal("0.01")
    for deal in company.deals.values():
        if deal.currency != home or deal.exchange_rate != 1:
            deal.amount = (deal.amount / deal.exchange_rate).quantize(cent)
        deal.currency, deal.exchange_rate = home, Decimal(1)
    company.currencies = {home: Decimal(1)}


def state_of(request: Request) -> ZohoState:
    state: ZohoState = request.app.state.zoho
    return state
