"""A simulated Salesforce org speaking the REST API (SOQL query/queryAll with query
cursors, limits, describe, getDeleted, ForecastingQuota writes), over the synthetic
company (connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox).

Written from Salesforce's documentation (docs/vendors/salesforce.md, cited as §n), not
from the connector's needs; where the documentation has no answer the choice is marked
"guess". Modules, each importing only those above it:

- soql.py: the SOQL subset: parser, type checks, filters and ordering (§2);
- wire.py: ids, the objects' fields and the org's rows (§3, §5, §8);
- errors.py: error arrays {message, errorCode}, OAuth errors, the usage header (§1, §6, §7);
- state.py: the org (data, connected app, sessions, allocation, cursors, recycle bin,
  quotas, switches);
- auth.py: the token endpoint (refresh token, JWT bearer) and every call's session and
  allocation checks (§1, §6);
- records.py: query, queryAll, cursors, limits, describe, getDeleted, retrieve (§2-§6);
- goals.py: ForecastingQuota writes with their rules, single and composite (§7, §8);
- app.py: create_app(), the routes and /_sandbox/salesforce.

Salesforce pushes no webhook a middleware can take without SOAP or gRPC (§9), so there is
no notifications module: changes are polled.
"""

from connectors.base import Sandbox, SandboxOption
from connectors.salesforce.sandbox.app import create_app
from connectors.salesforce.sandbox.state import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PRIVATE_KEY,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_USERNAME,
)

SANDBOX = Sandbox(
    title="a simulated Salesforce org speaking the REST API (SOQL, limits, ForecastingQuota)",
    create_app=create_app,
    config=lambda url: {"login_url": url, "username": SANDBOX_USERNAME},
    secrets={"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
             "refresh_token": SANDBOX_REFRESH_TOKEN, "private_key": SANDBOX_PRIVATE_KEY},
    demo_name="Salesforce (sandbox)",
    default_port=8420,
    demo_rank=3,
    options=(
        SandboxOption("single-currency", "An org without multi-currency (no CurrencyIsoCode).",
                      apply=lambda on: {"multi_currency": not on}, demo=True),
        SandboxOption("advanced-currency", "Advanced currency management: dated rates "
                      "(DatedConversionRate) by close date.",
                      apply=lambda on: {"advanced_currency": bool(on)}, demo=True),
        SandboxOption("api-max", "The daily API allocation (DailyApiRequests Max).",
                      default=100_000, kind=int, apply=lambda n: {"api_max": int(n)}),
    ),
    notes="Both OAuth flows work: the refresh-token grant with client_id, client_secret and "
          "refresh_token, or the JWT bearer grant with client_id, private_key and the config's "
          "username (the sandbox's private key is a throwaway test key).",
)

__all__ = ["SANDBOX", "create_app"]
