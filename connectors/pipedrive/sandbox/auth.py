"""The Pipedrive sandbox's credentials: the OAuth token endpoint and the check of every API
call, with its rate-limit charge and headers (docs/vendors/pipedrive.md §1, §6, §9)."""

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from connectors.pipedrive.sandbox.errors import PipedriveError, json_response
from connectors.pipedrive.sandbox.state import state_of
from connectors.pipedrive.wire import read_basic

Handler = Callable[[Request], Awaitable[Response]]
SCOPE = "base,deals:read,users:read,goals:full,webhooks:full"  # §1


async def token_endpoint(request: Request) -> Response:
    """§1: POST /oauth/token, client credentials in HTTP Basic, refresh_token grant."""
    state = state_of(request)
    client = read_basic(request.headers.get("authorization"))
    if client is None or not (secrets.compare_digest(client[0], state.client_id)
                              and secrets.compare_digest(client[1], state.client_secret)):
        # guess: the OAuth error form of RFC 6749 (section 5.2)
        return json_response({"success": False, "message": "Invalid client credentials",
                              "error": "invalid_client"}, 401)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if form.get("grant_type") != "refresh_token":
        return json_response({"success": False, "error": "unsupported_grant_type",
                              "message": "grant_type must be refresh_token"}, 400)
    if not secrets.compare_digest(form.get("refresh_token", ""), state.refresh_token):
        return json_response({"success": False, "error": "invalid_grant",
                              "message": "Invalid refresh token"}, 400)
    return json_response({
        "access_token": state.mint_token(), "token_type": "Bearer",
        "refresh_token": state.refresh_token,  # guess: not rotated
        "expires_in": state.token_ttl, "scope": SCOPE,
        "api_domain": str(request.base_url).rstrip("/"),  # wherever this app is reachable
    })


def api(handler: Handler, cost: int) -> Handler:
    """An API route: credentials checked (§1), `cost` tokens charged and the rate-limit
    headers added to every answer (§6); errors in the envelope (§9)."""

    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        headers: dict[str, str] = {}
        try:
            token, api_token = state.caller(request)
            headers = state.charge(token, api_token, cost,
                                   write=request.method in ("POST", "PUT"))
            response = await handler(request)
        except PipedriveError as exc:
            response = exc.response()
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    return endpoint
