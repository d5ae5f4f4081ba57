"""The Pipedrive sandbox's company account: its data, credentials, tokens, rate limits,
webhooks and goals, and the hooks of the kit's harness and control API
(docs/vendors/pipedrive.md §n)."""

import copy
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from connectors.pipedrive.sandbox.errors import PipedriveError
from connectors.pipedrive.sandbox.wire import Wire
from connectors.pipedrive.wire import BURST_WINDOW, FAIR_USE_WRITES
from connectors.sandbox.dataset import Company, Deal, Entity, Operation
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company

DELETED_KEPT_DAYS = 30  # §3: status=deleted lists deals deleted up to 30 days ago


@dataclass
class Webhook:
    """§5: one webhook created through the API."""

    id: int
    subscription_url: str
    event_action: str
    event_object: str
    name: str
    http_auth_user: str | None
    http_auth_password: str | None
    version: str
    user_id: int
    add_time: str

    def public(self) -> dict[str, Any]:
        # §5 (guess): the password is never echoed back.
        return {"id": self.id, "company_id": 1, "owner_id": self.user_id,
                "user_id": self.user_id, "event_action": self.event_action,
                "event_object": self.event_object, "subscription_url": self.subscription_url,
                "name": self.name, "version": self.version, "is_active": 1,
                "add_time": self.add_time, "remove_time": None, "type": "general",
                "http_auth_user": self.http_auth_user,
                "http_auth_password": "******" if self.http_auth_password else None,
                "last_delivery_time": None, "last_http_status": None}


@dataclass
class PipedriveState:
    """Everything the app knows about the simulated company account."""

    company: Company
    api_token: str
    client_id: str
    client_secret: str
    refresh_token: str
    token_ttl: int
    harness: Harness
    burst_limit: int = 80  # §6: requests per 2 s per token (Professional, API token)
    daily_budget: int | None = None  # §6: tokens per day; None: unlimited
    teams: bool = True  # §10: the plan has Teams (Professional and up)
    daily_writes: int = FAIR_USE_WRITES  # §6: POST/PUT fair use of the API token's user
    webhook_retry_delays: tuple[float, ...] = (3.0, 30.0, 150.0)  # §5
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    token_grants: int = 0
    windows: dict[str, deque[float]] = field(default_factory=dict)  # token -> call times
    spent: int = 0  # daily budget tokens spent
    writes: int = 0  # POST/PUT requests of the API token today (§6)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    goals: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    wire: Wire = field(init=False, repr=False)
    live: dict[str, Deal] = field(default_factory=dict, repr=False)  # every deal seen alive
    _snapshot: Company | None = field(default=None, repr=False)
    _next_webhook: int = 1

    def __post_init__(self) -> None:
        if self.company.generated_with is None:
            self._snapshot = copy.deepcopy(self.company)
        self._bind()

    def _bind(self) -> None:
        self.wire = Wire(self.company)
        self.live = dict(self.company.deals)
        self.company.listeners.insert(0, self._remember)

    def _remember(self, entity: Entity, operation: Operation, ids: list[str]) -> None:
        """Keep deals seen alive, so a deleted one can be listed with its last state (§3)."""
        if entity == "deals" and operation != "delete":
            for deal_id in ids:
                if deal_id in self.company.deals:
                    self.live[deal_id] = self.company.deals[deal_id]

    # ---- harness hooks (connectors.sandbox.faults.ErrorBodies) ----------------------------
    def too_many_requests(self) -> tuple[int, dict[str, Any]]:
        return 429, PipedriveError(429, "Request over limit").body()  # §6

    def internal_error(self) -> tuple[int, dict[str, Any]]:
        return 500, PipedriveError(500, "Internal server error").body()

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # ---- control API hooks (connectors.sandbox.control.SandboxState) -----------------------
    def reset(self) -> None:
        """Back to the initial data; faults, counters, budgets, webhooks and goals cleared;
        access tokens stay valid."""
        params, listeners = self.company.generated_with, self.company.listeners
        if params is not None:
            self.company = generate_company(**params)
        else:
            self.company = copy.deepcopy(self._snapshot or self.company)
        self.company.listeners[:] = [f for f in listeners if f != self._remember]
        self._bind()
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.windows.clear()
        self.spent = self.writes = 0
        self.goals.clear()

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "token_grants": self.token_grants,
                "served_429": self.harness.served["429"], "live_tokens": len(self.tokens),
                "budget_spent": self.spent, "webhooks": len(self.webhooks),
                "goals": len(self.goals), "deliveries": len(self.deliveries),
                "deals": len(self.company.deals), "accounts": len(self.company.accounts)}

    # ---- credentials and limits ----------------------------------------------------------
    def mint_token(self) -> str:
        now = time.time()
        if len(self.tokens) > 1000:
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        token = f"v1u:{secrets.token_urlsafe(24)}"
        self.tokens[token] = now + self.token_ttl
        self.token_grants += 1
        return token

    def caller(self, request: Request) -> tuple[str, bool]:
        """The credential of a call (§1): (token, is_api_token); 401 when there is none."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
            expiry = self.tokens.get(token)
            if expiry is None or expiry <= time.time():
                self.tokens.pop(token, None)
                raise PipedriveError(401, "Unauthorized access")
            return token, False
        given = request.headers.get("x-api-token") or request.query_params.get("api_token")
        if given and secrets.compare_digest(given, self.api_token):
            return given, True
        raise PipedriveError(401, "You need to be authorized to make this request.")

    def charge(self, token: str, api_token: bool, cost: int, write: bool = False
               ) -> dict[str, str]:
        """§6: one call against the token's 2-second window and the daily budget; the
        rate-limit headers of the answer. Raises 429 (with the headers) when over. A POST
        or PUT with the API token counts against the fair-use allowance, which Pipedrive
        reports (x-daily-requests-left) but does not enforce call by call ("we may start
        blocking" after repeated excess), so neither does the sandbox."""
        now = time.monotonic()
        window = self.windows.setdefault(token, deque())
        while window and window[0] <= now - BURST_WINDOW:
            window.popleft()
        limit = self.burst_limit if api_token else self.burst_limit * 4  # §6: OAuth 4x
        reset = max(1, round(window[0] + BURST_WINDOW - now)) if window else int(BURST_WINDOW)
        headers = {"x-ratelimit-limit": str(limit), "x-ratelimit-reset": str(reset)}
        if self.daily_budget is not None:
            left = max(0, self.daily_budget - self.spent)
            headers["x-daily-ratelimit-token-remaining"] = str(left)
            if left < cost:  # guess: what the call cannot pay counts as used up (0 left)
                self.harness.served["429"] += 1
                raise PipedriveError(429, "Daily rate limit exceeded",  # guess: wording
                                     {**headers, "x-ratelimit-remaining": "0",
                                      "x-daily-ratelimit-token-remaining": "0",
                                      "Retry-After": str(_seconds_to_midnight())})
        if len(window) >= limit:
            self.harness.served["429"] += 1
            raise PipedriveError(429, "Request over limit",
                                 {**headers, "x-ratelimit-remaining": "0",
                                  "Retry-After": str(reset)})
        window.append(now)
        self.spent += cost
        headers["x-ratelimit-remaining"] = str(limit - len(window))
        if self.daily_budget is not None:
            headers["x-daily-ratelimit-token-remaining"] = str(self.daily_budget - self.spent)
        if api_token:
            self.writes += 1 if write else 0
            headers["x-daily-requests-left"] = str(max(0, self.daily_writes - self.writes))
        return headers

    # ---- webhooks ------------------------------------------------------------------------
    def add_webhook(self, **values: Any) -> Webhook:
        hook = Webhook(id=self._next_webhook, **values)
        self._next_webhook += 1
        self.webhooks[hook.id] = hook
        return hook


def _seconds_to_midnight() -> int:
    now = time.time()
    return int(86_400 - now % 86_400) or 1


def state_of(request: Request) -> PipedriveState:
    state: PipedriveState = request.app.state.pipedrive
    return state
