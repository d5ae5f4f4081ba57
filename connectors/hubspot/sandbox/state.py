"""The HubSpot sandbox's account (portal): its data, private-app token, OAuth client and
tokens, rate limits, merges, goal targets and webhook target, plus the hooks of the
kit's harness and control API (docs/vendors/hubspot.md, cited as §n)."""

import copy
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from connectors.hubspot.sandbox.errors import HubSpotError, rate_limited
from connectors.hubspot.sandbox.notifications import Outbox, listener
from connectors.hubspot.sandbox.wire import Wire
from connectors.hubspot.wire import BURST_WINDOW, SEARCH_CAP, SEARCH_PER_SECOND, TOKEN_TTL
from connectors.sandbox.dataset import (
    Account,
    Activity,
    ActivityKind,
    Company,
    Deal,
    Deletion,
    Entity,
)
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company

SANDBOX_TOKEN = "pat-na1-sandbox-private-app-token"
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_REFRESH_TOKEN = "na1-sandbox-refresh-token"
SANDBOX_PORTAL_ID = 62515  # the Hub ID of HubSpot's own examples (§8)
ALL_SCOPES = frozenset({"crm.objects.deals.read", "crm.objects.companies.read",
                        "crm.objects.contacts.read",
                        "crm.objects.owners.read", "settings.currencies.read",
                        "crm.objects.goals.read", "crm.objects.goals.write", "oauth"})


@dataclass
class HubSpotState:
    """Everything the app knows. Limits (§3, §7): `burst_limit` calls per 10 s,
    `daily_limit` a day (None: unlimited, as for OAuth apps), `search_per_second`
    searches a second; `search_cap` results per query; `search_lag` seconds before a
    change is visible to search."""

    company: Company
    harness: Harness
    access_token: str = SANDBOX_TOKEN
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    refresh_token: str = SANDBOX_REFRESH_TOKEN
    token_ttl: int = TOKEN_TTL
    portal_id: int = SANDBOX_PORTAL_ID
    app_id: int = 54321
    scopes: frozenset[str] = ALL_SCOPES
    burst_limit: int = 190
    daily_limit: int | None = None
    search_per_second: int = SEARCH_PER_SECOND
    search_cap: int = SEARCH_CAP
    search_lag: float = 0.0
    home_amounts: bool = True
    legacy_oauth_only: bool = False
    require_goal_template: bool = False
    webhook_url: str | None = None
    tokens: dict[str, float] = field(default_factory=dict)  # OAuth access token -> expiry
    token_grants: int = 0
    burst: deque[float] = field(default_factory=deque)
    searches: deque[float] = field(default_factory=deque)
    daily_used: int = 0
    merged: dict[str, list[str]] = field(default_factory=dict)  # primary -> merged ids
    merged_into: dict[str, str] = field(default_factory=dict)  # merged id -> primary
    goal_targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    archived_goals: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: Outbox = field(init=False)
    wire: Wire = field(init=False, repr=False)
    search_cache: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict, repr=False)
    _merging: tuple[str, list[str]] | None = field(default=None, repr=False)
    _snapshot: Company | None = field(default=None, repr=False)
    _next_goal: int = 87_504_620_389

    def __post_init__(self) -> None:
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self.outbox = Outbox(self.client_secret, self.app_id, self.portal_id)
        self._attach()

    def _attach(self) -> None:
        self.wire = Wire(self.company, self.merged, self.home_amounts)
        self.company.listeners.append(listener(lambda: self.webhook_url, lambda: self.outbox,
                                               lambda: self._merging, self._occurred))

    def _occurred(self, entity: str, operation: str, object_id: str) -> int:
        """When a change happened (epoch ms): the record's stamp in the dataset."""
        if operation == "delete":
            at = next((d.deleted_at for d in reversed(self.company.deletions)
                       if d.id == object_id), None)
        else:
            record = self.pool("deals" if entity == "deals" else "accounts").get(object_id)
            at = record.modified_at if record is not None else None
        return int(at.timestamp() * 1000) if at is not None else int(time.time() * 1000)

    # ---- harness hooks (connectors.sandbox.faults.ErrorBodies) ----------------------------
    def too_many_requests(self) -> tuple[int, dict[str, Any]]:
        return 429, rate_limited("TEN_SECONDLY_ROLLING",  # §7
                                 "You have reached your ten_secondly_rolling limit.")

    def internal_error(self) -> tuple[int, dict[str, Any]]:
        return 500, HubSpotError(500, "INTERNAL_ERROR", "internal error").body()

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # ---- control API hooks ----------------------------------------------------------------
    def reset(self) -> None:
        """Back to the initial data; faults, counters, merges, goals and limits cleared;
        access tokens stay valid."""
        params = self.company.generated_with
        self.company = (generate_company(**params) if params is not None
                        else copy.deepcopy(self._snapshot or self.company))
        self.company.listeners.clear()
        self.merged.clear()
        self.merged_into.clear()
        self.goal_targets.clear()
        self.archived_goals.clear()
        self.search_cache.clear()
        self._attach()
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.burst.clear()
        self.searches.clear()
        self.daily_used = 0
        self.token_grants = 0

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "token_grants": self.token_grants,
                "live_tokens": len(self.tokens), "daily_used": self.daily_used,
                "deals": len(self.company.deals), "accounts": len(self.company.accounts),
                "goal_targets": len(self.goal_targets),
                "webhooks": list(self.outbox.log[-50:])}

    # ---- tokens (§1) -----------------------------------------------------------------------
    def mint_token(self) -> str:
        now = time.time()
        if len(self.tokens) > 1000:
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        token = f"CO{secrets.token_hex(24)}"
        self.tokens[token] = now + self.token_ttl
        self.token_grants += 1
        return token

    def token_state(self, token: str) -> str:
        """"static", "oauth", "expired" or "unknown"."""
        if secrets.compare_digest(token, self.access_token):
            return "static"
        expiry = self.tokens.get(token)
        if expiry is None:
            return "unknown"
        return "oauth" if expiry > time.time() else "expired"

    # ---- limits (§3, §7) -------------------------------------------------------------------
    def charge(self, static: bool) -> dict[str, str]:
        """Count one call against the burst (and, for static tokens, daily) limit; the
        rate-limit headers; HubSpotError-like 429 via RateLimitedCall."""
        now = time.monotonic()
        while self.burst and self.burst[0] <= now - BURST_WINDOW:
            self.burst.popleft()
        if static and self.daily_limit is not None and self.daily_used >= self.daily_limit:
            raise RateLimitedCall(rate_limited("DAILY", "You have reached your daily limit."),
                                  self._headers(static))
        if len(self.burst) >= self.burst_limit:
            raise RateLimitedCall(rate_limited("TEN_SECONDLY_ROLLING",
                                               "You have reached your ten_secondly_rolling "
                                               "limit."), self._headers(static))
        self.burst.append(now)
        self.daily_used += 1
        return self._headers(static)

    def _headers(self, static: bool) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Max": str(self.burst_limit),
                   "X-HubSpot-RateLimit-Remaining": str(max(0, self.burst_limit -
                                                            len(self.burst))),
                   "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(BURST_WINDOW * 1000))}
        if static and self.daily_limit is not None:  # §7: daily headers for non-OAuth calls
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, self.daily_limit - self.daily_used))
        return headers

    def charge_search(self) -> None:
        """§3: 5 searches a second per account; 429 past it (assumed: policy SECONDLY)."""
        now = time.monotonic()
        while self.searches and self.searches[0] <= now - 1.0:
            self.searches.popleft()
        if len(self.searches) >= self.search_per_second:
            raise RateLimitedCall(rate_limited("SECONDLY", "You have reached your secondly "
                                                           "limit."), {})
        self.searches.append(now)

    # ---- records ---------------------------------------------------------------------------
    def pool(self, entity: Entity) -> dict[str, Any]:
        return self.company.pool(entity)

    def find(self, entity: Entity, kind: ActivityKind | None, object_id: str
             ) -> Deal | Account | Activity | None:
        """A live record by id (an activity of `kind`); a merged-away id answers its primary
        (§10)."""
        pool = self.pool(entity)
        if kind is not None:
            found = pool.get(object_id)
            return found if found is not None and found.kind == kind else None
        seen: set[str] = set()
        while object_id in self.merged_into and object_id not in pool and object_id not in seen:
            seen.add(object_id)
            object_id = self.merged_into[object_id]
        record: Deal | Account | None = pool.get(object_id)
        return record

    def merge(self, entity: Entity, primary_id: str, merged_id: str) -> Deal | Account:
        """§10: the merged record disappears (neither listed nor archived), the primary
        remembers its id in hs_merged_object_ids and is modified."""
        pool = self.pool(entity)
        if primary_id == merged_id or primary_id not in pool or merged_id not in pool:
            raise HubSpotError(400, "VALIDATION_ERROR",
                               "primaryObjectId and objectIdToMerge must be two different "
                               "live records")
        gone = [merged_id, *self.merged.pop(merged_id, [])]
        self._merging = (primary_id, gone)
        try:
            if entity == "deals":
                self.company.delete_deal(merged_id, permanent=True)
                primary: Deal | Account = self.company.edit_deal(
                    primary_id, name=self.company.deals[primary_id].name)
            else:  # the merged company's deals move to the primary first
                for deal in [d for d in self.company.deals.values()
                             if d.account_id == merged_id]:
                    self.company.edit_deal(deal.id, account_id=primary_id)
                self.company.delete_account(merged_id, permanent=True)
                primary = self.company.edit_account(
                    primary_id, name=self.company.accounts[primary_id].name)
        finally:
            self._merging = None
        self.merged.setdefault(primary_id, []).extend(gone)
        for old in gone:
            self.merged_into[old] = primary_id
        return primary

    def archived(self, entity: Entity, kind: ActivityKind | None = None) -> list[Deletion]:
        """§10: records in the recycle bin (deleted, not purged, not merged), oldest first;
        activities of `kind`."""
        live = self.pool(entity)
        latest: dict[str, Deletion] = {}
        for deletion in self.company.deletions:
            if deletion.entity == entity and deletion.kind == kind and not deletion.permanent \
                    and deletion.id not in live and deletion.id not in self.merged_into:
                latest[deletion.id] = deletion
        return sorted(latest.values(), key=lambda d: int(d.id))

    def new_goal_id(self) -> str:
        self._next_goal += 1
        return str(self._next_goal)


class RateLimitedCall(Exception):
    """A call refused with 429 (§7): the body and the rate-limit headers."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(body.get("message"))
        self.body, self.headers = body, headers


def state_of(request: Request) -> HubSpotState:
    state: HubSpotState = request.app.state.hubspot
    return state
