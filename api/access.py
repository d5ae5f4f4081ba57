"""Who is calling: an API key (machines, BI tools) or a dashboard user's session cookie
(people; core.accounts). Routes take one of the Annotated aliases below.

An API key sees everything its scope allows. A signed-in user acts with their role:
admin as an admin key; manager as a push key (goals set and pushed) limited to the
people of their teams (or everyone); rep as a read key limited to their own person.
A request with the session cookie that changes anything must carry the session's CSRF
token in X-CSRF-Token (the dashboard's pages do), so another site cannot make a
signed-in browser act.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials

from api.deps import EngineDep, bearer, check_key
from api.errors import ApiError
from core import accounts
from core.accounts import Role, Viewer
from core.db import session_scope
from core.security import has_scope

SESSION_COOKIE = "crmsync_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_SCOPE = {Role.ADMIN: "admin", Role.MANAGER: "push", Role.REP: "read"}
"""What a signed-in role may do, in API-key scopes (admin > push > write > read)."""

_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description="A dashboard session (sign in at /login)")


@dataclass(frozen=True)
class Caller:
    """An API key (viewer None: no limit on people) or a signed-in dashboard user."""

    viewer: Viewer | None = None

    @property
    def people(self) -> frozenset[int] | None:
        """The person ids this caller may see, or None for everyone."""
        return None if self.viewer is None else self.viewer.people

    def check_person(self, person_id: int | None) -> None:
        """404 (as if it did not exist) for a person outside the caller's scope."""
        if self.viewer is not None and not self.viewer.sees(person_id):
            raise ApiError(404, f"person {person_id} does not exist")


def signed_in(request: Request, engine: Any) -> accounts.SignedIn | None:
    """The session of the request's cookie, if it is live."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with session_scope(engine) as session:
        return accounts.read_session(session, token)


def caller(scope: str, *, users: str | None = None) -> Any:
    """A dependency admitting an API key with `scope`, or a signed-in user whose role
    allows `users` (default: `scope`; with the CSRF token on changes). `users` is
    stricter than `scope` where a key's scope says less than the role a person needs
    (FX rates, operations: admins only)."""
    needed = users or scope

    def check(
        request: Request,
        engine: EngineDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        cookie: Annotated[str | None, Depends(_cookie)],
    ) -> Caller:
        if credentials is not None or not cookie:
            check_key(engine, credentials, scope)
            return Caller()
        session = signed_in(request, engine)
        if session is None:
            raise ApiError(401, "your session has ended: sign in again at /login",
                           headers={"WWW-Authenticate": "Bearer"})
        if request.method not in SAFE_METHODS and \
                request.headers.get(CSRF_HEADER) != session.csrf_token:
            raise ApiError(403, f"send the session's CSRF token in {CSRF_HEADER}")
        if not has_scope(ROLE_SCOPE[session.viewer.role], needed):
            raise ApiError(403, f"a {session.viewer.role} may not do this")
        return Caller(session.viewer)

    check.__name__ = f"caller_{scope}" + (f"_{users}" if users else "")
    return check


Reader = Annotated[Caller, Depends(caller("read"))]
Writer = Annotated[Caller, Depends(caller("write"))]
Pusher = Annotated[Caller, Depends(caller("push"))]
Admin = Annotated[Caller, Depends(caller("admin"))]

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "Admin", "Caller", "Pusher", "Reader", "Writer",
           "caller", "signed_in"]
