"""Request body limits: one pure ASGI middleware, in front of parsing and auth.

A request whose Content-Length is over the route's cap is answered 413 before the
app sees it (so before the API key is checked and before any JSON is parsed). A body
without a Content-Length (chunked) is counted as it is read, and reading stops with
a 413 as soon as it passes the cap: nothing larger than the cap is ever buffered.

The cap is CRMSYNC_MAX_BODY_BYTES (default 1 MB), except for the path prefixes in
ROUTE_CAPS: goal imports take a 5 MB file (plus room for multipart framing), and
webhooks keep their own 1 MB (core.webhooks.MAX_BODY), which the route checks too, and
commission plans take 256 KB.
"""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, StartTracking, error_body
from core import webhooks
from core.config import Settings
from core.incentives.plans import MAX_PLAN_BYTES

API_PREFIX = "/api/v1"
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MULTIPART_ALLOWANCE = 64 * 1024  # boundaries and part headers around an imported file
ROUTE_CAPS: tuple[tuple[str, int], ...] = (
    (f"{API_PREFIX}/goals/import", MAX_IMPORT_BYTES + MULTIPART_ALLOWANCE),
    (f"{API_PREFIX}/webhooks/", webhooks.MAX_BODY),
    (f"{API_PREFIX}/plans/", MAX_PLAN_BYTES),  # a commission plan (docs/incentives.md)
)
DEFAULT_MAX_BODY = Settings.model_fields["max_body_bytes"].default


class PayloadTooLarge(ApiError):
    def __init__(self, cap: int) -> None:
        super().__init__(413, f"the request body is over the {cap} bytes this route takes",
                         code="payload_too_large")


def cap_for(path: str, default: int) -> int:
    """The body cap of a path: the first matching prefix of ROUTE_CAPS, else `default`."""
    for prefix, cap in ROUTE_CAPS:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return cap
    return default


class BodyLimitMiddleware:
    """Refuses bodies over the route's cap with 413 {"error": {"code": "payload_too_large"}}.

    `max_body` (bytes) is the default cap; None reads CRMSYNC_MAX_BODY_BYTES from the
    app's settings (app.state.settings) at each request.
    """

    def __init__(self, app: ASGIApp, max_body: int | None = None) -> None:
        self.app = app
        self.max_body = max_body

    def _default(self, scope: Scope) -> int:
        if self.max_body is not None:
            return self.max_body
        state = getattr(scope.get("app"), "state", None)
        settings = getattr(state, "settings", None)
        return settings.max_body_bytes if isinstance(settings, Settings) else DEFAULT_MAX_BODY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = cap_for(scope.get("path", ""), self._default(scope))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _refuse(send, cap)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise PayloadTooLarge(cap)
            return message

        tracking = StartTracking(send)
        try:
            await self.app(scope, counting_receive, tracking)
        except PayloadTooLarge:
            if tracking.started:
                raise
            await _refuse(send, cap)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isascii() or not text.isdigit():
                return None  # not a length: the body is counted as it is read
            return int(text) if len(text) < 20 else 2**63
    return None


async def _refuse(send: Send, cap: int) -> None:
    exc = PayloadTooLarge(cap)
    body = json.dumps(error_body(exc.code, str(exc.detail))).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
