"""The webhook intake's thin path: POST /api/v1/webhooks/{provider}/{connection_id} served
in front of FastAPI (docs/webhooks.md, docs/benchmarks.md "Webhook intake").

Vendors' callbacks are the API's only high-rate calls, and most of a callback's CPU went
to the framework (FastAPI's middleware stack, matching the path against every route,
its request handling) rather than to the intake's own work. `WebhookPath` sits where the
app's middleware stack starts: it answers these calls itself, through the same function
as the declared route (api.routes.webhooks.intake), and hands every other request, and
any other method on these paths, to FastAPI's stack untouched.

It keeps every rule of the route: the body limits (the same BodyLimitMiddleware in
front), the connection id's bounds (422 as FastAPI words it), the API's JSON errors
(the app's own exception handlers) and the catch-all 500.
"""

import re

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import CatchAllMiddleware
from api.limits import API_PREFIX, BodyLimitMiddleware
from api.listing import Id
from api.routes import webhooks

PATH = re.compile(rf"^{API_PREFIX}{webhooks.router.prefix}/([^/]+)/([^/]+)$")
"""The route's path, {provider} and {connection_id} matched as Starlette matches them."""
_ID = TypeAdapter(Id)


class WebhookPath:
    """POST to a webhook URL: answered here; anything else: `app` (FastAPI's stack)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.intake = BodyLimitMiddleware(CatchAllMiddleware(serve))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if takes(scope):
            await self.intake(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path (what Starlette's router matches)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def takes(scope: Scope) -> bool:
    """Whether a request is a callback: POST to a webhook URL."""
    return (scope["type"] == "http" and scope["method"] == "POST"
            and PATH.match(route_path(scope)) is not None)


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """One callback, answered by webhooks.intake or the app's handler of its error."""
    match = PATH.match(route_path(scope))
    assert match is not None
    provider, connection_id = match.groups()
    request = Request(scope, receive)
    try:
        response = await webhooks.intake(request, provider, connection_id=_id(connection_id))
    except Exception as exc:
        response = await _handled(request, exc)
    await response(scope, receive, send)


def _id(value: str) -> int:
    """The path's connection id, validated as FastAPI validates the route's `Id` parameter."""
    try:
        return _ID.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("path", "connection_id", *error["loc"])}
                                      for error in exc.errors()]) from None


async def _handled(request: Request, exc: Exception) -> Response:
    """The answer of the app's exception handler for `exc` (api.errors.install), as
    FastAPI's ExceptionMiddleware gives it; an error without one goes on to the catch-all."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            response: Response = await handlers[cls](request, exc)
            return response
    raise exc
