"""The Acme sandbox's account: the synthetic company, its API token and page cursors,
and the hooks of the kit's harness (connectors.sandbox.faults.ErrorBodies) and control
API (connectors.sandbox.control.SandboxState)."""

import copy
from dataclasses import dataclass, field
from typing import Any

from acmecrm.sandbox.errors import AcmeError
from starlette.requests import Request

from connectors.sandbox.dataset import Company
from connectors.sandbox.faults import Harness
from connectors.sandbox.generator import generate_company
from connectors.sandbox.paging import PageTokenStore


@dataclass
class AcmeState:
    company: Company
    harness: Harness
    token: str
    cursors: PageTokenStore = field(default_factory=PageTokenStore)
    _snapshot: Company | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.company.generated_with is None:  # else reset() generates it again
            self._snapshot = copy.deepcopy(self.company)

    # ---- harness hooks ---------------------------------------------------------------------
    def too_many_requests(self) -> tuple[int, dict[str, Any]]:
        return 429, AcmeError(429, "rate_limited", "Too many requests; slow down").body()

    def internal_error(self) -> tuple[int, dict[str, Any]]:
        return 500, AcmeError(500, "internal", "Something went wrong on our side").body()

    def expire_tokens(self) -> None:
        """API tokens do not expire: nothing to do."""

    # ---- control API hooks -----------------------------------------------------------------
    def reset(self) -> None:
        """Back to the initial data; faults, counters and page cursors cleared."""
        params, listeners = self.company.generated_with, self.company.listeners
        self.company = (generate_company(**params) if params is not None
                        else copy.deepcopy(self._snapshot or self.company))
        self.company.listeners[:] = listeners
        self.harness.faults.clear()
        self.harness.reset_counters()
        self.cursors.clear()

    def stats(self) -> dict[str, Any]:
        return {**self.harness.stats(), "deals": len(self.company.deals),
                "accounts": len(self.company.accounts)}


def state_of(request: Request) -> AcmeState:
    state: AcmeState = request.app.state.acme
    return state
