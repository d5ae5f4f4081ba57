"""create_app(): the Acme sandbox's routes (records.py behind auth.py), the kit's
harness middleware and control API under /_sandbox, the envelope for unknown paths."""

from acmecrm.sandbox import records
from acmecrm.sandbox.auth import authenticated
from acmecrm.sandbox.errors import AcmeError
from acmecrm.sandbox.state import AcmeState
from acmecrm.wire import API
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.sandbox.control import control_routes
from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness, HarnessMiddleware
from connectors.sandbox.generator import generate_company

TOKEN = "sandbox-token"
READ_API = {"/me": records.me, "/users": records.users, "/stages": records.stages,
            "/accounts": records.accounts, "/deals": records.deals,
            "/deleted": records.deleted}


async def _unknown(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return AcmeError(status, "not_found" if status == 404 else "bad_request",
                     f"no {request.method} {request.url.path}").response()


def create_app(company: Company | None = None, *, seed: int = 42, deals: int = 2500,
               token: str = TOKEN, latency: float = 0.0,
               concurrency_limit: int | None = 10) -> Starlette:
    """An Acme sandbox app for `company` (None: one from `seed` and `deals`); its state is
    `app.state.acme` (an AcmeState)."""
    harness = Harness(latency=latency, concurrency_limit=concurrency_limit)
    state = AcmeState(company if company is not None else
                      generate_company(seed=seed, deals=deals), harness, token)
    routes = [*control_routes(state),
              *(Route(f"{API}{path}", authenticated(handler), methods=["GET"])
                for path, handler in READ_API.items())]
    app = Starlette(routes=routes,
                    middleware=[Middleware(HarnessMiddleware, harness=harness, bodies=state)],
                    exception_handlers={404: _unknown, 405: _unknown})
    app.state.acme = state
    return app
