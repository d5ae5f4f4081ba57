"""The Fxiaoke sandbox app: every Open API call is a JSON POST (docs/vendors/fxiaoke.md),
plus the neutral control API under /_sandbox (connectors.sandbox.control) and
/_sandbox/fxiaoke for callbacks and quotas."""

import json

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.fxiaoke.sandbox.auth import Handler, endpoint, token_endpoint
from connectors.fxiaoke.sandbox.errors import failure
from connectors.fxiaoke.sandbox.goals import create_custom, invalid_custom, update_custom
from connectors.fxiaoke.sandbox.records import (
    delete_records,
    department_list,
    describe,
    get_record,
    invalid_record,
    query_custom,
    query_standard,
    user_by_mobile,
    user_list,
)
from connectors.fxiaoke.sandbox.state import FxiaokeState, state_of
from connectors.fxiaoke.wire import (
    BAD_PARAMETER,
    CUSTOM_QUERY_PATH,
    DEPARTMENT_LIST_PATH,
    DESCRIBE_PATH,
    QUERY_PATH,
    TOKEN_PATH,
    USER_BY_MOBILE_PATH,
    USER_LIST_PATH,
)
from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company


# ---- sandbox settings (control) -------------------------------------------------------------
async def settings_endpoint(request: Request) -> Response:
    """GET/PATCH /_sandbox/fxiaoke: callback_url, daily_quota, quota_used; GET lists
    the callbacks sent."""
    state = state_of(request)
    if request.method == "PATCH":
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "the body is not valid JSON"}, 400)
        allowed = {"callback_url", "daily_quota", "quota_used"}
        if not isinstance(body, dict) or not body or set(body) - allowed:
            return JSONResponse({"error": f"send a JSON object with keys among "
                                          f"{sorted(allowed)}"}, 400)
        url = body.get("callback_url", state.callback_url)
        if url is not None and not (isinstance(url, str) and url.startswith(("http://",
                                                                             "https://"))):
            return JSONResponse({"error": "callback_url must be an http(s) URL or null"}, 400)
        for key in ("daily_quota", "quota_used"):
            value = body.get(key, 0)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                return JSONResponse({"error": f"{key} must be a non-negative integer"}, 400)
        state.callback_url = url
        state.daily_quota = body.get("daily_quota", state.daily_quota)
        state.quota_used = body.get("quota_used", state.quota_used) or 0
    return JSONResponse({"callback_url": state.callback_url, "daily_quota": state.daily_quota,
                         "quota_used": state.quota_used, "aes_key_configured": True,
                         "callbacks": list(state.callback_log)})


# ---- app ------------------------------------------------------------------------------------
async def _fallback(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith(CONTROL_PREFIX):
        return JSONResponse({"error": "not found" if status == 404 else "method not allowed"},
                            status)
    return failure(BAD_PARAMETER, "参数错误或接口不存在")  # §6: 10006 also for unknown paths


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               latency: float = 0.0, concurrency_limit: int | None = 10,
               hang_seconds: float = 30.0, calls_per_window: int = 100,
               window: float = 20.0, daily_quota: int | None = None,
               token_ttl: int = 7200, callback_url: str | None = None,
               currency: str = "CNY", language: str = "zh-CN",
               multi_currency: bool = False) -> Starlette:
    """A Fxiaoke sandbox app; its state is `app.state.fxiaoke` (a FxiaokeState)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit,
                      hang_seconds=hang_seconds, uncapped_prefixes=(TOKEN_PATH,))
    state = FxiaokeState(
        company=company if company is not None else generate_company(seed=seed, deals=deals),
        harness=harness, calls_per_window=calls_per_window, window=window,
        daily_quota=daily_quota, token_ttl=token_ttl, callback_url=callback_url,
        currency=currency, language=language, multi_currency=multi_currency)
    crm: list[tuple[str, Handler]] = [
        (DESCRIBE_PATH, describe),
        (QUERY_PATH, query_standard),
        ("/cgi/crm/v2/data/get", get_record),
        ("/cgi/crm/v2/data/invalid", invalid_record),
        ("/cgi/crm/v2/data/delete", delete_records),
        (CUSTOM_QUERY_PATH, query_custom),
        ("/cgi/crm/custom/v2/data/get", get_record),
        ("/cgi/crm/custom/v2/data/create", create_custom),
        ("/cgi/crm/custom/v2/data/update", update_custom),
        ("/cgi/crm/custom/v2/data/invalid", invalid_custom),
    ]
    directory: list[tuple[str, Handler]] = [
        (DEPARTMENT_LIST_PATH, department_list),
        (USER_LIST_PATH, user_list),
        (USER_BY_MOBILE_PATH, user_by_mobile),
    ]
    routes = [
        *control_routes(state),
        Route(f"{CONTROL_PREFIX}/fxiaoke", settings_endpoint, methods=["GET", "PATCH"]),
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        *(Route(path, endpoint(h, crm=True), methods=["POST"]) for path, h in crm),
        *(Route(path, endpoint(h, crm=False), methods=["POST"]) for path, h in directory),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
        exception_handlers={404: _fallback, 405: _fallback},
    )
    app.state.fxiaoke = state
    return app
