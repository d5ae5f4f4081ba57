"""The token check of every call: `Authorization: Bearer <token>`, else 401."""

import hmac
from collections.abc import Awaitable, Callable

from acmecrm.sandbox.errors import AcmeError
from acmecrm.sandbox.state import AcmeState, state_of
from acmecrm.wire import UNAUTHORIZED
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request, AcmeState], Awaitable[Response]]


def authenticated(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` behind the token check; its AcmeErrors answered as envelopes."""

    async def wrapped(request: Request) -> Response:
        state = state_of(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                  state.token.encode()):
            return AcmeError(401, UNAUTHORIZED, "missing or unknown API token").response()
        try:
            return await endpoint(request, state)
        except AcmeError as exc:
            return exc.response()

    return wrapped
