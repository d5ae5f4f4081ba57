"""The Salesforce sandbox's OAuth token endpoint (refresh-token and JWT bearer grants) and
the session and API-allocation checks of every REST call (docs/vendors/salesforce.md §1,
§6)."""

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import Response

from connectors.salesforce.sandbox.errors import SfError, answer, failure, oauth_failure
from connectors.salesforce.sandbox.soql import SoqlError
from connectors.salesforce.sandbox.state import SalesforceState, state_of
from connectors.salesforce.wire import (
    JWT_GRANT,
    JWT_LIFETIME,
    LOGIN_URL,
    TEST_LOGIN_URL,
    b64url_decode,
)

CLOCK_SKEW = 60  # seconds of leeway on exp (guess)


async def token_endpoint(request: Request) -> Response:
    """§1: POST /services/oauth2/token, form encoded; no API call is spent."""
    state = state_of(request)
    state.token_calls += 1
    form = await request.form()
    grant = str(form.get("grant_type") or "")
    base = str(request.base_url).rstrip("/")
    if grant == "refresh_token":
        if str(form.get("client_id") or "") != state.client_id:
            return oauth_failure("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(str(form.get("client_secret") or ""),
                                      state.client_secret):
            return oauth_failure("invalid_client", "invalid client credentials")
        if str(form.get("refresh_token") or "") not in state.refresh_tokens:
            return oauth_failure("invalid_grant", "expired access/refresh token")
        return _token(state, state.integration_user_id, base, "api refresh_token")
    if grant == JWT_GRANT:
        try:
            user_id = _verify_assertion(state, str(form.get("assertion") or ""), base)
        except _Refused as exc:
            return oauth_failure(exc.error, exc.description)
        return _token(state, user_id, base, "api")
    return oauth_failure("unsupported_grant_type", "grant type not supported")


def _token(state: SalesforceState, user_id: str, base: str, scope: str) -> Response:
    """§1: no expires_in; `id` names the org and user; `signature` is HMAC-SHA256 of
    id + issued_at keyed with the consumer secret."""
    identity = f"{base}/id/{state.org_id}/{user_id}"
    issued_at = str(int(time.time() * 1000))
    mac = hmac.new(state.client_secret.encode(), (identity + issued_at).encode(),
                   hashlib.sha256).digest()
    return answer({"access_token": state.mint_session(user_id), "instance_url": base,
                   "id": identity, "token_type": "Bearer", "issued_at": issued_at,
                   "signature": base64.b64encode(mac).decode(), "scope": scope})


class _Refused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def _verify_assertion(state: SalesforceState, assertion: str, base: str) -> str:
    """§1: an RS256 JWT signed with the key of the app's certificate; iss the consumer key,
    sub an approved user's username, aud the login host, exp within 3 minutes."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise _Refused("invalid_grant", "invalid assertion")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise _Refused("invalid_grant", "invalid assertion") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or \
            not isinstance(claims, dict):
        raise _Refused("invalid_grant", "invalid assertion")
    key = serialization.load_pem_public_key(state.public_key_pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise _Refused("invalid_grant", "invalid assertion")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except InvalidSignature:
        raise _Refused("invalid_grant", "invalid assertion") from None
    if claims.get("iss") != state.client_id:
        raise _Refused("invalid_client_id", "client identifier invalid")
    if claims.get("aud") not in (base, LOGIN_URL, TEST_LOGIN_URL):
        raise _Refused("invalid_grant", "audience is invalid")
    expires = claims.get("exp")
    now = time.time()
    if not isinstance(expires, int | float) or expires <= now - CLOCK_SKEW or \
            expires > now + JWT_LIFETIME + CLOCK_SKEW:
        raise _Refused("invalid_grant", "expired authorization code")
    if claims.get("sub") != state.username:  # only the integration user is pre-authorized
        raise _Refused("invalid_grant", "user hasn't approved this consumer")
    return state.integration_user_id


Handler = Callable[[Request, SalesforceState, str], Awaitable[Any]]


def api(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    """A REST resource: session (401 INVALID_SESSION_ID), then one call of the daily
    allocation (403 REQUEST_LIMIT_EXCEEDED), then the handler; every answer after the
    session check carries Sforce-Limit-Info (§6). A handler returning None answers 204."""

    async def wrapped(request: Request) -> Response:
        state = state_of(request)
        try:
            user_id = state.session_user(request.headers.get("authorization"))
        except SfError as exc:
            return failure(exc)
        try:
            state.spend()
            body = await handler(request, state, user_id)
        except SfError as exc:
            return failure(exc, state.usage)
        except SoqlError as exc:
            return failure(SfError(400, exc.code, str(exc)), state.usage)
        if isinstance(body, Response):
            return body
        return answer(body, 204 if body is None else status, state.usage)

    return wrapped
