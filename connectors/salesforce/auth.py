"""Salesforce OAuth: the refresh-token grant or the JWT bearer grant, a session cache, and an
httpx.Auth that gets a new session once on 401 INVALID_SESSION_ID
(docs/vendors/salesforce.md §1).

The token answer names `instance_url`, where every API call goes, and `id`, whose last
segment is the integration user's id (the quota rule "never one's own", §8). It carries
no expiry: a session lasts the org's session timeout, so it is cached for
SESSION_CACHE_SECONDS and replaced sooner when Salesforce answers INVALID_SESSION_ID.
A JWT assertion is built and signed (RS256, `cryptography`) for every token request.
"""

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.endpoints import EndpointPolicy
from connectors.http import SharedLimits, json_body
from connectors.salesforce.wire import INVALID_SESSION, JWT_LIFETIME, b64url
from connectors.tokens import CachedTokenAuth, error_body
from core.errors import AuthError, ConfigError, TransientError

# §1: where credentials and sessions may go: the login hosts, My Domain and instance hosts.
HOSTS = ("login.salesforce.com", "test.salesforce.com", "*.salesforce.com", "*.force.com",
         "*.salesforce-setup.com", "*.cloudforce.com")
SESSION_CACHE_SECONDS = 3600.0  # §1: no expires_in; most orgs time out after 2 hours


@dataclass(frozen=True)
class Session:
    access_token: str
    instance_url: str
    user_id: str | None = None

    def dump(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "instance_url": self.instance_url,
                "user_id": self.user_id}


@functools.lru_cache(maxsize=16)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The connected app's RSA private key (PEM); ConfigError when it is not one. Kept per
    PEM for the process: loading checks the key (about 30 ms of CPU for 2048 bits), which
    the secrets' validation and the client did on every sync."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("private_key must be an RSA key (the JWT bearer flow signs RS256)")
    return key


def jwt_assertion(key: rsa.RSAPrivateKey, *, client_id: str, username: str, audience: str,
                  now: float | None = None) -> str:
    """§1: header {"alg": "RS256"}, claims iss (consumer key), sub (username), aud (login
    host), exp (3 minutes ahead), signed with the app certificate's private key."""
    issued = int(time.time() if now is None else now)
    header = b64url(json.dumps({"alg": "RS256"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"iss": client_id, "sub": username, "aud": audience,
                                "exp": issued + JWT_LIFETIME},
                               separators=(",", ":")).encode())
    signed = f"{header}.{claims}".encode()
    return f"{header}.{claims}.{b64url(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()))}"


def parse_token_response(response: httpx.Response) -> Session:
    """A session from the token endpoint, or AuthError saying what to fix (never echoing
    the credentials)."""
    if response.status_code >= 500:
        raise TransientError(f"Salesforce token endpoint answered HTTP {response.status_code}")
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError("Salesforce token endpoint sent an unexpected body")
    if response.status_code != 200 or "access_token" not in body:
        error = str(body.get("error") or f"HTTP {response.status_code}")
        description = str(body.get("error_description") or "")
        hint = {
            "invalid_grant": "the refresh token was revoked or expired, or the JWT was "
                             "refused (username unknown or not pre-authorized for the app, "
                             "certificate mismatch, clock skew); reconnect or fix the app",
            "invalid_client_id": "client_id is not the connected app's consumer key",
            "invalid_client": "client_secret does not match the connected app",
        }.get(error, "check the connection's credentials and login_url")
        raise AuthError(f"Salesforce refused the credentials ({error}: {description}): "
                        f"{hint}")
    identity = str(body.get("id") or "")
    return Session(access_token=str(body["access_token"]),
                   instance_url=str(body.get("instance_url") or "").rstrip("/"),
                   user_id=identity.rstrip("/").rsplit("/", 1)[-1] or None)


class SalesforceAuth(CachedTokenAuth[Session]):
    """Adds `Authorization: Bearer`; on 401 INVALID_SESSION_ID gets a new session once and
    retries (connectors.tokens.CachedTokenAuth). The session lives in `limits` under a hash
    of the token URL, client and credential (never the secrets themselves). `form` builds
    each token request's body (a fresh assertion for JWT)."""

    def __init__(self, token_url: str, form: Callable[[], dict[str, str]], credential: str,
                 limits: SharedLimits | None = None,
                 endpoints: EndpointPolicy | None = None) -> None:
        digest = hashlib.sha256(f"{token_url}\0{credential}".encode())
        super().__init__(token_url, f"salesforce:{digest.hexdigest()}", token_hosts=HOSTS,
                         api_hosts=HOSTS, limits=limits, endpoints=endpoints)
        self.form = form

    def token_form(self) -> dict[str, str]:
        return self.form()

    def parse_token(self, response: httpx.Response) -> Session:
        return parse_token_response(response)

    def load(self, value: dict[str, Any]) -> Session:
        return Session(str(value["access_token"]), str(value["instance_url"]),
                       value.get("user_id"))

    def dump(self, token: Session) -> dict[str, Any]:
        return token.dump()

    def lifetime(self, token: Session) -> float:
        return SESSION_CACHE_SECONDS

    def api_url(self, token: Session) -> str:
        return token.instance_url

    def authorize(self, request: httpx.Request, token: Session) -> None:
        request.headers["Authorization"] = f"Bearer {token.access_token}"

    def expired(self, response: httpx.Response) -> bool:
        """§7: errors are an array of {message, errorCode}."""
        if response.status_code != 401:
            return False
        body = error_body(response)
        first = body[0] if isinstance(body, list) and body else body
        return isinstance(first, dict) and first.get("errorCode") == INVALID_SESSION
