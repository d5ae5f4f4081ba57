"""Who is signed in to the dashboard, its cookies, and CSRF protection of its forms.

- The session cookie (api.access.SESSION_COOKIE) is HttpOnly, SameSite=Lax, Secure on
  HTTPS, for the whole site, for core.accounts.SESSION_TTL.
- A form of a signed-in user carries the session's CSRF token in a hidden field.
- The forms used before signing in (sign in, set a password) carry a random token that
  must equal the one in a cookie of their own (a double-submit cookie): another site can
  make a browser post a form, but it can neither read nor set that cookie.
"""

import secrets
from urllib.parse import urlencode

from fastapi import Request, Response

from api.access import SESSION_COOKIE, signed_in
from api.web.render import redirect
from core.accounts import SESSION_TTL, SignedIn

FORM_COOKIE = "crmsync_form"
CSRF_FIELD = "csrf"
_TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)


def current(request: Request) -> SignedIn | None:
    """The signed-in user of the request's session cookie, if the session is live."""
    return signed_in(request, request.app.state.engine)


def to_login(request: Request) -> Response:
    """Off to the sign-in page, which comes back here afterwards."""
    query = request.url.query
    here = request.url.path + (f"?{query}" if query else "")
    return redirect(f"/login?{urlencode({'next': here})}")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()),
                        path="/", secure=_secure(request), httponly=True, samesite="lax")


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True,
                           samesite="lax")


def form_token(request: Request) -> str:
    """The double-submit token of the forms before signing in: the cookie's, or a new one
    (keep_form_token sets it)."""
    token = request.cookies.get(FORM_COOKIE, "")
    if len(token) == _TOKEN_LENGTH and token.replace("-", "").replace("_", "").isalnum():
        return token
    return secrets.token_urlsafe(32)


def keep_form_token(response: Response, request: Request, token: str) -> None:
    response.set_cookie(FORM_COOKIE, token, path="/", secure=_secure(request), httponly=True,
                        samesite="strict")


def form_token_ok(request: Request, sent: str) -> bool:
    """A form before signing in carries the token of its cookie."""
    cookie = request.cookies.get(FORM_COOKIE, "")
    return bool(cookie) and secrets.compare_digest(cookie.encode(), sent.encode())


def session_token_ok(signed: SignedIn, sent: str) -> bool:
    """A signed-in user's form carries the session's CSRF token."""
    return bool(sent) and secrets.compare_digest(signed.csrf_token.encode(), sent.encode())


__all__ = ["CSRF_FIELD", "FORM_COOKIE", "clear_session", "current", "form_token",
           "form_token_ok", "keep_form_token", "session_token_ok", "set_session", "to_login"]
