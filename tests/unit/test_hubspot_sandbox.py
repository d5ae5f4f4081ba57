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


async def test_property_histories_come_50_records_a_batch_read_newest_first(app) -> None:
    """§11: the dealstage history is the deal's stage path; over 50 inputs is a 400."""
    company = app.state.hubspot.company
    ids = sorted(company.deals)[:51]
    async with client(app) as c:
        refused = await c.post("/crm/v3/objects/deals/batch/read", headers=AUTH, json={
            "inputs": [{"id": i} for i in ids], "properties": ["dealstage"],
            "propertiesWithHistory": ["dealstage"]})
        assert refused.status_code == 400
        assert "maximum number of inputs" in refused.json()["message"]
        answer = await c.post("/crm/v3/objects/deals/batch/read", headers=AUTH, json={
            "inputs": [{"id": i} for i in ids[:50]], "properties": ["dealstage"],
            "propertiesWithHistory": ["dealstage"]})
    assert answer.status_code == 200
    for row in answer.json()["results"]:
        deal = company.deals[row["id"]]
        entries = row["propertiesWithHistory"]["dealstage"]
        assert [e["value"] for e in entries] == [m.stage_id for m in reversed(deal.history)]
        assert entries[0]["value"] == row["properties"]["dealstage"]
        assert entries == sorted(entries, key=lambda e: e["timestamp"], reverse=True)


async def test_activity_objects_need_their_scope_and_link_deals_and_companies(app) -> None:
    """§13: calls are listed with their associations; without the scope, 403."""
    state = app.state.hubspot
    calls = {a.id: a for a in state.company.activities.values() if a.kind == "call"}
    async with client(app) as c:
        page = (await c.get("/crm/v3/objects/calls", headers=AUTH, params={
            "limit": 100, "associations": "deals,companies"})).json()
        assert {r["id"] for r in page["results"]} <= set(calls)
        for row in page["results"]:
            links = row.get("associations", {})
            deal = calls[row["id"]].deal_id
            assert links.get("deals", {}).get("results", [{}])[0].get("id") == deal
        found = await c.post("/crm/v4/associations/calls/deals/batch/read", headers=AUTH,
                             json={"inputs": [{"id": i} for i in list(calls)[:20]]})
        assert {r["from"]["id"]: str(r["to"][0]["toObjectId"]) for r in found.json()[
            "results"]} == {i: calls[i].deal_id for i in list(calls)[:20] if calls[i].deal_id}
        state.scopes = frozenset(s for s in state.scopes if s != "crm.objects.contacts.read")
        denied = await c.get("/crm/v3/objects/meetings", headers=AUTH)
        assert (denied.status_code, denied.json()["category"]) == (403, "MISSING_SCOPES")


async def test_an_association_batch_read_takes_at_most_1000_ids(app) -> None:
    """§2: 1,000 ids a request since 2025-02-10; more are refused and nothing is read."""
    deals = list(app.state.hubspot.company.deals)
    path = "/crm/v4/associations/deals/companies/batch/read"
    async with client(app) as c:
        ids = [{"id": deals[i % len(deals)]} for i in range(1000)]
        assert (await c.post(path, headers=AUTH, json={"inputs": ids})).status_code == 200
        refused = await c.post(path, headers=AUTH, json={"inputs": ids + ids[:1]})
        assert (refused.status_code, refused.json()["category"]) == (400, "VALIDATION_ERROR")


async def test_an_association_read_names_records_without_one_in_a_207(app) -> None:
    """§2: a call without a deal is not in `results` but in `errors`
    (NO_ASSOCIATIONS_FOUND) and the answer is a 207; all linked: a 200."""
    calls = [a for a in app.state.hubspot.company.activities.values() if a.kind == "call"]
    linked = [a for a in calls if a.deal_id]
    alone = [a for a in calls if not a.deal_id]
    assert linked and alone
    path = "/crm/v4/associations/calls/deals/batch/read"
    async with client(app) as c:
        both = await c.post(path, headers=AUTH, json={"inputs": [
            {"id": linked[0].id}, {"id": alone[0].id}]})
        assert both.status_code == 207
        body = both.json()
        assert [r["from"]["id"] for r in body["results"]] == [linked[0].id]
        assert body["numErrors"] == 1 and body["errors"][0]["subCategory"] == \
            "crm.associations.NO_ASSOCIATIONS_FOUND"
        assert body["errors"][0]["message"] == \
            f"No deal is associated with call {alone[0].id}."
        only = await c.post(path, headers=AUTH, json={"inputs": [{"id": linked[0].id}]})
        assert only.status_code == 200 and "errors" not in only.json()


async def test_a_deals_record_page_is_served_for_its_portal_only(app) -> None:
    """§12: /contacts/{portalId}/record/0-3/{dealId}."""
    deal = next(iter(app.state.hubspot.company.deals.values()))
    async with client(app) as c:
        page = await c.get(f"/contacts/62515/record/0-3/{deal.id}")
        assert page.status_code == 200 and deal.name in page.text.replace("&amp;", "&")
        assert (await c.get(f"/contacts/1/record/0-3/{deal.id}")).status_code == 404
