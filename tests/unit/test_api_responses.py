"""Every route's real answers against the OpenAPI the app publishes.

Each JSON body must validate against the schema declared for its status code (response
models forbid extra fields, so a field the model does not declare fails, and so does a
missing required one); a file, text or HTML answer must have a declared media type. The
routes are read from the app: a route without a case below (or an exemption with its
reason) fails the test, and so does a case for a route that no longer exists.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema_rs
import pytest

from core import webhooks
from core.db import session_scope
from core.models import Connection
from tests.api_support import (
    DASHBOARD_PAGES,
    ZOHO_SECRETS,
    Api,
    add_connection,
    app_routes,
    running_api,
    seed,
    seed_activities,
)

V1 = "/api/v1"
TOKEN = "k" * 43
PERIOD = {"start": "2025-01-01", "end": "2025-03-31"}
FILE_FORMATS = ("csv", "excel-csv", "xlsx")
EXEMPT = {("MOUNT", "/static"): "the files of the /docs and /redoc pages, not the API",
          **dict.fromkeys(DASHBOARD_PAGES, "the dashboard (HTML for people, not the API): "
                          "tests/unit/test_dashboard_pages.py")}
OUTSIDE_SCHEMA = {"/openapi.json": "application/json", "/docs": "text/html",
                  "/redoc": "text/html"}  # routes the OpenAPI does not list: their media type


@dataclass
class Case:
    """A request to `route` (method and path template); `url` fills the template from the
    ids kept so far (default: the template itself). `keep` remembers values of the answer
    under names (dotted paths into the JSON body) for later urls and bodies."""

    method: str
    route: str
    status: int = 200
    url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    keep: dict[str, str] = field(default_factory=dict)


NEW_CONNECTION = {"provider": "zoho", "name": "Zoho EU", "config": {"dc": "eu"},
                  "secrets": ZOHO_SECRETS}
GOAL = {"owner_email": "ann@example.com", "metric": "bookings", "period_start": "2025-01-01",
        "period_end": "2025-03-31", "target": 1000}
IMPORT = b"owner_email,metric,period_start,period_end,target\n" \
         b"bob@example.com,deals_won,2025-01-01,2025-03-31,5\n"
BAD_IMPORT = b"owner_email,metric,period_start,period_end,target\n" \
             b"bob@example.com,revenue,2025-01-01,2025-03-31,5\n"
CSV = {"Content-Type": "text/csv"}
YAML = {"Content-Type": "application/yaml"}
PLAN = (b"name: East reps\nmembers: {team: East}\neffective: {from: 2025-01-01}\n"
        b"period: month\ncurrency: EUR\nquota: 1000\ntiers:\n  - {to: 1, rate: 0.05}\n"
        b"  - {rate: 0.1}\nspiffs:\n  - {name: any win, when: {}, amount: 20}\n"
        b"draw: {amount: 100, recoverable: true}\n")
NOTIFICATION = {"server_time": 1718117126473, "query_params": {}, "module": "Deals",
                "resource_uri": "https://www.zohoapis.com/crm/v2/Deals", "ids": ["d001"],
                "affected_fields": [], "operation": "update", "channel_id": "1000000068001",
                "token": TOKEN}
DIGEST = {"name": "sales group", "platform": "wecom", "cadence": "weekly", "day": 0,
          "hour": 9, "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1"}

CASES = [
    Case("GET", "/health"),
    Case("GET", "/ops/prometheus"),
    Case("GET", "/openapi.json"),
    Case("GET", "/docs"),
    Case("GET", "/redoc"),
    # connections and sync runs
    Case("POST", f"{V1}/connections", 201, json=NEW_CONNECTION, keep={"new": "id"}),
    Case("POST", f"{V1}/connections", 422, json={**NEW_CONNECTION, "config": {"dc": "mars"}}),
    Case("GET", f"{V1}/connections"),
    Case("GET", f"{V1}/connections/{{connection_id}}"),
    Case("GET", f"{V1}/connections/{{connection_id}}", 404, url=f"{V1}/connections/99999"),
    Case("PATCH", f"{V1}/connections/{{connection_id}}", url=f"{V1}/connections/{{new}}",
         json={"name": "Zoho EU 2"}),
    Case("POST", f"{V1}/connections/{{connection_id}}/sync", 202, keep={"run_id": "run_id"}),
    Case("POST", f"{V1}/connections/{{connection_id}}/sync", 422, json={"mode": "sometimes"}),
    Case("GET", f"{V1}/connections/{{connection_id}}/stage-history"),
    Case("POST", f"{V1}/connections/{{connection_id}}/stage-history/backfill", 422,
         json={"restart": "maybe"}),
    Case("POST", f"{V1}/connections/{{connection_id}}/stage-history/backfill", 202,
         json={"restart": False}),
    Case("GET", f"{V1}/sync-runs"),
    Case("GET", f"{V1}/sync-runs", 422, params={"status": "exploded"}),
    Case("GET", f"{V1}/sync-runs/{{run_id}}"),
    Case("GET", f"{V1}/connections/{{connection_id}}/sync-runs"),
    # records
    Case("GET", f"{V1}/users", keep={"user_id": "data.1.id"}),
    Case("GET", f"{V1}/accounts", params={"include_deleted": "true"}),
    Case("GET", f"{V1}/stages"),
    Case("GET", f"{V1}/deals", params={"include_deleted": "true"}, keep={"deal_id": "data.0.id"}),
    Case("GET", f"{V1}/activities", params={"include_deleted": "true", "type": "call"}),
    Case("GET", f"{V1}/activities", 422, params={"type": "dance"}),
    # deal history
    Case("GET", f"{V1}/deals/{{deal_id}}/stages"),
    Case("GET", f"{V1}/deals/{{deal_id}}/stages", 404, url=f"{V1}/deals/99999/stages"),
    Case("GET", f"{V1}/stage-changes", params={"since": "2024-01-01", "pipeline": "Standard"}),
    Case("GET", f"{V1}/stage-changes", 422, params={"since": "2025-02-01",
                                                    "until": "2025-01-01"}),
    Case("GET", f"{V1}/deals", 422, params={"status": "maybe"}),
    # API keys and FX rates
    Case("POST", f"{V1}/api-keys", 201, json={"name": "reports", "scopes": ["read"]},
         keep={"key_id": "id"}),
    Case("GET", f"{V1}/api-keys"),
    Case("PUT", f"{V1}/fx-rates/{{code}}", url=f"{V1}/fx-rates/usd",
         json={"rate_to_reporting": "0.92"}),
    Case("GET", f"{V1}/fx-rates"),
    # goals
    Case("POST", f"{V1}/goals", 201, json=GOAL, keep={"goal_id": "id"}),
    Case("POST", f"{V1}/goals", 409, json=GOAL),
    Case("POST", f"{V1}/goals/import", content=IMPORT, headers=CSV),
    Case("POST", f"{V1}/goals/import", 422, content=BAD_IMPORT, headers=CSV),
    Case("GET", f"{V1}/goals"),
    Case("GET", f"{V1}/goals/{{goal_id}}"),
    Case("PATCH", f"{V1}/goals/{{goal_id}}", json={"target": 1200}),
    Case("POST", f"{V1}/goals/push", json={}),
    # metrics
    *(Case("GET", f"{V1}/metrics/summary", params={**PERIOD, "group_by": group_by})
      for group_by in ("none", "owner", "connection", "team")),
    *(Case("GET", f"{V1}/metrics/summary", params={**PERIOD, "group_by": group_by,
                                                   "activities": "true"})
      for group_by in ("none", "owner", "team", "connection")),
    Case("GET", f"{V1}/metrics/summary", 422, params={**PERIOD, "group_by": "rep"}),
    Case("GET", f"{V1}/metrics/deals", params={**PERIOD, "metric": "forecast"}),
    Case("GET", f"{V1}/metrics/pipeline"),
    Case("GET", f"{V1}/metrics/pipeline", params={"as_of": "2025-01-15"}),
    Case("GET", f"{V1}/metrics/pipeline", 422, params={"as_of": "yesterday"}),
    Case("GET", f"{V1}/metrics/pipeline", params={"as_of": "9999-12-31"}),  # the last day
    *(Case("GET", f"{V1}/metrics/funnel", params={
        "start": "2024-12-01", "end": "2025-03-31", "group_by": group_by})
      for group_by in ("none", "owner", "team")),
    Case("GET", f"{V1}/metrics/funnel", 422, params={**PERIOD, "group_by": "connection"}),
    *(Case("GET", f"{V1}/metrics/velocity", params={**PERIOD, "group_by": group_by})
      for group_by in ("none", "owner", "team")),
    Case("GET", f"{V1}/metrics/velocity", 422, params={"start": "2025-02-01",
                                                       "end": "2025-01-01"}),
    *(Case("GET", f"{V1}/metrics/forecast-accuracy", params={**PERIOD, "group_by": group_by})
      for group_by in ("none", "owner", "team")),
    Case("GET", f"{V1}/metrics/forecast-accuracy", params={"start": "9999-01-01",
                                                           "end": "9999-12-31"}),
    *(Case("GET", f"{V1}/metrics/timeseries", params={
        **PERIOD, "metric": "bookings", "interval": "month", "group_by": group_by})
      for group_by in ("none", "owner", "team")),
    Case("GET", f"{V1}/metrics/scorecards", params=PERIOD),
    Case("GET", f"{V1}/metrics/scorecards", params={"period": "last-quarter", "team": "East"}),
    Case("GET", f"{V1}/metrics/scorecards", 422, params={**PERIOD, "period": "this-month"}),
    Case("GET", f"{V1}/metrics/scorecards", 404, params={**PERIOD, "team": "Nowhere"}),
    # sales hygiene
    Case("GET", f"{V1}/hygiene", params={"rule": "past_close"}),
    Case("GET", f"{V1}/hygiene", 422, params={"rule": "tidy"}),
    Case("GET", f"{V1}/hygiene/summary"),
    Case("GET", f"{V1}/hygiene/rules"),
    Case("PUT", f"{V1}/hygiene/rules/{{key}}", url=f"{V1}/hygiene/rules/stale",
         json={"threshold": 60}),
    Case("PUT", f"{V1}/hygiene/rules/{{key}}", 422, url=f"{V1}/hygiene/rules/stale",
         json={"threshold": 0}),
    Case("PUT", f"{V1}/hygiene/rules/{{key}}", 404, url=f"{V1}/hygiene/rules/tidy",
         json={"enabled": False}),
    # incentives
    Case("PUT", f"{V1}/plans/{{key}}", 201, url=f"{V1}/plans/east", content=PLAN,
         headers=YAML),
    Case("PUT", f"{V1}/plans/{{key}}", 422, url=f"{V1}/plans/east",
         content=PLAN.replace(b"0.05", b"five"), headers=YAML),
    Case("GET", f"{V1}/plans"),
    Case("GET", f"{V1}/plans/{{key}}", url=f"{V1}/plans/east"),
    Case("POST", f"{V1}/plans/{{key}}/preview", url=f"{V1}/plans/east/preview",
         params={"period": "2025-01"}, content=PLAN.replace(b"0.05", b"0.06"), headers=YAML),
    Case("GET", f"{V1}/statements", params={"period": "2025-01"}),
    Case("GET", f"{V1}/statements", 422, params={"period": "2025-13"}),
    Case("POST", f"{V1}/periods/{{period}}/lock", url=f"{V1}/periods/2025-01/lock"),
    Case("POST", f"{V1}/periods/{{period}}/lock", 409, url=f"{V1}/periods/2025-01/lock"),
    Case("GET", f"{V1}/statements", params={"period": "2025-01"}),
    # people
    Case("GET", f"{V1}/people", keep={"person_id": "data.0.id"}),
    Case("GET", f"{V1}/people/unmatched"),
    Case("GET", f"{V1}/people/{{person_id}}"),
    Case("PATCH", f"{V1}/people/{{person_id}}", json={"team": "North"}),
    Case("POST", f"{V1}/people/{{person_id}}/users", json={"user_id": "{user_id}"}),
    # webhooks (the vendor's own verification, no API key)
    Case("POST", "/api/v1/webhooks/{provider}/{connection_id}",
         url="/api/v1/webhooks/zoho/{connection_id}", json=NOTIFICATION),
    Case("POST", "/api/v1/webhooks/{provider}/{connection_id}", 401,
         url="/api/v1/webhooks/zoho/{connection_id}", json={**NOTIFICATION, "token": "x"}),
    # deletions last
    Case("DELETE", f"{V1}/goals/{{goal_id}}", 204),
    Case("DELETE", f"{V1}/api-keys/{{key_id}}", 204),
    # digest channels (docs/digests.md)
    Case("POST", f"{V1}/digests", 201, json=DIGEST, keep={"digest_id": "id"}),
    Case("POST", f"{V1}/digests", 422, json={**DIGEST, "name": "other", "day": 9}),
    Case("GET", f"{V1}/digests"),
    Case("PATCH", f"{V1}/digests/{{channel_id}}", url=f"{V1}/digests/{{digest_id}}",
         json={"language": "zh", "team": None}),
    Case("PATCH", f"{V1}/digests/{{channel_id}}", 404, url=f"{V1}/digests/99999",
         json={"hour": 8}),
    Case("GET", f"{V1}/digests/{{channel_id}}/preview", url=f"{V1}/digests/{{digest_id}}/preview"),
    Case("POST", f"{V1}/digests/{{channel_id}}/test", url=f"{V1}/digests/{{digest_id}}/test"),
    Case("DELETE", f"{V1}/digests/{{channel_id}}", 204, url=f"{V1}/digests/{{digest_id}}"),
    Case("DELETE", f"{V1}/digests/{{channel_id}}", 404, url=f"{V1}/digests/99999"),
    Case("DELETE", f"{V1}/connections/{{connection_id}}", 204, url=f"{V1}/connections/{{new}}"),
]


def declared(spec: dict[str, Any], case: Case, status: int) -> dict[str, Any]:
    """The OpenAPI's response for `status` of the case's operation (exact, nXX or default)."""
    responses = spec["paths"][case.route][case.method.lower()]["responses"]
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return dict(responses[key])
    raise AssertionError(f"{case.method} {case.route} answered {status}, which its OpenAPI "
                         f"does not declare (it declares {', '.join(responses)})")


def check(spec: dict[str, Any], case: Case, response: httpx.Response) -> None:
    """The answer has a media type its OpenAPI declares, and a JSON body its schema takes."""
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if case.route in OUTSIDE_SCHEMA:
        assert media == OUTSIDE_SCHEMA[case.route], (case.route, media)
        return
    content = declared(spec, case, response.status_code).get("content", {})
    if response.status_code == 204:
        assert not response.content and not content, case.route
        return
    assert media in content, f"{case.method} {case.route} answered {media}, not one of {content}"
    schema = content[media].get("schema")
    if media != "application/json" or not schema:
        return
    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": spec["components"]}, validate_formats=True)
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in validator.iter_errors(response.json())]
    assert not errors, f"{case.method} {case.route} {response.status_code}: {errors[:5]}"


def fill(value: Any, ids: dict[str, Any]) -> Any:
    """`value` with {name} placeholders replaced by kept ids (a lone one keeps its type)."""
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def pick(body: Any, path: str) -> Any:
    for part in path.split("."):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


async def call(api: Api, case: Case, ids: dict[str, Any], **changes: Any) -> httpx.Response:
    request: dict[str, Any] = {"params": case.params, "headers": case.headers,
                               "json": fill(case.json, ids), **changes}
    if case.content is not None:
        request.pop("json")
        request["content"] = case.content
    return await api.client.request(case.method, fill(case.url or case.route, ids), **request)


@pytest.fixture
async def api(sqlite_engine):  # type: ignore[no-untyped-def]
    async with running_api(sqlite_engine) as api:
        connection_id = add_connection(sqlite_engine)
        seed(sqlite_engine, connection_id, deals=9)
        seed_activities(sqlite_engine, connection_id)
        with session_scope(sqlite_engine) as session:
            connection = session.get(Connection, connection_id)
            assert connection is not None
            connection.home_currency = "EUR"
            webhooks.save_channel(session, api.app.state.secrets, connection_id=connection_id,
                                  channel_id="1000000068001", token=TOKEN, events=["Deals.all"],
                                  notify_url="http://x",
                                  expires_at=datetime.now(UTC) + timedelta(days=7))
        api.app.state.test_ids = {"connection_id": connection_id}
        yield api


async def test_every_route_answers_what_its_openapi_declares(api: Api) -> None:
    spec = api.app.openapi()
    ids: dict[str, Any] = dict(api.app.state.test_ids)
    probed: set[tuple[str, str]] = set()
    for case in CASES:
        response = await call(api, case, ids)
        await api.app.state.jobs.wait_idle()
        assert response.status_code == case.status, (case, response.text[:300])
        check(spec, case, response)
        for name, path in case.keep.items():
            ids[name] = pick(response.json(), path)
        if case.route in OUTSIDE_SCHEMA or (case.method, case.route) in probed:
            continue
        probed.add((case.method, case.route))
        operation = spec["paths"][case.route][case.method.lower()]
        if operation.get("security"):  # without a key: the 401 error envelope
            anonymous = await call(api, case, ids, headers={"Authorization": ""})
            assert anonymous.status_code == 401, (case.route, anonymous.text[:300])
            check(spec, case, anonymous)
        names = {p["name"] for p in operation.get("parameters", ())}
        if case.method == "GET" and "format" in names and case.status == 200:  # the files
            for fmt in FILE_FORMATS:
                exported = await call(api, case, ids, params={**case.params, "format": fmt})
                assert exported.status_code == 200, (case.route, fmt, exported.text[:300])
                check(spec, case, exported)
    covered = {(case.method, case.route) for case in CASES} | set(EXEMPT)
    routes = app_routes(api.app)
    assert routes - covered == set(), "routes without a case in this test (or an exemption)"
    assert covered - routes == set(), "cases for routes the app no longer has"
