"""The Zoho sandbox app: one ASGI app plays both hosts, the accounts server
(`/oauth/v2/token`) and the api_domain (`/crm/v8/...`), plus the neutral control API under
`/_sandbox` (connectors.sandbox.control). Behaviour follows docs/vendors/zoho.md (§n)."""

from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company
from connectors.zoho.sandbox import notifications
from connectors.zoho.sandbox.auth import authenticated, new_grant_code, token_endpoint
from connectors.zoho.sandbox.errors import ZohoError, json_response, not_found
from connectors.zoho.sandbox.goals import GoalsModule, goal_routes
from connectors.zoho.sandbox.records import (
    currencies,
    deal_page,
    fields_meta,
    get_record,
    layouts,
    list_deleted,
    list_records,
    list_users,
    org_info,
    pipelines,
    stage_history,
)
from connectors.zoho.sandbox.state import ZohoState, state_of
from connectors.zoho.sandbox.wire import API
from connectors.zoho.wire import DEALS_TAB


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405 and not request.url.path.startswith(CONTROL_PREFIX):
        return ZohoError(400, "INVALID_REQUEST_METHOD",  # §7
                         "The http request method type is not a valid one").response()
    if status == 405:
        return json_response({"error": "method not allowed"}, 405)
    return not_found().response()


def page(endpoint: Callable[[Request, ZohoState], Awaitable[Response]],
         ) -> Callable[[Request], Awaitable[Response]]:
    """A page of the web app: no API token (a browser signed in to Zoho)."""

    async def wrapped(request: Request) -> Response:
        return await endpoint(request, state_of(request))

    return wrapped


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
        # §12: a deal's page in the web app (the dashboard links there)
        Route(f"/crm/{{org}}/tab/{DEALS_TAB}/{{record_id}}", page(deal_page),
              methods=["GET"]),
        Route(f"/crm/tab/{DEALS_TAB}/{{record_id}}", page(deal_page), methods=["GET"]),
        Route(f"{API}/org/currencies", authenticated(currencies), methods=["GET"]),
        Route(f"{API}/settings/layouts", authenticated(layouts), methods=["GET"]),
        Route(f"{API}/settings/pipeline", authenticated(pipelines), methods=["GET"]),
        Route(f"{API}/settings/fields", authenticated(fields_meta), methods=["GET"]),
        *goal_routes(state, goals),  # §9: the goals custom module (goals.py)
        *notifications.watch_routes(),  # §5 notifications
        Route(f"{API}/{{module}}/deleted", authenticated(list_deleted), methods=["GET"]),
        Route(f"{API}/Deals/{{record_id}}/Stage_History", authenticated(stage_history),
              methods=["GET"]),  # §13
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
    app.state.zoho_watch = notifications.attach(state)
    return app
