"""Fxiaoke follow-up records (docs/vendors/fxiaoke.md §10) as activities: typed by the labels
of interactive_types, linked to deals and accounts, voided ones as tombstones, read by the
last_modified_time keyset."""

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.fxiaoke import mapping
from tests.unit.test_fxiaoke_connector import (
    BASE,
    REP,
    FakeFx,
    _fresh,  # noqa: F401 (a fixture)
    directory,
    make,
    pages,
    records,
    token_ok,
    users,
)

DEAL_ID, ACCOUNT_ID = "6508f92086a6c8000190db97", "6508f92086a6c8000190aa01"


def record(i: int, modified: int = 1_716_000_000_000, **extra: Any) -> dict[str, Any]:
    return {"_id": f"{i:024x}", "name": f"AR{i:08d}", "active_record_content": f"跟进 {i}",
            "active_record_type": "1", "owner": [REP],
            "owner__r": {"id": "1000", "name": "王五", "dept": "1003"},
            "create_time": 1_715_990_400_000, "last_modified_time": modified,
            "life_status": "normal", "is_deleted": False, **extra}


@pytest.mark.parametrize(("labels", "kind", "label"), [
    ("电话", "call", "电话"), (["拜访"], "meeting", "拜访"),
    ([{"name": "面谈"}], "meeting", "面谈"),
    ("邮件", "email", "邮件"), ("Phone call", "call", "Phone call"), ("微信", "note", "微信"),
    (None, "note", None)])
def test_the_type_comes_from_the_interactive_types_labels(labels, kind, label):
    raw = record(1, interactive_types=["x"], interactive_types__r=labels)
    found = mapping.activity(raw, users(), "NewOpportunityObj")
    assert (found.type, found.kind) == (kind, label)


def test_a_follow_up_record_maps_exactly():
    raw = record(2, interactive_types=["1"], interactive_types__r="电话",
                 new_opportunity_id=DEAL_ID, account_id=ACCOUNT_ID)
    found = mapping.activity(raw, users(), "NewOpportunityObj")
    assert (found.remote_id, found.subject, found.done) == (f"{2:024x}", "跟进 2", True)
    assert found.occurred_at == found.remote_created_at == datetime(2024, 5, 18, tzinfo=UTC)
    assert found.remote_modified_at == datetime(2024, 5, 18, 2, 40, tzinfo=UTC)
    assert (found.owner_remote_id, found.owner_email, found.owner_name) == (
        REP, "wang.wu@example.cn", "王五")
    assert (found.deal_remote_id, found.account_remote_id) == (DEAL_ID, ACCOUNT_ID)
    assert found.deleted_at is None and found.raw == raw


def test_links_fall_back_to_related_object_data_and_follow_the_deal_object():
    related = [{"describe_api_name": "NewOpportunityObj", "id": DEAL_ID, "name": "建案"},
               {"describe_api_name": "AccountObj", "id": ACCOUNT_ID, "name": "客户"},
               {"describe_api_name": "ContactObj", "id": "c1", "name": "张三"}]
    raw = record(3, related_object_data=related)
    found = mapping.activity(raw, users(), "NewOpportunityObj")
    assert (found.deal_remote_id, found.account_remote_id) == (DEAL_ID, ACCOUNT_ID)
    old = mapping.activity(record(4, opportunity_id="op1", new_opportunity_id=DEAL_ID),
                           users(), "OpportunityObj")
    assert old.deal_remote_id == "op1"  # the older opportunity object's lookup
    assert mapping.activity(record(5), users(), "NewOpportunityObj").deal_remote_id is None


@pytest.mark.parametrize("extra", [{"life_status": "invalid"}, {"is_deleted": True}])
def test_voided_or_deleted_follow_up_records_are_tombstones(extra):
    found = mapping.activity(record(6, modified=1_716_000_001_000, **extra), users(),
                             "NewOpportunityObj")
    assert found.deleted_at == datetime(2024, 5, 18, 2, 40, 1, tzinfo=UTC)


@respx.mock
async def test_follow_up_records_are_read_oldest_change_first_from_the_cursor():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    fake = FakeFx([record(i, 1_000_000 + i * 1000) for i in range(150)])
    route = respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    directory(respx)
    connector, _ = make()
    found = await pages(connector, "activities")
    assert len({r.remote_id for r in records(found)}) == 150
    assert found[-1].cursor == {"modified_since": 1_000_000 + 149 * 1000}
    sent = json.loads(httpx.Request("POST", "/", content=route.calls[0].request.content)
                      .read())["data"]
    assert sent["dataObjectApiName"] == "ActiveRecordObj"
    again = await pages(connector, "activities", found[-1].cursor)
    assert fake.queries[-1]["filters"][0] == {"field_name": "last_modified_time",
                                              "operator": "GTE",
                                              "field_values": [1_149_000 - 60_000]}
    assert sorted(r.remote_id for r in records(again)) == [f"{i:024x}" for i in range(89, 150)]
