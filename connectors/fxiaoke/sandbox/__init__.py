"""A simulated Fxiaoke (纷享销客) tenant speaking the Open API wire format, over the synthetic
company (connectors.sandbox): the connector's `sandbox` (connectors.base.Sandbox).

Behaviour follows docs/vendors/fxiaoke.md (cited as §n in comments); where the notes
have no answer, the choice is marked "guess" and kept strict. Modules, each importing
only those above it:

- errors.py: the answers, always HTTP 200, errors as `{"errorCode", "errorMessage"}` (§6);
- wire.py: the JSON of records, users and describes, and the query engine;
- notifications.py: the signed, encrypted CRM callbacks pushed on data changes (§5);
- state.py: the tenant (data, app credentials, tokens, limits, custom objects);
- auth.py: the token endpoint and the token, acting-user and rate checks of every call (§1, §6);
- records.py: the directory and the object API (§2-§4);
- goals.py: writes to the goals custom object (§4);
- app.py: create_app(), the routes of all of the above and /_sandbox/fxiaoke.
"""

from connectors.base import Sandbox, SandboxOption
from connectors.fxiaoke.sandbox.app import create_app
from connectors.fxiaoke.sandbox.state import (
    SANDBOX_AES_KEY,
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_PERMANENT_CODE,
)

SANDBOX = Sandbox(
    title="a simulated Fxiaoke (纷享销客) tenant speaking the Open API wire format",
    create_app=create_app,
    config=lambda url: {"base_url": url, "admin_mobile": "13800130000"},  # the manager
    secrets={"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET,
             "permanent_code": SANDBOX_PERMANENT_CODE, "aes_key": SANDBOX_AES_KEY},
    demo_name="Fxiaoke CRM (sandbox)",
    default_port=8410,
    demo_rank=1,
    options=(SandboxOption(
        "callback-url", "Where to POST signed, encrypted CRM callbacks when data changes.",
        default=None, kind=str, apply=lambda url: {"callback_url": url}),),
    set_callback_url=lambda app, url: setattr(app.state.fxiaoke, "callback_url", url),
)

__all__ = ["SANDBOX", "create_app"]
