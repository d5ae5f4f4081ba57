"""Excel and China: CSV with a BOM for Excel, .xlsx exports of lists and metrics, goal imports
from GB18030/GBK CSV and from .xlsx, and the API docs pages served without a CDN. On SQLite
and PostgreSQL (fixture `engine`); the cases that only read share the module's seeded store
(`shared_api`, tests/conftest.py)."""

import csv
import io
import re
import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core import store
from core.db import session_scope
from core.models import Connection
from core.records import DealRecord, UserRecord
from tests.api_support import running_api
from tests.shared_store import SHARED_LOOP

ROOT = Path(__file__).resolve().parents[2]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ZHANG = "张伟@销售.cn"
Q1 = {"start": "2025-01-01", "end": "2025-03-31"}
DEAL_NAMES = ["华为云 续约", "=HYPERLINK(\"http://evil.example\")", "bell\x07 deal"]


async def seeded(engine):
    """Two users and three won deals of a CNY connection, and the app: the test's own (api)
    or the module's (seeded_module in tests/conftest.py, for shared_api)."""
    with session_scope(engine) as session:
        conn = Connection(provider="zoho", name="中国区", home_currency="CNY")
        session.add(conn)
        session.flush()
        store.upsert_records(session, stream="users", connection_id=conn.id, records=[
            UserRecord("u1", "张伟", ZHANG), UserRecord("u2", "王芳", "wang.fang@x.cn")])
        store.upsert_records(session, stream="deals", connection_id=conn.id, records=[
            DealRecord(f"d{i}", name, amount=Decimal("-1500.50"), currency="CNY",
                       amount_home=Decimal("-1500.50"), status="won",
                       close_date=date(2025, 2, 1), owner_email=ZHANG,
                       remote_created_at=datetime(2025, 1, 22, 12, tzinfo=UTC))
            for i, name in enumerate(DEAL_NAMES)])
    async with running_api(engine) as api:
        yield api


@pytest.fixture
async def api(engine):
    async for api in seeded(engine):
        yield api


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def sheet_rows(content: bytes) -> list[list[object]]:
    from openpyxl import load_workbook  # (as api.listing does: not at collection)

    book = load_workbook(io.BytesIO(content))
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


@SHARED_LOOP
async def test_excel_csv_is_the_csv_after_a_utf8_bom(shared_api):
    plain = await shared_api.get("/api/v1/deals", params={"format": "csv"})
    excel = await shared_api.get("/api/v1/deals", params={"format": "excel-csv"})
    assert excel.status_code == 200, excel.text
    assert excel.headers["content-type"].startswith("text/csv")
    assert 'filename="deals.csv"' in excel.headers["content-disposition"]
    assert excel.content.startswith(b"\xef\xbb\xbf")
    assert not plain.content.startswith(b"\xef\xbb\xbf")
    assert excel.content[3:] == plain.content
    rows = parse_csv(excel.content.decode("utf-8-sig"))
    names = {r[rows[0].index("name")] for r in rows[1:]}
    assert "华为云 续约" in names
    assert "'=HYPERLINK(\"http://evil.example\")" in names  # neutralized, as in CSV
    summary = await shared_api.get("/api/v1/metrics/summary",
                                   params={**Q1, "group_by": "owner", "format": "excel-csv"})
    assert summary.status_code == 200, summary.text
    assert summary.content.startswith(b"\xef\xbb\xbf")
    owners = parse_csv(summary.content.decode("utf-8-sig"))
    assert "张伟" in [r[owners[0].index("owner_name")] for r in owners[1:]]


@SHARED_LOOP
async def test_xlsx_list_has_the_csv_columns_typed_and_neutralized(shared_api):
    answer = await shared_api.get("/api/v1/deals", params={"format": "xlsx"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    assert 'filename="deals.xlsx"' in answer.headers["content-disposition"]
    rows = sheet_rows(answer.content)
    header = parse_csv((await shared_api.get("/api/v1/deals", params={"format": "csv"})).text)[0]
    assert rows[0] == header
    data = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert len(data) == len(DEAL_NAMES)
    names = {d["name"] for d in data}
    assert names == {"华为云 续约", "'=HYPERLINK(\"http://evil.example\")", "bell deal"}
    assert all(d["amount"] == -1500.5 for d in data)  # a number, not text
    assert all(d["close_date"] == datetime(2025, 2, 1) for d in data)  # a date cell
    assert all(d["remote_created_at"] == "2025-01-22T12:00:00Z" for d in data)
    assert {d["owner_email"] for d in data} == {ZHANG}
    # no cell is a formula
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(answer.content))
    assert all(c.data_type != "f" for row in book.worksheets[0].iter_rows() for c in row)


@SHARED_LOOP
async def test_xlsx_metrics(shared_api):
    summary = await shared_api.get("/api/v1/metrics/summary",
                                   params={**Q1, "group_by": "owner", "format": "xlsx"})
    assert summary.status_code == 200, summary.text
    assert summary.headers["content-type"] == XLSX
    rows = sheet_rows(summary.content)
    header = rows[0]
    by_name = {r[header.index("owner_name")]: r for r in rows[1:]}
    assert by_name["张伟"][header.index("bookings")] == -4501.5
    assert by_name["张伟"][header.index("deals_won")] == 3
    assert rows[-1][header.index("row_type")] == "total"
    series = await shared_api.get("/api/v1/metrics/timeseries", params={
        **Q1, "metric": "bookings", "interval": "month", "format": "xlsx"})
    assert series.status_code == 200, series.text
    values = sheet_rows(series.content)
    assert values[0][:2] == ["period_start", "period_end"]
    assert [r[-1] for r in values[1:]] == [0, -4501.5, 0]
    pipeline = await shared_api.get("/api/v1/metrics/pipeline", params={"format": "xlsx"})
    assert pipeline.status_code == 200 and sheet_rows(pipeline.content)[0]


@SHARED_LOOP
async def test_an_unknown_format_is_a_422(shared_api):
    answer = await shared_api.get("/api/v1/deals", params={"format": "xls"})
    assert answer.status_code == 422
    assert answer.content.startswith(b"{")


GOALS_CSV = ("owner_email,metric,period_start,period_end,target,currency\n"
             f"{ZHANG},bookings,2025-01-01,2025-03-31,\"120,000\",CNY\n")


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8-sig", "utf-8"])
async def test_goal_import_from_chinese_csv(api, encoding):
    body = GOALS_CSV.encode(encoding)
    answer = await api.client.post("/api/v1/goals/import", content=body,
                                   headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 1
    goals = (await api.get("/api/v1/goals")).json()["data"]
    assert [(g["owner_name"], g["owner_email"], g["target"]) for g in goals] == [
        ("张伟", ZHANG, 120000)]


@SHARED_LOOP
async def test_gbk_import_reports_bad_lines_and_writes_nothing(shared_api):
    text = GOALS_CSV + "wang.fang@x.cn,业绩,2025-01-01,2025-03-31,5,CNY\n"
    answer = await shared_api.client.post("/api/v1/goals/import", content=text.encode("gbk"),
                                          headers={"Content-Type": "text/csv"})
    assert answer.status_code == 422, answer.text
    assert [(r["line"], r["field"]) for r in answer.json()["error"]["rows"]] == [
        (3, "metric")]
    assert (await shared_api.get("/api/v1/goals")).json()["data"] == []


def workbook(*rows: list[object]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HEADER = ["owner_email", "metric", "period_start", "period_end", "target", "currency"]


async def test_goal_import_from_xlsx(api):
    good = workbook(HEADER,
                    [ZHANG, "bookings", date(2025, 1, 1), date(2025, 3, 31), 120000, "CNY"],
                    ["wang.fang@x.cn", "deals_won", "2025-01-01", "2025-03-31", 4])
    answer = await api.client.post("/api/v1/goals/import",
                                   files={"file": ("目标.xlsx", good, XLSX)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 2
    goals = {g["owner_name"]: g for g in (await api.get("/api/v1/goals")).json()["data"]}
    assert goals["张伟"]["target"] == 120000 and goals["张伟"]["period_start"] == "2025-01-01"
    assert goals["王芳"]["metric"] == "deals_won" and goals["王芳"]["target"] == 4
    # the raw body works too
    again = await api.client.post("/api/v1/goals/import", content=good,
                                  headers={"Content-Type": XLSX})
    assert again.status_code == 200 and again.json()["unchanged"] == 2, again.text


@SHARED_LOOP
async def test_xlsx_import_reports_bad_rows_by_line(shared_api):
    bad = workbook(HEADER,
                   [ZHANG, "bookings", date(2025, 1, 1), date(2025, 3, 31), 100, "CNY"],
                   ["wang.fang@x.cn", "bookings", "2025-01-01", "2025-03-31", "很多", "CNY"],
                   [],
                   ["wang.fang@x.cn", "bookings", "2025-13-01", "2025-03-31", 5, "CNY"])
    answer = await shared_api.client.post("/api/v1/goals/import",
                                          files={"file": ("goals.xlsx", bad, XLSX)})
    assert answer.status_code == 422, answer.text
    assert [(r["line"], r["field"]) for r in answer.json()["error"]["rows"]] == [
        (3, "target"), (5, "period_start")]
    assert (await shared_api.get("/api/v1/goals")).json()["data"] == []


@SHARED_LOOP
async def test_a_broken_workbook_or_unknown_encoding_is_a_422(shared_api):
    for body in (b"PK\x03\x04 not really a zip", "名字".encode("utf-16")):
        answer = await shared_api.client.post("/api/v1/goals/import", content=body,
                                              headers={"Content-Type": "text/csv"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["rows"][0]["line"] == 1
        assert "Traceback" not in answer.text


@SHARED_LOOP
async def test_docs_pages_use_only_local_assets(shared_api):
    for page in ("/docs", "/redoc"):
        html = (await shared_api.client.get(page, headers={"Authorization": ""})).text
        assert "<html" in html.lower()
        assert "http://" not in html and "https://" not in html, page  # no CDN, no fonts
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assets += re.findall(r"""url: ?['"]([^'"]+)['"]""", html)
        assert assets, page
        for url in assets:
            assert url.startswith("/"), url
            answer = await shared_api.client.get(url, headers={"Authorization": ""})
            assert answer.status_code == 200, url
            assert len(answer.content) > 100, url
    js = await shared_api.client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"]
    assert (await shared_api.client.get("/static/redoc/redoc.standalone.js")).status_code == 200
    assert (await shared_api.client.get("/static/../pyproject.toml")).status_code == 404


def test_the_docs_assets_and_their_licences_ship_in_the_package():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["api"]
    shipped = {p for pattern in patterns for p in (ROOT / "api").glob(pattern)}
    static = {p for p in (ROOT / "api" / "static").rglob("*") if p.is_file()}
    assert static <= shipped
    names = {p.relative_to(ROOT / "api" / "static").as_posix() for p in static}
    assert {"swagger-ui/LICENSE", "swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css",
            "redoc/LICENSE", "redoc/redoc.standalone.js"} <= names
