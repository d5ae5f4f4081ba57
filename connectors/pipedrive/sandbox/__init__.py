"""A simulated Pipedrive company account speaking the API v1 and v2 wire formats, over the
synthetic company (connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox).

Written from Pipedrive's documentation (docs/vendors/pipedrive.md, cited as §n), not from
the connector's needs; where Pipedrive documents nothing, the guess is marked "guess".
Modules, each importing only those above it:

- errors.py: the error envelope (§9) and JSON answers;
- wire.py: the JSON of users, currencies, fields, pipelines, stages, organizations, deals;
- state.py: the company account (data, credentials, tokens, rate limits, webhooks, goals);
- auth.py: the OAuth token endpoint and the credential and rate check of every call (§1, §6);
- records.py: the read API (§2-§4, §8);
- goals.py: Goals with find and results (§7);
- notifications.py: /v1/webhooks and the v2 payloads fired on changes (§5);
- app.py: create_app(), the routes of all of the above.
"""

from connectors.base import Sandbox, SandboxOption
from connectors.pipedrive.sandbox.app import create_app

SANDBOX = Sandbox(
    title="a simulated Pipedrive company speaking Pipedrive's API v1/v2 wire formats",
    create_app=create_app,
    # 100 a page (not 500): the contract suite's 450-deal company then spans several pages,
    # and so do its activities. 60 requests per 2 s: the sandbox's plan (Professional, 80;
    # the connector's default is the lowest plan's 20) less a margin for requests that
    # arrive late within the window (the demo's stage history: 200 flow reads).
    config=lambda url: {"api_url": url, "oauth_url": url, "page_limit": 100,
                        "burst_limit": 60},
    secrets={"api_token": "sandbox-api-token"},
    demo_name="Pipedrive (sandbox)",
    default_port=8430,
    demo_rank=20,
    options=(
        SandboxOption("burst-limit", "API-token requests per 2 seconds (OAuth: 4 times as "
                      "many; docs/vendors/pipedrive.md §6).", default=80,
                      kind=int, apply=lambda n: {"burst_limit": int(n)}),
        SandboxOption("no-teams", "A plan without Teams: /v1/legacyTeams answers 403 (§10).",
                      default=False, kind=bool, apply=lambda off: {"teams": not off}),
        SandboxOption("daily-budget", "The company's daily token budget (§6); 0: unlimited.",
                      default=0, kind=int,
                      apply=lambda n: {"daily_budget": int(n) or None}),
    ),
    notes="OAuth: client_id sandbox-client-id, client_secret sandbox-client-secret, "
          "refresh_token sandbox-refresh-token (the token answer's api_domain is this server).",
)

__all__ = ["SANDBOX", "create_app"]
