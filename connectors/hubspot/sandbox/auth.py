"""The HubSpot sandbox's OAuth token endpoints and the credential, scope and rate-limit
check of every API call (docs/vendors/hubspot.md §1, §7)."""

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from connectors.hubspot.sandbox.errors import HubSpotError, json_response
from connectors.hubspot.sandbox.state import HubSpotState, RateLimitedCall, state_of


def _oauth_error(error: str, status: str, description: str, code: int = 400) -> Response:
    """§1: RFC 6749 error bodies, with HubSpot's status and message beside them."""
    return json_response({"error": error, "error_description": description, "status": status,
                          "message": description}, code)


async def token_endpoint(request: Request) -> Response:
    """POST /oauth/2026-03/token and the legacy /oauth/v1/token (§1), form-encoded."""
    state = state_of(request)
    if state.legacy_oauth_only and not request.url.path.startswith("/oauth/v1/"):
        return HubSpotError(404, "OBJECT_NOT_FOUND", "not found").response()
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                          keep_blank_values=True))
    if form.get("grant_type") != "refresh_token":
        return _oauth_error("unsupported_grant_type", "BAD_GRANT_TYPE",
                            "grant_type must be refresh_token or authorization_code")
    client_ok = secrets.compare_digest(form.get("client_id", ""), state.client_id)
    secret_ok = secrets.compare_digest(form.get("client_secret", ""), state.client_secret)
    if not (client_ok and secret_ok):
        return _oauth_error("invalid_client", "BAD_CLIENT_ID",
                            "missing or unknown client id, or wrong client secret")
    if not secrets.compare_digest(form.get("refresh_token", ""), state.refresh_token):
        return _oauth_error("invalid_grant", "BAD_REFRESH_TOKEN",
                            "missing or unknown refresh token")
    return json_response({  # §1: snake_case, 30 minutes
        "token_type": "bearer", "refresh_token": state.refresh_token, "hub_id": state.portal_id,
        "scopes": sorted(state.scopes), "access_token": state.mint_token(),
        "expires_in": state.token_ttl})


Endpoint = Callable[[Request, HubSpotState], Awaitable[Response]]


def authenticated(endpoint: Endpoint, scope: str | None = None, search: bool = False
                  ) -> Callable[[Request], Awaitable[Response]]:
    """§1 Bearer token (static or OAuth), §7 scopes (403 MISSING_SCOPES) and limits (429
    with its body), and the rate-limit headers on every answer."""

    async def wrapped(request: Request) -> Response:
        state = state_of(request)
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        kind = state.token_state(token.strip()) if scheme.lower() == "bearer" else "unknown"
        if kind == "expired":
            return HubSpotError(401, "EXPIRED_AUTHENTICATION",
                                "The OAuth token used to make this call expired.").response()
        if kind == "unknown":
            return HubSpotError(401, "INVALID_AUTHENTICATION",
                                "Authentication credentials not found.").response()
        try:
            headers = state.charge(static=kind == "static")
            if search:
                state.charge_search()
        except RateLimitedCall as exc:
            state.harness.served["429"] += 1  # counted with the injected ones, as Zoho's
            return json_response(exc.body, 429, exc.headers)
        if scope is not None and scope not in state.scopes:
            return HubSpotError(403, "MISSING_SCOPES", "This app hasn't been granted all "
                                "required scopes to make this call.",
                                errors=[{"message": "One or more of the following scopes are "
                                         "required.", "context": {"requiredScopes": [scope]}}]
                                ).response(headers)
        try:
            response = await endpoint(request, state)
        except HubSpotError as exc:
            response = exc.response()
        response.headers.update(headers)
        return response

    return wrapped


def page(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A page of the web app (§12): no API token (a browser signed in to HubSpot)."""

    async def wrapped(request: Request) -> Response:
        return await endpoint(request, state_of(request))

    return wrapped
