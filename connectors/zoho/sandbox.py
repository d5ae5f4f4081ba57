"""A simulated Zoho CRM org speaking the v8 wire format, over the synthetic company.

One ASGI app plays both hosts: the accounts server (`/oauth/v2/token`) and the
api_domain (`/crm/v8/...`). Behaviour follows docs/vendors/zoho.md
(cited as §n in comments); where Zoho documents nothing, the guess is marked
"guess". The neutral control API lives under `/_sandbox` (connectors.sandbox.control).

Room for later: a custom module such as `Sales_Goals` is one more `ModuleSpec`
in `MODULES` backed by its own store on `ZohoState`, plus a
`POST /crm/v8/{module}/upsert` route. Notifications (`/crm/v8/actions/watch`,
§5) live in connectors/zoho/sandbox_watch.py, fed by `Company.listeners`.
"""

import copy
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import (
    SORT_KEYS,
    Company,
    Deletion,
    Entity,
    SortField,
    generate_company,
)
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.paging import PageTokenStore, TokenState, Window
from connectors.sandbox.zoho_wire import MODULES, ModuleSpec, Wire, user_json
from connectors.zoho import sandbox_watch

API = "/crm/v8"
MAX_PER_PAGE = 200  # §2 and §3: default and max 200
MAX_FIELDS = 50  # §2: at most 50 API names in `fields`
MAX_IDS = 100  # guess: the v8 OAS caps the users `ids` list at 100; records alike
DISCRETE_LIMIT = 2000  # §2: only the first 2,000 records through `page`
GRANT_SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ"
PAGE_TOKEN_CAP = 100_000  # §2: page_token reaches up to 100,000 records
SORTABLE: dict[str, SortField] = {  # §2: sort_by takes only these three
    "id": "id", "Created_Time": "created_at", "Modified_Time": "modified_at"}
RECYCLE_DAYS, PERMANENT_DAYS = 60, 120  # §3: how long deleted rows stay listed
# §2: the documented `type` values -> (wants active?, admins only?); None = either way.
# Every sandbox user is confirmed and none is deleted; tokens belong to the admin (manager).
USER_TYPES: dict[str, tuple[bool | None, bool] | None] = {
    "AllUsers": (None, False), "ActiveAndDeactive": (None, False),
    "ConfirmedUsers": (None, False), "ActiveUsers": (True, False),
    "AllActiveUsers": (True, False), "ActiveConfirmedUsers": (True, False),
    "DeactiveUsers": (False, False), "AdminUsers": (None, True),
    "ActiveConfirmedAdmins": (True, True), "CurrentUser": (None, True),
    "NotConfirmedUsers": None, "DeletedUsers": None,
}
RESERVED = {"settings", "org", "users", "actions", "coql", "bulk"}


class ZohoError(Exception):
    """A Zoho error envelope `{"code","details","message","status":"error"}` (§7)."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "message": self.message,
                "status": "error"}

    def response(self) -> Response:
        return _json(self.body(), self.status)


def _invalid(param: str, message: str = "invalid data", **extra: Any) -> ZohoError:
    # zoho crm-oas v8 record.yaml: INVALID_DATA details carry `param_name`.
    return ZohoError(400, "INVALID_DATA", message, {"param_name": param, **extra})


def _missing(param: str) -> ZohoError:
    return ZohoError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                     {"param_name": param})


# ASCII escapes (the same JSON to any parser) and no cycle checks: the C encoder's fastest path.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(body).encode(), status, headers,
                    media_type="application/json")


def _empty(status: int) -> Response:
    return Response(None, status)  # §2: 204 and 304 carry an empty body


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
        self.company.listeners[:] = listeners  # notifications (sandbox_watch) keep firing
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
                "deals": len(self.company.deals), "accounts": len(self.company.accounts)}

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
                raise _not_found()
            # crm-oas v8 record.yaml: INVALID_MODULE carries resource_path_index.
            raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                            {"resource_path_index": 0})
        return spec

    def window(self, entity: Entity, order: SortField, since: int | None,
               ids: list[str] | None) -> Window[Any]:
        """The records to page through, ascending by (order, id), in O(log N) when cached."""
        company = self.company
        if ids is not None:
            pool: dict[str, Any] = company.deals if entity == "deals" else company.accounts
            chosen = [pool[i] for i in dict.fromkeys(ids) if i in pool]
            if since is not None:
                chosen = [r for r in chosen if r.modified_at.timestamp() >= since]
            pairs = sorted((SORT_KEYS[order](r), r) for r in chosen)
            return Window([k for k, _ in pairs], [r for _, r in pairs])
        index = company.index(entity, order)
        if since is None:
            return index.window()
        if order == "modified_at":  # the usual incremental read: a suffix of the index
            return index.window().starting_at((since, ""))
        key = (entity, order, since, company.version)
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


def _state(request: Request) -> ZohoState:
    state: ZohoState = request.app.state.zoho
    return state


def _not_found() -> ZohoError:
    return ZohoError(404, "INVALID_URL_PATTERN",  # §7: INVALID_URL_PATTERN is a 404
                     "Please check if the URL trying to access is a correct one")


# ---- OAuth (§1) ---------------------------------------------------------------------------
async def token_endpoint(request: Request) -> Response:
    """POST /oauth/v2/token; parameters in the query string or a form body (§1: both work)."""
    state = _state(request)
    params = dict(request.query_params)
    body = await request.body()
    if body:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    grant = params.get("grant_type")
    if grant not in ("refresh_token", "authorization_code"):
        return _json({"error": "unsupported_grant_type"})  # guess, in the §1 style (HTTP 200)
    client_ok = secrets.compare_digest(params.get("client_id", ""), state.client_id)
    secret_ok = secrets.compare_digest(params.get("client_secret", ""), state.client_secret)
    if not (client_ok and secret_ok):
        return _json({"error": "invalid_client"})  # §1: HTTP 200 with an error key
    if grant == "authorization_code":
        return _exchange_code(request, state, params.get("code", ""))
    if not secrets.compare_digest(params.get("refresh_token", ""), state.refresh_token):
        return _json({"error": "invalid_code"})  # §1: HTTP 200 with an error key
    now = time.monotonic()
    while state.grants and state.grants[0] <= now - state.token_grant_window:
        state.grants.popleft()
    if len(state.grants) >= state.token_grant_limit:  # §1: blocked for the rest of the window
        return _json({"error": "Access Denied", "error_description":
                      "You have made too many requests continuously. "
                      "Please try again after some time."}, 400)
    state.grants.append(now)
    return _json({
        "access_token": state.mint_token(),
        "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.users.READ ZohoCRM.org.READ",
        "api_domain": str(request.base_url).rstrip("/"),  # wherever this app is reachable
        "token_type": "Bearer",
        "expires_in": state.token_ttl,  # §1: seconds (legacy ms form not reproduced)
    })


def _exchange_code(request: Request, state: ZohoState, code: str) -> Response:
    """The Self Client authorization-code grant: a code made in the API console (here: POST
    /_sandbox/grant-codes) is exchanged once, before it expires, for an access token and
    the refresh token (https://www.zoho.com/accounts/protocol/oauth/self-client/
    authorization-code-flow.html; https://www.zoho.com/crm/developer/docs/api/v8/
    access-refresh.html). A code that is unknown, expired or already used answers
    {"error": "invalid_code"}, HTTP 200 like every token error (§1)."""
    expiry = state.grant_codes.pop(code, None)  # single use, even when it has expired
    if expiry is None or expiry[0] <= time.monotonic():
        return _json({"error": "invalid_code"})
    return _json({
        "access_token": state.mint_token(),
        "refresh_token": state.refresh_token,
        "scope": " ".join(s.strip() for s in expiry[1].split(",") if s.strip()),  # §1
        "api_domain": str(request.base_url).rstrip("/"),
        "token_type": "Bearer",
        "expires_in": state.token_ttl,
    })


async def new_grant_code(request: Request) -> Response:
    """POST /_sandbox/grant-codes {"scope"?, "expires_in"? (seconds, default 180)}: what the
    API console's Self Client > Generate Code does (default lifetime 3 minutes; the console
    offers 3 to 10). Answers 201 {"code", "expires_in", "scope"}."""
    state = _state(request)
    try:
        body = json.loads(await request.body() or b"{}")
        scope = str(body.get("scope", GRANT_SCOPE))
        ttl = float(body.get("expires_in", 180))
        if not (0 < ttl <= 600) or not scope.strip():
            raise ValueError
    except (ValueError, TypeError, AttributeError):
        return _json({"error": "body: {\"scope\": non-empty text, \"expires_in\": "
                               "seconds, more than 0 and at most 600}"}, 400)
    code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    state.grant_codes[code] = (time.monotonic() + ttl, scope)
    return _json({"code": code, "expires_in": ttl, "scope": scope}, 201)


Endpoint = Callable[[Request, ZohoState], Awaitable[Response]]


def authenticated(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """§1: Zoho-oauthtoken (or Bearer) header; 401 envelopes; X-Accesstoken-Reset header."""

    async def wrapped(request: Request) -> Response:
        state = _state(request)
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() not in ("zoho-oauthtoken", "bearer") or not token.strip():
            return ZohoError(401, "AUTHENTICATION_FAILURE", "Authentication failed").response()
        expiry = state.token_expiry(token.strip())
        if expiry is None:
            return ZohoError(401, "INVALID_TOKEN", "invalid oauth token").response()
        try:
            remaining = state.spend_credit()
            response = await endpoint(request, state)
        except ZohoError as exc:
            response, remaining = exc.response(), None
        response.headers["X-Accesstoken-Reset"] = state.wire.dt_epoch(expiry)
        if remaining is not None and state.credits_per_day and \
                remaining <= state.credits_per_day // 2:  # §7: sent once half is used
            response.headers["X-API-CREDITS-REMAINING"] = str(remaining)
        return response

    return wrapped


# ---- request parsing -----------------------------------------------------------------------
def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name) from None
    if value < 1:
        raise _invalid(name)
    return value


def _since(request: Request) -> int | None:
    """§2: If-Modified-Since is ISO-8601 with an offset; the filter is inclusive (§11)."""
    raw = request.headers.get("if-modified-since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _invalid("If-Modified-Since", "the given If-Modified-Since value is invalid")
    return math.ceil(moment.timestamp())  # records carry whole seconds


def _fields(request: Request, state: ZohoState, spec: ModuleSpec, *,
            required: bool) -> list[Any]:
    """The requested fields this org's module has (one-currency orgs lack Currency, §8)."""
    state_fields = state.wire.fields(spec)
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        if required:
            raise _missing("fields")  # §2: mandatory when listing
        return list(state_fields)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_FIELDS:  # §2: more than 50 -> LIMIT_EXCEEDED
        raise ZohoError(400, "LIMIT_EXCEEDED", "fields limit exceeded",
                        {"limit": MAX_FIELDS, "param_name": "fields"})
    # guess: unknown API names are skipped, not rejected (only known fields come back)
    wanted = dict.fromkeys(names)
    return [f for f in state_fields if f.api_name in wanted]


def _ids(request: Request) -> list[str] | None:
    raw = request.query_params.get("ids")
    if raw is None:
        return None
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise _invalid("ids")
    if len(ids) > MAX_IDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "ids limit exceeded",
                        {"limit": MAX_IDS, "param_name": "ids"})
    return ids


def _choice(request: Request, name: str, default: str, allowed: list[str]) -> str:
    value = request.query_params.get(name) or default
    if value not in allowed:
        raise _invalid(name, supported_values=allowed)  # crm-oas: InvalidDataSortByError
    return value


def _binding(request: Request) -> tuple[tuple[str, str], ...]:
    """What a page token is bound to (§2): every other parameter and If-Modified-Since."""
    pairs = [(k, v) for k, v in request.query_params.multi_items()
             if k not in ("page_token", "page")]
    since = request.headers.get("if-modified-since")
    if since is not None:
        pairs.append(("If-Modified-Since", since.strip()))
    return tuple(sorted(pairs))


def _resume(state: ZohoState, token: str, binding: tuple[tuple[str, str], ...]) -> TokenState:
    """§2: a page token lives 24 h, is bound to the other parameters, reaches 100,000 rows."""
    resume = state.page_tokens.get(token)
    if resume is None:
        raise _invalid("page_token", "invalid page token")  # guess: code for a forged token
    if resume.expires_at <= time.time():
        raise ZohoError(400, "EXPIRED_VALUE", "the page token has expired",
                        {"api_name": "page_token", "json_path": "$.page_token"})
    if resume.binding != binding:
        changed = sorted(dict(set(resume.binding) ^ set(binding)))
        raise ZohoError(400, "TOKEN_BOUND_DATA_MISMATCH",
                        "the parameters do not match the ones the page token was issued for",
                        {"param_name": changed[0] if changed else "page_token"})
    if resume.served >= state.pagination_cap:
        raise ZohoError(400, "PAGINATION_LIMIT_EXCEEDED",
                        f"You can only get the first {state.pagination_cap} records",
                        {"param_name": "page_token"})
    return resume


# ---- records (§2) --------------------------------------------------------------------------
async def list_records(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}: fields, paging (page / page_token), sorting, If-Modified-Since."""
    spec = state.module(request.path_params["module"])
    fields = _fields(request, state, spec, required=True)
    per_page = min(_int(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)  # guess: capped
    sort_by = _choice(request, "sort_by", "id", list(SORTABLE))
    sort_order = _choice(request, "sort_order", "desc", ["asc", "desc"])
    since, ids = _since(request), _ids(request)
    token, page_param = request.query_params.get("page_token"), request.query_params.get("page")
    if token is not None and page_param is not None:
        raise ZohoError(400, "AMBIGUITY_DURING_PROCESSING", "ambiguity while processing",
                        {"ambiguity_due_to": [{"param_name": "page"},
                                              {"param_name": "page_token"}]})
    descending = sort_order == "desc"
    binding = _binding(request)
    if token is not None:
        resume = _resume(state, token, binding)
        window = state.window(spec.entity, SORTABLE[sort_by], since, ids)
        page = window.after(resume.last_key, min(per_page, state.pagination_cap - resume.served),
                            descending=descending)
        page_no, served, previous = resume.page, resume.served, resume.previous
    else:
        page_no = _int(request, "page", 1)
        if page_no * per_page > DISCRETE_LIMIT:  # §2: exact body from the Airbyte log
            raise ZohoError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                            "You can only get the first 2000 records without using page_token "
                            "param", {"limit": DISCRETE_LIMIT})
        window = state.window(spec.entity, SORTABLE[sort_by], since, ids)
        page = window.page((page_no - 1) * per_page, per_page, descending=descending)
        served, previous = (page_no - 1) * per_page, None
    if not page.items:  # §2: 304 when nothing changed since If-Modified-Since, else 204
        return _empty(304 if since is not None and len(window) == 0 else 204)
    next_token, expiry = None, None
    if page.more and page.last_key is not None:
        next_token, expires_at = state.page_tokens.mint(
            binding=binding, last_key=page.last_key, served=served + len(page.items),
            page=page_no + 1, previous=token)
        expiry = state.wire.dt_epoch(expires_at)
    data = state.wire.records(page.items, fields)
    return _json({"data": data, "info": {
        "call": False, "per_page": per_page, "next_page_token": next_token,
        "count": len(data), "sort_by": sort_by, "page": page_no,
        "previous_page_token": previous, "page_token_expiry": expiry,
        "sort_order": sort_order, "email": False, "more_records": page.more}})


async def get_record(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}/{id}; `fields` is optional here."""
    spec = state.module(request.path_params["module"])
    record_id = request.path_params["record_id"]
    if not record_id.isdigit():
        raise _invalid("id", "the id given seems to be invalid")
    fields = _fields(request, state, spec, required=False)
    pool: dict[str, Any] = (state.company.deals if spec.entity == "deals"
                            else state.company.accounts)
    record = pool.get(record_id)
    if record is None:
        return _empty(204)  # guess: an unknown or deleted id answers "no content"
    return _json({"data": state.wire.records([record], fields)})


async def list_deleted(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}/deleted (§3): type, page, per_page, If-Modified-Since; no tokens."""
    spec = state.module(request.path_params["module"])
    kind = _choice(request, "type", "all", ["all", "recycle", "permanent"])
    per_page = min(_int(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_no, since = _int(request, "page", 1), _since(request)
    # §3: recycle-bin rows listed for 60 days, permanent ones for 120 (from the data's "now").
    now = state.company.latest.timestamp()
    rows = [d for d in state.company.deletions if d.entity == spec.entity
            and kind in ("all", "permanent" if d.permanent else "recycle")
            and d.deleted_at.timestamp() >= now - 86_400 * (
                PERMANENT_DAYS if d.permanent else RECYCLE_DAYS)
            and (since is None or d.deleted_at.timestamp() >= since)]
    if not rows:
        return _empty(304 if since is not None else 204)
    rows.sort(key=lambda d: (d.deleted_at, d.id), reverse=True)
    start = (page_no - 1) * per_page
    chunk = rows[start:start + per_page]
    if not chunk:
        return _empty(204)
    return _json({"data": [_deleted_json(state, d) for d in chunk], "info": {
        "per_page": per_page, "count": len(chunk), "page": page_no,
        "more_records": start + per_page < len(rows)}})


def _deleted_json(state: ZohoState, row: Deletion) -> dict[str, Any]:
    wire = state.wire
    if row.permanent:  # §3 sample: permanent rows have no names left
        return {"deleted_by": None, "id": row.id, "display_name": None, "type": "permanent",
                "created_by": None, "deleted_time": wire.dt(row.deleted_at)}
    return {"deleted_by": wire.user_ref(row.deleted_by), "id": row.id,
            "display_name": row.display_name, "type": "recycle",
            "created_by": wire.user_ref(row.created_by), "deleted_time": wire.dt(row.deleted_at)}


# ---- users, org, metadata (§2, §4, §8) -----------------------------------------------------
async def list_users(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/users: key `users`, `type` filter, page/per_page, If-Modified-Since."""
    kind = _choice(request, "type", "AllUsers", list(USER_TYPES))
    per_page = min(_int(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_no, since = _int(request, "page", 1), _since(request)
    rule, manager = USER_TYPES[kind], state.company.manager
    reps = [r for r in state.company.reps if rule is not None
            and rule[0] in (None, r.active) and (r is manager or not rule[1])
            and (since is None or r.modified_at.timestamp() >= since)]
    if not reps:
        return _empty(304 if since is not None else 204)
    start = (page_no - 1) * per_page
    chunk = reps[start:start + per_page]
    if not chunk:
        return _empty(204)
    return _json({"users": [user_json(state.wire, r) for r in chunk], "info": {
        "per_page": per_page, "count": len(chunk), "page": page_no,
        "more_records": start + per_page < len(reps)}})


async def org_info(_: Request, state: ZohoState) -> Response:
    return _json({"org": [state.wire.org()]})


async def currencies(_: Request, state: ZohoState) -> Response:
    if not state.multi_currency:  # zoho/crm-oas v8.0/currencies/operations/getCurrencies,
        # example response-403-currenciesnotenabled
        raise ZohoError(403, "CURRENCIES_NOT_ENABLED", "Multi currency is not enabled")
    return _json({"currencies": state.wire.currencies()})  # §8


def _settings_module(request: Request) -> ModuleSpec:
    name = request.query_params.get("module")
    if not name:
        raise _missing("module")
    spec = MODULES.get(name.lower())
    if spec is None:
        raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                        {"param_name": "module"})
    return spec


async def layouts(request: Request, state: ZohoState) -> Response:
    return _json({"layouts": [state.wire.layout(_settings_module(request))]})


async def fields_meta(request: Request, state: ZohoState) -> Response:
    spec = _settings_module(request)
    return _json({"fields": [state.wire.field_meta(spec, f) for f in state.wire.fields(spec)]})


async def pipelines(request: Request, state: ZohoState) -> Response:
    """§4: layout_id is mandatory; only the Deals layout has pipelines."""
    layout_id = request.query_params.get("layout_id")
    if not layout_id:
        raise _missing("layout_id")
    if layout_id != MODULES["deals"].layout_id:
        raise _invalid("layout_id", "the layout id given seems to be invalid")
    return _json({"pipeline": state.wire.pipelines()})


# ---- app -----------------------------------------------------------------------------------
async def _not_found_handler(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405 and not request.url.path.startswith(CONTROL_PREFIX):
        return ZohoError(400, "INVALID_REQUEST_METHOD",  # §7
                         "The http request method type is not a valid one").response()
    if status == 405:
        return _json({"error": "method not allowed"}, 405)
    return _not_found().response()


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               client_id: str = "sandbox-client-id",
               client_secret: str = "sandbox-client-secret",
               refresh_token: str = "sandbox-refresh-token", token_ttl: int = 3600,
               latency: float = 0.0, concurrency_limit: int | None = 10,
               org_timezone: str = "America/New_York", hang_seconds: float = 30.0,
               token_grant_limit: int = 10, token_grant_window: float = 600.0,
               credits_per_day: int | None = None,
               goals_module: str | None = "Sales_Goals",
               multi_currency: bool = True) -> Starlette:
    """A Zoho CRM sandbox app; its state is `app.state.zoho` (a ZohoState).

    `goals_module`: the goals custom module (§9), None for an org without it.
    `multi_currency`: False for an org without multi-currency (below Enterprise, §8): every
    amount in the home currency (the company is converted in place), no Currency or
    Exchange_Rate fields, and /org/currencies answers 403 CURRENCIES_NOT_ENABLED."""
    from connectors.zoho.sandbox_goals import GoalsModule, goal_routes  # imports this module

    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=("/oauth/",))
    state = ZohoState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        client_id=client_id, client_secret=client_secret, refresh_token=refresh_token,
        token_ttl=token_ttl, tz=ZoneInfo(org_timezone), harness=harness,
        token_grant_limit=token_grant_limit, token_grant_window=token_grant_window,
        credits_per_day=credits_per_day, multi_currency=multi_currency)
    goals = GoalsModule(goals_module) if goals_module else None
    routes = [
        *control_routes(state),
        Route("/oauth/v2/token", token_endpoint, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/grant-codes", new_grant_code, methods=["POST"]),
        Route(f"{API}/users", authenticated(list_users), methods=["GET"]),
        Route(f"{API}/org", authenticated(org_info), methods=["GET"]),
        Route(f"{API}/org/currencies", authenticated(currencies), methods=["GET"]),
        Route(f"{API}/settings/layouts", authenticated(layouts), methods=["GET"]),
        Route(f"{API}/settings/pipeline", authenticated(pipelines), methods=["GET"]),
        Route(f"{API}/settings/fields", authenticated(fields_meta), methods=["GET"]),
        *goal_routes(state, goals),  # §9: the goals custom module (sandbox_goals.py)
        *sandbox_watch.watch_routes(API, authenticated),  # §5 notifications
        Route(f"{API}/{{module}}/deleted", authenticated(list_deleted), methods=["GET"]),
        Route(f"{API}/{{module}}/{{record_id}}", authenticated(get_record), methods=["GET"]),
        Route(f"{API}/{{module}}", authenticated(list_records), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
        exception_handlers={404: _not_found_handler, 405: _not_found_handler},
    )
    app.state.zoho = state
    app.state.zoho_goals = goals
    app.state.zoho_watch = sandbox_watch.attach(state)
    return app


def serve(host: str = "127.0.0.1", port: int = 8710, **create_app_kwargs: Any) -> None:
    """Run the sandbox with uvicorn until interrupted (`crmsync sandbox zoho`)."""
    import gc

    import uvicorn

    app = create_app(**create_app_kwargs)
    gc.freeze()  # the dataset is long-lived: keep the collector from rescanning it per request
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
