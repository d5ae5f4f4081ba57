"""The Fxiaoke sandbox's auth: the corpAccessToken endpoint (docs/vendors/fxiaoke.md §1.1)
and the token, tenant, acting-user and rate checks of every other call."""

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.fxiaoke.sandbox.errors import FxError, failure, json_response
from connectors.fxiaoke.sandbox.state import FxiaokeState, state_of
from connectors.fxiaoke.sandbox.wire import QueryError
from connectors.fxiaoke.wire import BAD_PARAMETER, CALL_LIMIT

TOKEN_CALLS_PER_MINUTE = 10  # §1.2


async def token_endpoint(request: Request) -> Response:
    state = state_of(request)
    try:
        body = await _body(request)
    except FxError as exc:
        return failure(exc.code, exc.message)
    now = time.monotonic()
    while state.token_calls and state.token_calls[0] <= now - 60:
        state.token_calls.popleft()
    if len(state.token_calls) >= TOKEN_CALLS_PER_MINUTE:  # §1.2: 10 calls/min
        return failure(CALL_LIMIT, "调用次数超过限制")
    state.token_calls.append(now)
    given = [str(body.get(k) or "") for k in ("appId", "appSecret", "permanentCode")]
    wanted = [state.app_id, state.app_secret, state.permanent_code]
    if not all(secrets.compare_digest(a, b) for a, b in zip(given, wanted, strict=True)):
        return failure(BAD_PARAMETER, "appId、appSecret或permanentCode错误")  # §8.1: 10006
    return json_response({"errorCode": 0, "errorMessage": "success",
                          "corpAccessToken": state.mint_token(), "corpId": state.corp_id,
                          "expiresIn": state.token_ttl})


Handler = Callable[[dict[str, Any], FxiaokeState], Awaitable[Response]]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise FxError(BAD_PARAMETER, "请求体不是合法的JSON") from None
    if not isinstance(body, dict):
        raise FxError(BAD_PARAMETER, "请求体必须是JSON对象")
    return body


def endpoint(handler: Handler, *, crm: bool) -> Callable[[Request], Awaitable[Response]]:
    """Token, tenant, acting user (CRM calls), rate limit and quota, then the handler."""

    async def wrapped(request: Request) -> Response:
        state = state_of(request)
        try:
            body = await _body(request)
            state.check_token(body)
            if crm:
                state.acting_user(body)
            state.spend(request.url.path)
            return await handler(body, state)
        except (FxError, QueryError) as exc:
            return failure(exc.code, str(exc))

    return wrapped
