"""The Zoho sandbox's OAuth: the accounts server's token endpoint, Self Client grant codes,
and the access-token check of every API call (docs/vendors/zoho.md §1)."""

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from connectors.zoho.sandbox.errors import ZohoError, json_response
from connectors.zoho.sandbox.state import ZohoState, state_of

GRANT_SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ"


async def token_endpoint(request: Request) -> Response:
    """POST /oauth/v2/token; parameters in the query string or a form body (§1: both work)."""
    state = state_of(request)
    params = dict(request.query_params)
    body = await request.body()
    if body:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    grant = params.get("grant_type")
    if grant not in ("refresh_token", "authorization_code"):
        # guess, in the §1 style (HTTP 200)
        return json_response({"error": "unsupported_grant_type"})
    client_ok = secrets.compare_digest(params.get("client_id", ""), state.client_id)
    secret_ok = secrets.compare_digest(params.get("client_secret", ""), state.client_secret)
    if not (client_ok and secret_ok):
        return json_response({"error": "invalid_client"})  # §1: HTTP 200 with an error key
    if grant == "authorization_code":
        return _exchange_code(request, state, params.get("code", ""))
    if not secrets.compare_digest(params.get("refresh_token", ""), state.refresh_token):
        return json_response({"error": "invalid_code"})  # §1: HTTP 200 with an error key
    now = time.monotonic()
    while state.grants and state.grants[0] <= now - state.token_grant_window:
        state.grants.popleft()
    if len(state.grants) >= state.token_grant_limit:  # §1: blocked for the rest of the window
        return json_response({"error": "Access Denied", "error_description":
                              "You have made too many requests continuously. "
                              "Please try again after some time."}, 400)
    state.grants.append(now)
    return json_response({
        "access_token": state.mint_token(),
        "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.users.READ ZohoCRM.org.READ",
        "api_domain": str(request.base_url).rstrip("/"),  # wherever this app is reachable
        "token_type": "Bearer",
        "expires_in": state.token_ttl,  # §1: seconds (legacy ms form not reproduced)
    })


def _exchange_code(request: Request, state: ZohoState, code: str) -> Response:
    """The Self Client authorization-code grant: a code made in the API console (here: POST
    /_sandbox/grant-codes) is exchanged once, before it expires, for an access token and
    the refresh token (https://www.zoho.com/accounts/protocol/oauth/self-client/
    authorization-code-flow.html; https://www.zoho.com/crm/developer/docs/api/v8/
    access-refresh.html). A code that is unknown, expired or already used answers
    {"error": "invalid_code"}, HTTP 200 like every token error (§1)."""
    expiry = state.grant_codes.pop(code, None)  # single use, even when it has expired
    if expiry is None or expiry[0] <= time.monotonic():
        return json_response({"error": "invalid_code"})
    return json_response({
        "access_token": state.mint_token(),
        "refresh_token": state.refresh_token,
        "scope": " ".join(s.strip() for s in expiry[1].split(",") if s.strip()),  # §1
        "api_domain": str(request.base_url).rstrip("/"),
        "token_type": "Bearer",
        "expires_in": state.token_ttl,
    })


async def new_grant_code(request: Request) -> Response:
    """POST /_sandbox/grant-codes {"scope"?, "expires_in"? (seconds, default 180)}: what the
    API console's Self Client > Generate Code does (default lifetime 3 minutes; the console
    offers 3 to 10). Answers 201 {"code", "expires_in", "scope"}."""
    state = state_of(request)
    try:
        body = json.loads(await request.body() or b"{}")
        scope = str(body.get("scope", GRANT_SCOPE))
        ttl = float(body.get("expires_in", 180))
        if not (0 < ttl <= 600) or not scope.strip():
            raise ValueError
    except (ValueError, TypeError, AttributeError):
        return json_response({"error": "body: {\"scope\": non-empty text, \"expires_in\": "
                               "seconds, more than 0 and at most 600}"}, 400)
    code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    state.grant_codes[code] = (time.monotonic() + ttl, scope)
    return json_response({"code": code, "expires_in": ttl, "scope": scope}, 201)


Endpoint = Callable[[Request, ZohoState], Awaitable[Response]]


def authenticated(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """§1: Zoho-oauthtoken (or Bearer) header; 401 envelopes; X-Accesstoken-Reset header."""

    async def wrapped(request: Request) -> Response:
        state = state_of(request)
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() not in ("zoho-oauthtoken", "bearer") or not token.strip():
            return ZohoError(401, "AUTHENTICATION_FAILURE", "Authentication failed").response()
        expiry = state.token_expiry(token.strip())
        if expiry is None:
            return ZohoError(401, "INVALID_TOKEN", "invalid oauth token").response()
        try:
            remaining = state.spend_credit()
            response = await endpoint(request, state)
        except ZohoError as exc:
            response, remaining = exc.response(), None
        response.headers["X-Accesstoken-Reset"] = state.wire.dt_epoch(expiry)
        if remaining is not None and state.credits_per_day and \
                remaining <= state.credits_per_day // 2:  # §7: sent once half is used
            response.headers["X-API-CREDITS-REMAINING"] = str(remaining)
        return response

    return wrapped
