"""The incentive routes (docs/incentives.md) over HTTP: plans as YAML or JSON, errors by
line, versions, statements as JSON, CSV (formula-safe) and xlsx, preview, locks."""

import csv
import io
import json
from datetime import date

import pytest
import yaml

from tests.api_support import running_api
from tests.incentive_support import AE_PLAN, company, deal, goal, set_deal, upsert

V1 = "/api/v1"
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
async def api(sqlite_engine):  # type: ignore[no-untyped-def]
    c = company(sqlite_engine)
    upsert(sqlite_engine, c.crm_a, "deals", [deal("d1", "40000", date(2027, 1, 10)),
                                             deal("d2", "60000", date(2027, 2, 10))])
    goal(sqlite_engine, "ann@example.com", date(2027, 1, 1), date(2027, 3, 31), "100000")
    async with running_api(sqlite_engine) as api:
        api.app.state.test_company = c
        yield api


async def test_a_plan_in_json_with_tabs_and_its_versions(api) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(yaml.safe_load(AE_PLAN), default=str))
    put = await api.client.put(f"{V1}/plans/ae-2027", content=json.dumps(doc, indent="\t"),
                               headers={"Content-Type": "application/json"})
    assert put.status_code == 201, put.text
    assert (put.json()["version"], put.json()["changed"]) == (1, True)
    again = await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN, headers=YAML)
    assert again.status_code == 200 and again.json()["changed"] is False
    changed = await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN + "cap: 1000\n",
                                   headers=YAML)
    assert changed.json()["version"] == 2 and changed.json()["document"]["cap"] == "1000"
    first = await api.client.get(f"{V1}/plans/ae-2027", params={"version": 1})
    assert "cap" not in first.json()["document"]
    listed = (await api.client.get(f"{V1}/plans")).json()["data"]
    assert [(p["key"], p["version"]) for p in listed] == [("ae-2027", 2)]
    assert (await api.client.get(f"{V1}/plans/nope")).status_code == 404


async def test_a_bad_plan_is_refused_line_by_line_and_changes_nothing(api) -> None:  # type: ignore[no-untyped-def]
    bad = AE_PLAN.replace("{to: 1.0, rate: 0.05}", "{to: 0.4, rate: 0.05}")
    put = await api.client.put(f"{V1}/plans/ae-2027", content=bad, headers=YAML)
    assert put.status_code == 422
    error = put.json()["error"]
    assert error["details"] == [{"line": 11, "field": "tiers[1].to",
                                 "message": "must be greater than the tier before's (0.5)"}]
    assert error["message"].startswith("line 11: tiers[1].to")
    other = await api.client.put(f"{V1}/plans/other", content=AE_PLAN, headers=YAML)
    assert other.status_code == 422
    assert other.json()["error"]["details"][0]["field"] == "key"
    broken = await api.client.put(f"{V1}/plans/ae-2027", content="tiers: [1, 2", headers=YAML)
    assert broken.status_code == 422 and broken.json()["error"]["details"][0]["line"] == 1
    wrong_type = await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN,
                                      headers={"Content-Type": "text/csv"})
    assert wrong_type.status_code == 415
    assert (await api.client.get(f"{V1}/plans")).json()["data"] == []


async def test_statements_as_json_csv_and_xlsx(api) -> None:  # type: ignore[no-untyped-def]
    await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN, headers=YAML)
    body = (await api.client.get(f"{V1}/statements", params={"period": "2027-Q1"})).json()
    ann = next(s for s in body["data"] if s["email"] == "ann@example.com")
    # 40,000 x 2 % + (10,000 x 2 % + 50,000 x 5 %)
    assert [line["commission"] for line in ann["lines"]] == [800, 2700]
    assert (ann["attainment"], ann["payout"]) == (1, 3500)
    text = (await api.client.get(f"{V1}/statements", params={
        "period": "2027-Q1", "person": "ann@example.com", "format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["deal_remote_id"], r["commission"]) for r in rows] == [
        ("deal", "d1", "800.00"), ("deal", "d2", "2700.00"), ("payout", "", "3500.00")]
    xlsx = await api.client.get(f"{V1}/statements", params={"period": "2027-Q1",
                                                            "format": "xlsx"})
    import openpyxl  # not at collection (api.listing imports it when writing a workbook)

    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "person_id" and len(values) == 1 + 3 + 1  # Ann's 3 rows, Bob's 1


async def test_names_that_look_like_formulas_stay_text(api) -> None:  # type: ignore[no-untyped-def]
    c = api.app.state.test_company
    upsert(api.engine, c.crm_a, "deals", [deal("d3", "10", date(2027, 3, 1))])
    set_deal(api.engine, "d3", name='=HYPERLINK("http://evil","x")')
    await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN, headers=YAML)
    text = (await api.client.get(f"{V1}/statements", params={
        "period": "2027-Q1", "format": "csv"})).text
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


async def test_preview_and_lock(api) -> None:  # type: ignore[no-untyped-def]
    await api.client.put(f"{V1}/plans/ae-2027", content=AE_PLAN, headers=YAML)
    shown = await api.client.post(f"{V1}/plans/ae-2027/preview", params={"period": "2027-Q1"},
                                  content=AE_PLAN.replace("rate: 0.08", "rate: 0.1")
                                  .replace("to: 1.0, rate: 0.05", "to: 1.0, rate: 0.06"),
                                  headers=YAML)
    assert shown.status_code == 200, shown.text
    ann = next(r for r in shown.json()["data"] if r["email"] == "ann@example.com")
    assert (ann["old_payout"], ann["new_payout"], ann["difference"]) == (3500, 4000, 500)
    month = await api.client.post(f"{V1}/plans/ae-2027/preview", params={"period": "2027-01"},
                                  content=AE_PLAN, headers=YAML)
    assert month.status_code == 422 and "pays per quarter" in month.text
    locked = await api.client.post(f"{V1}/periods/2027-Q1/lock")
    assert locked.status_code == 200 and locked.json()["statements"] == 2
    assert (await api.client.post(f"{V1}/periods/2027-Q1/lock")).status_code == 409
    assert (await api.client.post(f"{V1}/periods/2027-Q9/lock")).status_code == 422
    again = (await api.client.get(f"{V1}/statements", params={"period": "2027-Q1"})).json()
    assert all(s["locked"] for s in again["data"])
    nobody = await api.client.get(f"{V1}/statements", params={"period": "2027-Q1",
                                                               "person": "zed@example.com"})
    assert nobody.status_code == 404
