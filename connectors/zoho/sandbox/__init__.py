"""A simulated Zoho CRM org speaking the v8 wire format, over the synthetic company
(connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox).

Behaviour follows docs/vendors/zoho.md (cited as §n in comments); where Zoho documents
nothing, the guess is marked "guess". Modules, each importing only those above it:

- errors.py: the error envelope (§7) and JSON answers;
- wire.py: the JSON of records, users, the org and metadata;
- state.py: the org (data, OAuth client, tokens, credits, page tokens);
- auth.py: the token endpoint, grant codes and the access-token check of every call (§1);
- records.py: the read API (§2-§4, §8);
- goals.py: the goals custom module (§9);
- notifications.py: `/crm/v8/actions/watch` and the calls it makes back (§5);
- app.py: create_app(), the routes of all of the above.
"""

from connectors.base import Sandbox, SandboxOption
from connectors.zoho.sandbox.app import create_app
from connectors.zoho.sandbox.wire import ORG_DOMAIN

SANDBOX = Sandbox(
    title="a simulated Zoho CRM org speaking Zoho's API v8 wire format",
    create_app=create_app,
    config=lambda url: {"accounts_url": url, "org": ORG_DOMAIN},
    secrets={"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
             "refresh_token": "sandbox-refresh-token"},
    demo_name="Zoho CRM (sandbox)",
    default_port=8400,
    demo_rank=0,
    options=(SandboxOption(
        "one-currency", "An org without multi-currency (below Enterprise, §8).",
        default=False, kind=bool, apply=lambda on: {"multi_currency": not on},
        demo=True),),
)

__all__ = ["SANDBOX", "create_app"]
