"""The Salesforce sandbox app: the OAuth token endpoint, the REST resources under
/services/data/vXX.X (docs/vendors/salesforce.md), the neutral control API under /_sandbox
(connectors.sandbox.control) and /_sandbox/salesforce for the org's switches."""

import json
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.salesforce.sandbox import goals, records
from connectors.salesforce.sandbox.auth import api, token_endpoint
from connectors.salesforce.sandbox.errors import SfError, failure
from connectors.salesforce.sandbox.state import SalesforceState, state_of
from connectors.salesforce.sandbox.wire import json_value
from connectors.salesforce.wire import NOT_FOUND, RECORD_PAGE, TOKEN_PATH
from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company

SETTINGS: dict[str, type] = {"api_max": int, "api_used": int, "session_ttl": float,
                             "manage_quotas": bool, "forecasts_enabled": bool,
                             "forecast_period": str, "query_timeout_rows": int,
                             "stage_labels": dict}


def _setting(key: str, value: Any) -> Any:
    kind = SETTINGS[key]
    if key == "query_timeout_rows" and value is None:
        return None
    if key == "forecast_period":
        if value not in ("Month", "Quarter"):
            raise ValueError("forecast_period must be Month or Quarter")
        return value
    if key == "stage_labels":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  and v.strip() for k, v in value.items()):
            raise ValueError("stage_labels maps a stage's ApiName to its new label")
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool) \
            and value > 0:
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if kind is bool and isinstance(value, bool):
        return value
    raise ValueError(f"{key} must be a {'positive number' if kind is float else kind.__name__}"
                     f"{' >= 0' if kind is int else ''}")


async def settings_endpoint(request: Request) -> Response:
    """GET/PATCH /_sandbox/salesforce: the allocation, session timeout, quota switches,
    stage labels, the QUERY_TIMEOUT threshold; GET also lists the quotas."""
    state = state_of(request)
    if request.method == "PATCH":
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict) or not body or set(body) - set(SETTINGS):
                raise ValueError(f"send a JSON object with keys among {sorted(SETTINGS)}")
            values = {k: _setting(k, v) for k, v in body.items()}
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        for key, value in values.items():
            if key == "stage_labels":
                unknown = set(value) - {s.name for s in state.company.stages}
                if unknown:
                    return JSONResponse({"error": f"unknown stages {sorted(unknown)}"}, 400)
                state.stage_labels.update(value)
            else:
                setattr(state, key, value)
    return JSONResponse({**{k: getattr(state, k) for k in SETTINGS},
                         "multi_currency": state.multi_currency,
                         "advanced_currency": state.advanced_currency,
                         "quotas": [{k: json_value(v) for k, v in q.items()}
                                    for q in state.quotas.values()]})


async def _fallback(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(CONTROL_PREFIX):
        return JSONResponse({"error": "not found" if status == 404 else "method not allowed"},
                            status)
    return failure(SfError(404, NOT_FOUND, "The requested resource does not exist"))


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               latency: float = 0.0, concurrency_limit: int | None = 25,
               hang_seconds: float = 30.0, multi_currency: bool = True,
               advanced_currency: bool = False, api_max: int = 100_000,
               session_ttl: float = 7200.0, forecast_period: str = "Quarter") -> Starlette:
    """A Salesforce sandbox app; its state is `app.state.salesforce` (a SalesforceState)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=(TOKEN_PATH,))
    state = SalesforceState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        harness=harness, multi_currency=multi_currency,
        advanced_currency=multi_currency and advanced_currency, api_max=api_max,
        session_ttl=session_ttl, forecast_period=_setting("forecast_period", forecast_period))
    data = "/services/data/v{version}"
    rest: list[tuple[str, str, Any, int]] = [
        ("/query", "GET", records.query, 200),
        ("/queryAll", "GET", records.query_all, 200),
        ("/query/{locator}", "GET", records.more, 200),
        ("/queryAll/{locator}", "GET", records.more, 200),
        ("/limits", "GET", records.limits, 200),
        ("/sobjects/{object}/describe", "GET", records.describe, 200),
        ("/sobjects/{object}/deleted/", "GET", records.get_deleted, 200),
        ("/sobjects/{object}/{id}", "GET", records.retrieve, 200),
        ("/sobjects/{object}", "POST", goals.create, 201),
        ("/sobjects/{object}/{id}", "PATCH", goals.update, 204),
        ("/sobjects/{object}/{id}", "DELETE", goals.delete, 204),
        ("/composite/sobjects", "POST", goals.collection_create, 200),
        ("/composite/sobjects", "PATCH", goals.collection_update, 200),
        ("/composite/sobjects", "DELETE", goals.collection_delete, 200),
    ]
    routes = [
        *control_routes(state),
        Route(f"{CONTROL_PREFIX}/salesforce", settings_endpoint, methods=["GET", "PATCH"]),
        Route(RECORD_PAGE.format(object="Opportunity", id="{id}"), records.record_page,
              methods=["GET"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        *(Route(data + path, api(handler, status), methods=[method])
          for path, method, handler, status in rest),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
        exception_handlers={404: _fallback, 405: _fallback},
    )
    app.state.salesforce = state
    return app


__all__ = ["SalesforceState", "create_app"]
