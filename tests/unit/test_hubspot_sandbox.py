"""The HubSpot sandbox keeps HubSpot's documented wire rules (docs/vendors/hubspot.md),
independently of the connector: page sizes, the search cap and rate, archived records
invisible to search, merges, tokens, scopes, error envelopes and rate-limit headers."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from connectors.hubspot.sandbox import create_app
from connectors.hubspot.sandbox.state import SANDBOX_TOKEN
from connectors.sandbox import generate_company

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}


@pytest.fixture
def app() -> Any:
    return create_app(generate_company(seed=5, deals=450, accounts=60), search_cap=400)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hs.test")


def search_body(**extra: Any) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate",
                                           "operator": "GTE", "value": "0"}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 200, **extra}


async def test_lists_page_by_100_with_after_and_errors_use_the_envelope(app) -> None:
    async with client(app) as c:
        too_big = await c.get("/crm/v3/objects/deals", params={"limit": 101}, headers=AUTH)
        assert too_big.status_code == 400
        assert {"status", "message", "correlationId", "category"} <= set(too_big.json())
        seen, after = [], None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = (await c.get("/crm/v3/objects/deals", params=params, headers=AUTH)).json()
            seen += [r["id"] for r in page["results"]]
            after = page.get("paging", {}).get("next", {}).get("after")
            if not after:
                break
        assert len(seen) == len(set(seen)) == len(app.state.hubspot.company.deals)
        answer = await c.get("/crm/v3/pipelines/deals", headers=AUTH)
        assert answer.headers["X-HubSpot-RateLimit-Max"] == "190"
        assert int(answer.headers["X-HubSpot-RateLimit-Remaining"]) < 190
        stages = [s for p in answer.json()["results"] for s in p["stages"]]
        assert all(isinstance(s["metadata"]["isClosed"], str) for s in stages)  # §5 strings


async def test_search_caps_results_and_rate_and_hides_archived_records(app) -> None:
    state = app.state.hubspot
    async with client(app) as c:
        first = (await c.post("/crm/v3/objects/deals/search", json=search_body(),
                              headers=AUTH)).json()
        assert first["total"] == len(state.company.deals)
        archived = {d.id for d in state.archived("deals")}
        assert archived and not archived & {r["id"] for r in first["results"]}
        await asyncio.sleep(1.0)
        past = await c.post("/crm/v3/objects/deals/search", json=search_body(after="400"),
                            headers=AUTH)
        assert past.status_code == 400 and past.json()["category"] == "VALIDATION_ERROR"
        too_many = await c.post("/crm/v3/objects/deals/search", json=search_body(limit=201),
                                headers=AUTH)
        assert too_many.status_code == 400
        answers = [await c.post("/crm/v3/objects/deals/search", json=search_body(),
                                headers=AUTH) for _ in range(6)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and limited[0].json()["policyName"] == "SECONDLY"
        assert limited[0].json()["errorType"] == "RATE_LIMIT"


async def test_a_merged_id_answers_the_primary_and_is_neither_listed_nor_archived(app) -> None:
    state = app.state.hubspot
    primary, merged = sorted(state.company.deals)[:2]
    async with client(app) as c:
        answer = await c.post("/crm/v3/objects/deals/merge", headers=AUTH, json={
            "primaryObjectId": primary, "objectIdToMerge": merged})
        assert answer.status_code == 200 and answer.json()["id"] == primary
        again = await c.get(f"/crm/v3/objects/deals/{merged}", headers=AUTH,
                            params={"properties": "hs_merged_object_ids"})
        assert again.json()["id"] == primary
        assert again.json()["properties"]["hs_merged_object_ids"] == merged
        assert merged not in {d.id for d in state.archived("deals")}


async def test_tokens_expire_and_oauth_errors_follow_rfc6749(app) -> None:
    form = {"grant_type": "refresh_token", "client_id": "sandbox-client-id",
            "client_secret": "sandbox-client-secret", "refresh_token": "na1-sandbox-refresh-token"}
    async with client(app) as c:
        granted = (await c.post("/oauth/2026-03/token", data=form)).json()
        assert granted["expires_in"] == 1800 and granted["token_type"] == "bearer"
        legacy = await c.post("/oauth/v1/token", data=form)
        assert legacy.status_code == 200
        bad = await c.post("/oauth/2026-03/token", data={**form, "client_secret": "x"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
        token = {"Authorization": f"Bearer {granted['access_token']}"}
        assert (await c.get("/crm/v3/owners/", headers=token)).status_code == 200
        app.state.hubspot.tokens[granted["access_token"]] = time.time() - 1
        expired = await c.get("/crm/v3/owners/", headers=token)
        assert expired.status_code == 401
        assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"


async def test_goals_need_their_scopes() -> None:
    app = create_app(generate_company(seed=5, deals=50, accounts=10), goal_scopes=False)
    async with client(app) as c:
        refused = await c.post("/crm/v3/objects/goal_targets/batch/create", headers=AUTH,
                               json={"inputs": [{"properties": {}}]})
        assert refused.status_code == 403 and refused.json()["category"] == "MISSING_SCOPES"
