"""The Salesforce sandbox's read API: SOQL query and queryAll with query cursors (§2),
limits (§6), describe (§3), getDeleted (§4) and retrieving one record
(docs/vendors/salesforce.md, cited as §n); and Lightning's record pages (§10)."""

import re
from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from connectors.salesforce.sandbox.errors import SfError
from connectors.salesforce.sandbox.soql import (
    Condition,
    SoqlError,
    bounds,
    compile_query,
    parse,
    sort_rows,
)
from connectors.salesforce.sandbox.state import SalesforceState
from connectors.salesforce.sandbox.wire import json_value, record_id, to_json
from connectors.salesforce.wire import (
    BATCH_MAX,
    BATCH_MIN,
    INVALID_REPLICATION_DATE,
    MALFORMED_QUERY,
    NOT_FOUND,
    QUERY_OPTIONS_HEADER,
    QUERY_TIMEOUT,
    RECYCLE_BIN_DAYS,
    parse_datetime,
)
from connectors.sandbox.dataset import Deletion

_BATCH = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


def batch_size(request: Request) -> int:
    """§2: Sforce-Query-Options batchSize, 200 to 2,000 (default 2,000)."""
    found = _BATCH.search(request.headers.get(QUERY_OPTIONS_HEADER, ""))
    return BATCH_MAX if found is None else max(BATCH_MIN, min(BATCH_MAX, int(found.group(1))))


async def query(request: Request, state: SalesforceState, user_id: str) -> dict[str, Any]:
    return _run(request, state, user_id, deleted=False)


async def query_all(request: Request, state: SalesforceState, user_id: str) -> dict[str, Any]:
    return _run(request, state, user_id, deleted=True)


def _run(request: Request, state: SalesforceState, user_id: str, *,
         deleted: bool) -> dict[str, Any]:
    text = request.query_params.get("q")
    if not text:
        raise SfError(400, MALFORMED_QUERY, "A query string has to be specified")
    soql = parse(text)
    object_name = state.object_name(soql.object_name)
    schema = state.schema(object_name)
    fields, predicate = compile_query(soql, schema)
    rows = [r for r in _candidates(state, object_name, soql.where)
            if (deleted or not r.get("IsDeleted")) and predicate(r)]
    if state.query_timeout_rows is not None and len(rows) > state.query_timeout_rows:
        state.harness.served[QUERY_TIMEOUT] += 1
        raise SfError(400, QUERY_TIMEOUT, "Your query request was running for too long.")
    rows = sort_rows(rows, soql.order, schema, object_name)[soql.offset:]
    if soql.limit is not None:
        rows = rows[:soql.limit]
    if soql.count:
        return {"totalSize": len(rows), "done": True, "records": []}
    version = request.path_params["version"]
    records = [to_json(object_name, r, fields, version) for r in rows]
    batch = batch_size(request)
    if len(records) <= batch:
        return {"totalSize": len(records), "done": True, "records": records}
    locator = state.open_cursor(records, batch, user_id)
    return _page(state, version, locator, 0, deleted)


def _candidates(state: SalesforceState, object_name: str,
                where: Condition | None) -> list[dict[str, Any]]:
    """The rows a query must test: with SystemModstamp bounds at the top of its WHERE, only
    those in range (an index, as Salesforce keeps on SystemModstamp, §4); the predicate
    still decides."""
    rows = state.rows(object_name)
    if "SystemModstamp" not in state.schema(object_name):
        return rows
    low, high = bounds(where, "SystemModstamp")
    if not isinstance(low, datetime) and not isinstance(high, datetime):
        return rows
    keys, ordered = state.index(object_name, rows)
    start = bisect_left(keys, low) if isinstance(low, datetime) else 0
    stop = bisect_right(keys, high) if isinstance(high, datetime) else len(keys)
    return ordered[start:stop]


def _page(state: SalesforceState, version: str, locator: str, offset: int,
          deleted: bool) -> dict[str, Any]:
    cursor = state.cursors[locator]
    end = offset + cursor.batch
    body: dict[str, Any] = {"totalSize": len(cursor.records), "done": end >= len(cursor.records),
                            "records": cursor.records[offset:end]}
    if end < len(cursor.records):  # §2: a relative URL, under the same resource
        resource = "queryAll" if deleted else "query"
        body["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{locator}-{end}"
    else:
        del state.cursors[locator]
    return body


async def more(request: Request, state: SalesforceState, user_id: str) -> dict[str, Any]:
    """GET .../query/{locator}-{offset}: the next batch of an open cursor (§2)."""
    locator, _, offset = str(request.path_params["locator"]).rpartition("-")
    if not offset.isdigit():
        raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    cursor = state.cursor(locator, user_id)
    if int(offset) >= len(cursor.records):
        raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(state, request.path_params["version"], locator, int(offset),
                 request.url.path.split("/")[4] == "queryAll")


async def limits(_request: Request, state: SalesforceState, _user_id: str) -> dict[str, Any]:
    """§6: the org's allocations; DailyApiRequests counts this call too."""
    used, maximum = state.usage
    return {"DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - used)},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 5, "Remaining": 5}}


async def describe(request: Request, state: SalesforceState, _user_id: str) -> dict[str, Any]:
    """§3: the object's fields (name, type), and what may be done with it."""
    name = _object(state, request)
    writable = name == "ForecastingQuota"
    types = {"id": "id", "string": "string", "boolean": "boolean", "datetime": "datetime",
             "date": "date", "number": "double"}
    fields = [{"name": f, "type": "currency" if f == "Amount" else
               "picklist" if f in ("StageName", "CurrencyIsoCode", "Industry") else types[k],
               "nillable": f not in ("Id", "Name", "IsDeleted")}
              for f, k in state.schema(name).items()]
    return {"name": name, "label": name, "queryable": True, "createable": writable,
            "updateable": writable, "deletable": writable, "replicateable": True,
            "fields": fields}


async def get_deleted(request: Request, state: SalesforceState, _user_id: str) -> dict[str, Any]:
    """§4 getDeleted: the deletions between start and end, at most 15 days back."""
    name = _object(state, request)
    try:
        start = parse_datetime(request.query_params["start"])
        end = parse_datetime(request.query_params["end"])
    except (KeyError, ValueError):
        raise SfError(400, MALFORMED_QUERY, "start and end must be dateTimes "
                                            "(e.g. 2026-05-05T00:00:00+00:00)") from None
    now = state.now()
    earliest = now - timedelta(days=RECYCLE_BIN_DAYS)
    if end <= start:
        raise SfError(400, INVALID_REPLICATION_DATE, "startDate must chronologically "
                                                     "precede endDate")
    if start < earliest - timedelta(minutes=1):
        raise SfError(400, INVALID_REPLICATION_DATE, "startDate cannot be more than "
                                                     f"{RECYCLE_BIN_DAYS} days ago")
    entity = {"Opportunity": "deals", "Account": "accounts"}.get(name)
    found: list[Deletion] = [d for d in state.company.deletions
                             if d.entity == entity and start <= d.deleted_at <= end]
    covered = min(end, now).replace(second=0)
    return {"deletedRecords": [{"id": record_id(d.entity, d.id), "deletedDate":
                                json_value(d.deleted_at)} for d in found],
            "earliestDateAvailable": json_value(earliest.replace(second=0)),
            "latestDateCovered": json_value(covered)}


async def retrieve(request: Request, state: SalesforceState, _user_id: str) -> dict[str, Any]:
    """GET /sobjects/{type}/{id}: one live record with every field."""
    name = _object(state, request)
    wanted = request.path_params["id"]
    for row in state.rows(name):
        if row["Id"] == wanted or row["Id"][:15] == wanted:
            if row.get("IsDeleted"):
                raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
            return to_json(name, row, list(state.schema(name)), request.path_params["version"])
    raise SfError(404, NOT_FOUND, "The requested resource does not exist")


def _object(state: SalesforceState, request: Request) -> str:
    try:
        return state.object_name(request.path_params["object"])
    except SoqlError:
        raise SfError(404, NOT_FOUND, "The requested resource does not exist") from None


async def record_page(request: Request) -> Response:
    """GET /lightning/r/Opportunity/{id}/view (§10): the opportunity's page in Lightning
    Experience, so the dashboard's links lead somewhere. Real Salesforce asks the browser to
    sign in first; the sandbox shows a plain page with the record's name, stage and amount."""
    state: SalesforceState = request.app.state.salesforce
    wanted = str(request.path_params["id"])
    row = next((r for r in state.rows("Opportunity") if not r.get("IsDeleted")
                and wanted in (r["Id"], r["Id"][:15])), None)
    if row is None:
        return HTMLResponse("<!doctype html><title>Salesforce</title><p>Record not found.",
                            status_code=404)
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8><title>"
        f"{escape(row['Name'])} | Opportunity | Salesforce (sandbox)</title></head><body>"
        f"<h1>{escape(row['Name'])}</h1><dl><dt>Opportunity ID</dt><dd>{row['Id']}</dd>"
        f"<dt>Stage</dt><dd>{escape(row['StageName'])}</dd><dt>Amount</dt>"
        f"<dd>{row['Amount']} {escape(str(row.get('CurrencyIsoCode') or ''))}</dd>"
        f"<dt>Close Date</dt><dd>{row['CloseDate'].isoformat()}</dd></dl></body></html>")
