"""The HubSpot sandbox app: one ASGI app plays api.hubapi.com (the OAuth token endpoints
and the CRM, settings and association APIs), plus the kit's control API under /_sandbox
and `/_sandbox/hubspot/...` for what only HubSpot has (merges, webhook target). Behaviour
follows docs/vendors/hubspot.md (§n)."""

import json

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.hubspot.sandbox import goals, records
from connectors.hubspot.sandbox.auth import authenticated, page, token_endpoint
from connectors.hubspot.sandbox.errors import HubSpotError, json_response
from connectors.hubspot.sandbox.state import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotState,
    state_of,
)
from connectors.hubspot.wire import (
    ASSOCIATIONS,
    COMPANY_CURRENCY_PATH,
    DEAL_TYPE_ID,
    EXCHANGE_RATES_PATH,
    LEGACY_TOKEN_PATH,
    OBJECTS,
    OWNERS_PATH,
    PIPELINES_PATH,
    SEARCH_CAP,
    TOKEN_PATH,
)
from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company

DEALS, COMPANIES = "crm.objects.deals.read", "crm.objects.companies.read"


async def _unknown(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(CONTROL_PREFIX):
        return json_response({"error": "not found" if status == 404 else "method not allowed"},
                             status)
    return HubSpotError(status if status in (404, 405) else 500,
                        "OBJECT_NOT_FOUND" if status == 404 else "VALIDATION_ERROR",
                        f"no {request.method} {request.url.path}").response()


async def control_merge(request: Request) -> Response:
    """POST /_sandbox/hubspot/merge {"object": "deals"|"companies", "primary", "merged"}:
    what a user merging two records in HubSpot does (§10)."""
    state = state_of(request)
    try:
        body = json.loads(await request.body() or b"{}")
        entity = records.ENTITY[str(body["object"])]
        record = state.merge(entity, str(body["primary"]), str(body["merged"]))
    except (ValueError, KeyError, TypeError):
        return json_response({"error": 'body: {"object": "deals"|"companies", "primary": id, '
                                       '"merged": id}'}, 400)
    except HubSpotError as exc:
        return json_response({"error": exc.message}, 400)
    return json_response({"id": record.id, "merged": state.merged[record.id]})


async def control_webhooks(request: Request) -> Response:
    """POST /_sandbox/hubspot/webhooks {"url": ..., "clock_skew_ms"?}: the app's target URL."""
    state = state_of(request)
    try:
        body = json.loads(await request.body() or b"{}")
        url = body.get("url")
        skew = int(body.get("clock_skew_ms", 0))
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise ValueError
    except (ValueError, TypeError, AttributeError):
        return json_response({"error": 'body: {"url": "http(s)://..." or null, '
                                       '"clock_skew_ms": integer}'}, 400)
    state.webhook_url = None if url is None else str(url)
    state.outbox.clock_skew_ms = skew
    return json_response({"url": state.webhook_url, "clock_skew_ms": skew})


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               access_token: str = SANDBOX_TOKEN, client_id: str = SANDBOX_CLIENT_ID,
               client_secret: str = SANDBOX_CLIENT_SECRET,
               refresh_token: str = SANDBOX_REFRESH_TOKEN, token_ttl: int = 1800,
               latency: float = 0.0, concurrency_limit: int | None = 10,
               hang_seconds: float = 30.0, burst_limit: int = 190,
               daily_limit: int | None = None, search_per_second: int = 5,
               search_cap: int = SEARCH_CAP, search_lag: float = 0.0,
               home_amounts: bool = True, legacy_oauth_only: bool = False,
               goal_scopes: bool = True, require_goal_template: bool = False,
               webhook_url: str | None = None) -> Starlette:
    """A HubSpot account (portal) sandbox; its state is `app.state.hubspot`.

    `home_amounts=False`: deals without amount_in_home_currency (§6), so the connector
    converts with the exchange rates; `goal_scopes=False`: a token without the goals
    scopes (§9); `webhook_url`: the app's webhook target (§8)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=("/oauth/",))
    state = HubSpotState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        harness=harness, access_token=access_token, client_id=client_id,
        client_secret=client_secret, refresh_token=refresh_token, token_ttl=token_ttl,
        burst_limit=burst_limit, daily_limit=daily_limit, search_per_second=search_per_second,
        search_cap=search_cap, search_lag=search_lag, home_amounts=home_amounts,
        legacy_oauth_only=legacy_oauth_only, require_goal_template=require_goal_template,
        webhook_url=webhook_url)
    if not goal_scopes:
        state.scopes = frozenset(s for s in state.scopes if ".goals." not in s)
    typed = f"{OBJECTS}/{{object_type}}"
    routes = [
        *control_routes(state),
        Route(f"{CONTROL_PREFIX}/hubspot/merge", control_merge, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/hubspot/webhooks", control_webhooks, methods=["POST"]),
        Route(f"/contacts/{{portal_id}}/record/{DEAL_TYPE_ID}/{{object_id}}",
              page(records.deal_page), methods=["GET"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(LEGACY_TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(OWNERS_PATH, authenticated(records.list_owners, "crm.objects.owners.read"),
              methods=["GET"]),
        Route(OWNERS_PATH.rstrip("/"), authenticated(records.list_owners,
                                                     "crm.objects.owners.read"),
              methods=["GET"]),
        Route(PIPELINES_PATH, authenticated(records.pipelines, DEALS), methods=["GET"]),
        Route(COMPANY_CURRENCY_PATH, authenticated(records.company_currency,
                                                   "settings.currencies.read"),
              methods=["GET"]),
        Route(EXCHANGE_RATES_PATH, authenticated(records.exchange_rates,
                                                 "settings.currencies.read"),
              methods=["GET"]),
        Route(ASSOCIATIONS.format(from_type="{object_type}", to_type="{to_type}"),
              authenticated(records.associations, DEALS), methods=["POST"]),
        Route(f"{OBJECTS}/goal_targets", authenticated(goals.list_goals, goals.READ),
              methods=["GET"]),
        Route(f"{OBJECTS}/goal_targets/search", authenticated(goals.search_goals, goals.READ,
                                                               search=True), methods=["POST"]),
        Route(f"{OBJECTS}/goal_targets/batch/create",
              authenticated(goals.batch_create, goals.WRITE), methods=["POST"]),
        Route(f"{OBJECTS}/goal_targets/batch/update",
              authenticated(goals.batch_update, goals.WRITE), methods=["POST"]),
        Route(f"{OBJECTS}/goal_targets/batch/archive",
              authenticated(goals.batch_archive, goals.WRITE), methods=["POST"]),
        Route(f"{OBJECTS}/goal_targets/{{goal_id}}", authenticated(goals.get_goal, goals.READ),
              methods=["GET"]),
        Route(f"{typed}/search", authenticated(records.search, search=True), methods=["POST"]),
        Route(f"{typed}/batch/read", authenticated(records.batch_read), methods=["POST"]),
        Route(f"{typed}/merge", authenticated(records.merge), methods=["POST"]),
        Route(f"{typed}/{{object_id}}", authenticated(records.get_object), methods=["GET"]),
        Route(typed, authenticated(records.list_objects), methods=["GET"]),
    ]
    app = Starlette(routes=routes,
                    middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
                    exception_handlers={404: _unknown, 405: _unknown})
    app.state.hubspot = state
    return app
