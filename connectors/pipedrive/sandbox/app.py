"""The Pipedrive sandbox app: one ASGI app plays the OAuth server (`/oauth/token`) and the
company domain (`/api/v1/...`, `/api/v2/...`), plus the kit's control API under `/_sandbox`
(connectors.sandbox.control). Behaviour follows docs/vendors/pipedrive.md (§n)."""

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.pipedrive.sandbox import goals, notifications, records
from connectors.pipedrive.sandbox.auth import api, token_endpoint
from connectors.pipedrive.sandbox.errors import PipedriveError, json_response
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.pipedrive.wire import FAIR_USE_WRITES, TEAMS_PATH, TOKEN_PATH, V1, V2
from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company

# §6: tokens per call: the reference's v1 costs (a list 20, one record 2, a write 10, a
# delete 6); v2 costs "about half" (guess: exactly half for every v2 call).
V2_LIST, V2_GET, V1_LIST, V1_GET, WRITE, DELETE = 10, 1, 20, 2, 10, 6


async def _fallback(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(CONTROL_PREFIX):
        return json_response({"error": "not found" if status == 404 else "method not allowed"},
                             status)
    return PipedriveError(status if status in (404, 405) else 500,
                          "Unknown method ." if status == 404 else "Method not allowed"
                          ).response()


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               api_token: str = "sandbox-api-token", client_id: str = "sandbox-client-id",
               client_secret: str = "sandbox-client-secret",
               refresh_token: str = "sandbox-refresh-token", token_ttl: int = 3600,
               latency: float = 0.0, concurrency_limit: int | None = 20,
               hang_seconds: float = 30.0, burst_limit: int = 80,
               daily_budget: int | None = None, teams: bool = True,
               daily_writes: int = FAIR_USE_WRITES,
               webhook_retry_delays: tuple[float, ...] = (3.0, 30.0, 150.0)) -> Starlette:
    """A Pipedrive sandbox app; its state is `app.state.pipedrive` (a PipedriveState).

    `burst_limit`: API-token requests per 2 s (OAuth tokens get four times as many, §6);
    `daily_budget`: the company's daily token budget (None: unlimited); `teams`: the plan
    has Teams (§10); `daily_writes`: the API token user's POST/PUT fair use (§6)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=(TOKEN_PATH,))
    state = PipedriveState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        api_token=api_token, client_id=client_id, client_secret=client_secret,
        refresh_token=refresh_token, token_ttl=token_ttl, harness=harness,
        burst_limit=burst_limit, daily_budget=daily_budget, teams=teams,
        daily_writes=daily_writes,
        webhook_retry_delays=tuple(webhook_retry_delays))
    routes = [
        *control_routes(state),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(f"{V1}/users", api(records.list_users, V1_LIST), methods=["GET"]),
        Route(f"{V1}/users/me", api(records.current_user, V1_GET), methods=["GET"]),
        Route(f"{V1}/currencies", api(records.list_currencies, V1_LIST), methods=["GET"]),
        Route(f"{V1}{TEAMS_PATH}", api(records.list_teams, V1_LIST), methods=["GET"]),
        Route(f"{V1}/deals/{{deal_id}}/flow", api(records.deal_flow, V1_LIST),
              methods=["GET"]),
        Route("/deal/{deal_id}", records.deal_page, methods=["GET"]),
        Route(f"{V1}/dealFields", api(records.deal_fields, V1_LIST), methods=["GET"]),
        Route(f"{V1}/organizationFields", api(records.organization_fields, V1_LIST),
              methods=["GET"]),
        Route(f"{V1}/webhooks", api(notifications.list_webhooks, V1_LIST), methods=["GET"]),
        Route(f"{V1}/webhooks", api(notifications.add_webhook, WRITE), methods=["POST"]),
        Route(f"{V1}/webhooks/{{webhook_id}}", api(notifications.delete_webhook, DELETE),
              methods=["DELETE"]),
        Route(f"{V1}/goals", api(goals.add_goal, WRITE), methods=["POST"]),
        Route(f"{V1}/goals/find", api(goals.find_goals, V1_LIST), methods=["GET"]),
        Route(f"{V1}/goals/{{goal_id}}/results", api(goals.goal_results, V1_LIST),
              methods=["GET"]),
        Route(f"{V1}/goals/{{goal_id}}", api(goals.update_goal, WRITE), methods=["PUT"]),
        Route(f"{V1}/goals/{{goal_id}}", api(goals.delete_goal, DELETE), methods=["DELETE"]),
        Route(f"{V2}/pipelines", api(records.list_pipelines, V2_LIST), methods=["GET"]),
        Route(f"{V2}/stages", api(records.list_stages, V2_LIST), methods=["GET"]),
        Route(f"{V2}/deals", api(records.list_deals, V2_LIST), methods=["GET"]),
        Route(f"{V2}/deals/{{deal_id}}", api(records.get_deal, V2_GET), methods=["GET"]),
        Route(f"{V1}/activityTypes", api(records.activity_types, V1_LIST), methods=["GET"]),
        Route(f"{V2}/activities", api(records.list_activities, V2_LIST), methods=["GET"]),
        Route(f"{V2}/activities/{{activity_id}}", api(records.get_activity, V2_GET),
              methods=["GET"]),
        Route(f"{V2}/organizations", api(records.list_organizations, V2_LIST),
              methods=["GET"]),
        Route(f"{V2}/organizations/{{org_id}}", api(records.get_organization, V2_GET),
              methods=["GET"]),
    ]
    app = Starlette(routes=routes,
                    middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
                    exception_handlers={404: _fallback, 405: _fallback})
    app.state.pipedrive = state
    app.state.pipedrive_webhooks = notifications.attach(state)
    return app
