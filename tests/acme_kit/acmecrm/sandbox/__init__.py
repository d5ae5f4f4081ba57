"""A simulated Acme CRM account speaking the /v1 API over the kit's synthetic company
(connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox). Modules, each
importing only those above it:

- errors.py: the error envelope and JSON answers;
- wire.py: the JSON of the account, users, stages, accounts, deals and deletions;
- state.py: the account (the company, its API token, page cursors) and the hooks of the
  kit's harness and control API;
- auth.py: the token check of every call;
- records.py: the read API;
- app.py: create_app(), the routes of all of the above.
"""

from acmecrm.sandbox.app import TOKEN, create_app

from connectors.base import Sandbox

SANDBOX = Sandbox(
    title="a simulated Acme CRM account speaking its /v1 JSON API",
    create_app=create_app,
    config=lambda url: {"base_url": url},
    secrets={"token": TOKEN},
    demo_name="Acme CRM (sandbox)",
    default_port=8490,
)

__all__ = ["SANDBOX", "create_app"]
