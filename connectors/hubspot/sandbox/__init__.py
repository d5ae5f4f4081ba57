"""A simulated HubSpot account (portal) speaking the CRM v3 wire format, over the
synthetic company (connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox).

Written from HubSpot's documentation (docs/vendors/hubspot.md, cited as §n), not from
the connector's needs; where HubSpot documents nothing the choice is marked "guess".
Modules, each importing only those above it:

- errors.py: the error envelope and the 429 bodies (§7);
- wire.py: the JSON of owners, companies, deals, pipelines and currencies, and the
  search filters (§2-§6);
- notifications.py: the app's webhooks, batched and signed with v3 (§8);
- state.py: the account (data, tokens, limits, merges, goal targets, webhook target);
- auth.py: the token endpoints and the token, scope and limit check of every call (§1, §7);
- records.py: lists, archived lists, batch read (property histories too), search,
  associations, merges, deal record pages (§2-§6, §10-§12);
- goals.py: goal targets (§9);
- app.py: create_app(), the routes of all of the above and /_sandbox/hubspot/...
"""

from connectors.base import Sandbox, SandboxOption
from connectors.hubspot.sandbox.app import create_app
from connectors.hubspot.sandbox.state import (
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PORTAL_ID,
    SANDBOX_TOKEN,
)

SANDBOX = Sandbox(
    title="a simulated HubSpot account speaking HubSpot's CRM v3 wire format",
    create_app=create_app,
    # burst_limit: the sandbox's plan (Professional, 190 per 10 s, §7; the connector's
    # default is Free's 100 and keeps 10% of either for other integrations)
    config=lambda url: {"base_url": url, "portal_id": SANDBOX_PORTAL_ID, "burst_limit": 190},
    secrets={"access_token": SANDBOX_TOKEN, "client_secret": SANDBOX_CLIENT_SECRET},
    demo_name="HubSpot (sandbox)",
    default_port=8430,
    demo_rank=3,
    options=(
        SandboxOption("webhook-url", "Where the app's webhooks go (signed with v3).",
                      default=None, kind=str, apply=lambda url: {"webhook_url": url}),
        SandboxOption("burst-limit", "Requests per 10 s before 429 (§7: 100 Free/Starter, 190 "
                      "Professional/Enterprise, 250 with the capacity pack).", default=190,
                      kind=int, apply=lambda n: {"burst_limit": n}),
        SandboxOption("search-lag", "Seconds before a change shows in search (§3: changes "
                      "take a few moments to appear).", default=0.0, kind=float,
                      apply=lambda seconds: {"search_lag": seconds}),
        SandboxOption("no-home-amounts", "Deals without amount_in_home_currency: crmsync "
                      "converts with the account's exchange rates.", default=False, kind=bool,
                      apply=lambda on: {"home_amounts": not on}, demo=True),
    ),
    set_callback_url=lambda app, url: setattr(app.state.hubspot, "webhook_url", url),
    notes="Private-app token: the `access_token` secret; OAuth: client id "
          "sandbox-client-id, secret sandbox-client-secret, refresh token "
          "na1-sandbox-refresh-token.",
)

__all__ = ["SANDBOX", "create_app"]
