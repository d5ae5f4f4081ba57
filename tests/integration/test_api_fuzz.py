"""schemathesis over the whole OpenAPI of the API, against the real PostgreSQL: no answer is
a 5xx, and documented answers match their schemas. The app runs in this process (uvicorn in
a thread, lifespan on) with seeded data and an admin key; examples per operation are bounded
(CRMSYNC_FUZZ_EXAMPLES, default 8) so the test takes seconds, not minutes.

schemathesis and Hypothesis are imported by the test, not the module: every test process
imports every test module, and only the one running this test needs them."""

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy import text

from api.app import create_app
from connectors.http import RetryPolicy
from core.config import Settings
from core.security import SecretBox
from tests.api_support import add_connection, make_key, seed, zoho_rejects_every_client
from workers.context import JobContext

EXAMPLES = int(os.environ.get("CRMSYNC_FUZZ_EXAMPLES", "8"))
STATS: list[int] = []
MISMATCH: list[str] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(pg_engine: Any) -> Iterator[tuple[str, str, Any, Any]]:
    secret_key = Fernet.generate_key().decode()
    url = pg_engine.url.render_as_string(hide_password=False)
    app_settings = Settings(database_url=url, secret_key=secret_key, redis_url=None)
    ctx = JobContext(settings=app_settings, engine=pg_engine, secrets=SecretBox(secret_key),
                     transport=httpx.MockTransport(zoho_rejects_every_client),
                     retry=RetryPolicy(attempts=1, initial_wait=0.01, max_wait=0.01))
    app = create_app(app_settings, ctx=ctx)
    cid = add_connection(pg_engine, "fuzzed")
    seed(pg_engine, cid, deals=6)
    key = make_key(pg_engine, "admin")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key, app, pg_engine
    finally:
        server.should_exit = True
        thread.join(10)


def test_no_operation_answers_5xx(served: tuple[str, str, Any, Any]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.specs.openapi.checks import response_schema_conformance

    base_url, key, app, pg_engine = served
    probe = httpx.get(f"{base_url}/api/v1/deals", headers={"Authorization": f"Bearer {key}"})
    assert probe.status_code == 200, probe.text
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.config.update(base_url=base_url)
    failures: list[str] = []
    mismatches: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25  # the whole API, not a corner of it

    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            with pg_engine.begin() as conn:  # a fuzzed DELETE /api-keys/{id} may revoke it
                conn.execute(text("UPDATE api_key SET revoked_at = NULL"))
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
            response = case.call(timeout=30)
            statuses.append(response.status_code)
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except Exception as exc:
                mismatches.append(f"{case.method} {case.operation.path} {response.status_code}: "
                                f"{str(exc)[:150]}")
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:200]}")

        given(strategy)(run)()
    assert len(statuses) >= len(operations)
    assert {200, 201, 204, 404, 422} <= set(statuses)  # the examples reach the routes' logic
    assert not failures, "\n".join(sorted(set(failures))[:30])
    assert not mismatches, "\n".join(sorted(set(mismatches))[:30])

