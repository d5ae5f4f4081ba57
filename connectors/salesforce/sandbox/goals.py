"""The Salesforce sandbox's ForecastingQuota writes, with the object's rules (Collaborative
Forecasts on, Manage Quotas, never one's own quota, StartDate the first day of a forecast
period, one quota per owner, period and forecast type), through single-record sObject
calls and composite sObject collections (docs/vendors/salesforce.md §7, §8)."""

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request

from connectors.salesforce.sandbox.errors import SfError
from connectors.salesforce.sandbox.soql import SoqlError
from connectors.salesforce.sandbox.state import SalesforceState
from connectors.salesforce.sandbox.wire import PREFIX, sf_id
from connectors.salesforce.wire import (
    COLLECTION_MAX,
    FIELD_INTEGRITY,
    INSUFFICIENT_ACCESS,
    NOT_FOUND,
    parse_date,
)

QUOTA = "ForecastingQuota"
CREATE_FIELDS = frozenset({"QuotaOwnerId", "StartDate", "QuotaAmount", "QuotaQuantity",
                           "IsAmount", "IsQuantity", "ForecastingTypeId", "CurrencyIsoCode",
                           "ProductFamily"})
# §8: QuotaOwnerId and ForecastingTypeId are set on create only (their properties list
# Create, not Update); IsAmount/IsQuantity follow the type.
UPDATE_FIELDS = frozenset({"QuotaAmount", "QuotaQuantity", "CurrencyIsoCode", "StartDate"})
REQUIRED = ("QuotaOwnerId", "StartDate", "ForecastingTypeId")


def _writable(state: SalesforceState, object_name: str) -> None:
    try:
        found = state.object_name(object_name)
    except SoqlError:
        raise SfError(404, NOT_FOUND, "The requested resource does not exist") from None
    if found != QUOTA:  # the sandbox's records change through /_sandbox, as a user would
        raise SfError(400, INSUFFICIENT_ACCESS, f"the sandbox does not write {found} records "
                                                "through the API; use /_sandbox")
    if not state.manage_quotas:  # §8
        raise SfError(400, INSUFFICIENT_ACCESS, "insufficient access rights on object id: "
                                                "Manage Quotas permission required")


def _number(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SfError(400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required "
                                                              f"type: {value}", [name])
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SfError(400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required "
                                                              f"type: {value}", [name]) from None
    if not number.is_finite() or number < 0:
        raise SfError(400, FIELD_INTEGRITY, f"{name}: must be zero or more", [name])
    return number


def _check(state: SalesforceState, user_id: str, values: dict[str, Any],
           existing: dict[str, Any] | None) -> dict[str, Any]:
    """The quota row after applying `values` (a create when `existing` is None)."""
    allowed = CREATE_FIELDS if existing is None else UPDATE_FIELDS
    schema = state.schema(QUOTA)
    unknown = [k for k in values if k not in schema]
    if unknown:
        raise SfError(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of "
                                            f"type {QUOTA}", unknown)
    refused = sorted(k for k in values if k not in allowed)
    if refused:
        raise SfError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                      f"Unable to create/update fields: {', '.join(refused)}. Please check the "
                      "security settings of this field and verify that it is read/write for "
                      "your profile or permission set.", refused)
    row: dict[str, Any] = dict(existing) if existing else dict.fromkeys(schema)
    row.update(values)
    missing = [k for k in REQUIRED if not row.get(k)]
    if missing:
        raise SfError(400, "REQUIRED_FIELD_MISSING",
                      f"Required fields are missing: [{', '.join(missing)}]", missing)
    owner = next((u for u in state.rows("User") if u["Id"] == row["QuotaOwnerId"]), None)
    if owner is None or not owner["IsActive"]:
        raise SfError(400, "INVALID_CROSS_REFERENCE_KEY", "Quota Owner ID: invalid cross "
                                                          "reference id", ["QuotaOwnerId"])
    if row["QuotaOwnerId"] == user_id:  # §8: never one's own quota (guess: wording)
        raise SfError(400, INSUFFICIENT_ACCESS, "You can't edit your own quota. Ask your "
                                                "manager or an admin to set it.",
                      ["QuotaOwnerId"])
    _period(state, row)
    _amount(state, row)
    if "CurrencyIsoCode" in schema:
        code = row.get("CurrencyIsoCode") or state.company.home_currency  # §8 default
        if code not in {c["IsoCode"] for c in state.rows("CurrencyType") if c["IsActive"]}:
            raise SfError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                          f"Currency ISO Code: bad value for restricted picklist field: {code}",
                          ["CurrencyIsoCode"])
        row["CurrencyIsoCode"] = code
    twin = next((q for q in state.quotas.values() if q["Id"] != row.get("Id")
                 and (q["QuotaOwnerId"], q["StartDate"], q["ForecastingTypeId"],
                      q.get("ProductFamily")) == (row["QuotaOwnerId"], row["StartDate"],
                                                  row["ForecastingTypeId"],
                                                  row.get("ProductFamily"))), None)
    if twin is not None:  # §8: one quota per owner, period and type
        raise SfError(400, "DUPLICATE_VALUE", f"duplicate value found: a quota for this owner "
                                              f"and period exists with id: {twin['Id']}")
    now = state.now()
    if existing is None:
        row["Id"] = sf_id(PREFIX[QUOTA], 1 + max((int(q[6:15]) for q in state.quotas),
                                                 default=0))
        row["CreatedDate"], row["CreatedById"] = now, user_id
    row["LastModifiedDate"], row["SystemModstamp"], row["LastModifiedById"] = now, now, user_id
    return row


def _period(state: SalesforceState, row: dict[str, Any]) -> None:
    """§8: StartDate begins a forecast period; PeriodId is derived from it."""
    try:
        start = parse_date(str(row["StartDate"]))
    except ValueError:
        raise SfError(400, "INVALID_TYPE_ON_FIELD_IN_RECORD", "Start Date: value not of "
                                                              "required type", ["StartDate"]) \
            from None
    period = next((p for p in state.rows("Period") if p["Type"] == state.forecast_period
                   and p["StartDate"] == start), None)
    if period is None:  # §8 (guess: code and wording)
        raise SfError(400, FIELD_INTEGRITY, f"Start Date: {start} is not the first day of a "
                                            f"forecast period ({state.forecast_period})",
                      ["StartDate"])
    row["StartDate"], row["PeriodId"] = start, period["Id"]


def _amount(state: SalesforceState, row: dict[str, Any]) -> None:
    """§8: an amount forecast type takes QuotaAmount (IsAmount), a quantity one
    QuotaQuantity (IsQuantity)."""
    kind = next((t for t in state.rows("ForecastingType")
                 if t["Id"] == row["ForecastingTypeId"] and t["IsActive"]), None)
    if kind is None:
        raise SfError(400, "INVALID_CROSS_REFERENCE_KEY", "Forecasting Type ID: invalid cross "
                                                          "reference id", ["ForecastingTypeId"])
    if kind["IsAmount"]:
        if row.get("QuotaAmount") is None:
            raise SfError(400, FIELD_INTEGRITY, "Quota Amount is required for an amount "
                                                "forecast type", ["QuotaAmount"])
        row["QuotaAmount"] = _number(row["QuotaAmount"], "QuotaAmount")
        row["IsAmount"], row["IsQuantity"], row["QuotaQuantity"] = True, False, None
    else:
        if row.get("QuotaQuantity") is None:
            raise SfError(400, FIELD_INTEGRITY, "Quota Quantity is required for a quantity "
                                                "forecast type", ["QuotaQuantity"])
        row["QuotaQuantity"] = _number(row["QuotaQuantity"], "QuotaQuantity")
        row["IsAmount"], row["IsQuantity"], row["QuotaAmount"] = False, True, None


def _existing(state: SalesforceState, record_id: str) -> dict[str, Any]:
    found = state.quotas.get(record_id) or next(
        (q for q in state.quotas.values() if q["Id"][:15] == record_id), None)
    if found is None:
        raise SfError(404, NOT_FOUND,
                      "The requested resource does not exist")
    return found


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise SfError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None


def _fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "Expecting a JSON object of field values")
    return {k: v for k, v in body.items() if k != "attributes"}


# ---- single records (§7) ------------------------------------------------------------------------
async def create(request: Request, state: SalesforceState, user_id: str) -> dict[str, Any]:
    _writable(state, request.path_params["object"])
    row = _check(state, user_id, _fields(await _json(request)), None)
    state.quotas[row["Id"]] = row
    return {"id": row["Id"], "success": True, "errors": []}


async def update(request: Request, state: SalesforceState, user_id: str) -> None:
    _writable(state, request.path_params["object"])
    existing = _existing(state, request.path_params["id"])
    row = _check(state, user_id, _fields(await _json(request)), existing)
    state.quotas[row["Id"]] = row


async def delete(request: Request, state: SalesforceState, user_id: str) -> None:
    _writable(state, request.path_params["object"])
    existing = _existing(state, request.path_params["id"])
    _own(existing, user_id)
    del state.quotas[existing["Id"]]


def _own(row: dict[str, Any], user_id: str) -> None:
    if row["QuotaOwnerId"] == user_id:
        raise SfError(400, INSUFFICIENT_ACCESS, "You can't edit your own quota.")


# ---- composite sObject collections (§7) ----------------------------------------------------------
def _result(record_id: str | None, error: SfError | None) -> dict[str, Any]:
    if error is None:
        return {"id": record_id, "success": True, "errors": []}
    return {"success": False, "errors": [{"statusCode": error.code, "message": error.message,
                                          "fields": error.fields or []}]}


def _records(body: Any) -> tuple[list[Any], bool]:
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SfError(400, "JSON_PARSER_ERROR", "Expecting {\"records\": [...]}")
    if len(body["records"]) > COLLECTION_MAX:
        raise SfError(400, "EXCEEDED_ID_LIMIT", f"record count exceeds {COLLECTION_MAX}")
    return body["records"], bool(body.get("allOrNone", False))


async def collection_create(request: Request, state: SalesforceState,
                            user_id: str) -> list[dict[str, Any]]:
    records, all_or_none = _records(await _json(request))
    return _apply(state, user_id, records, all_or_none, update=False)


async def collection_update(request: Request, state: SalesforceState,
                            user_id: str) -> list[dict[str, Any]]:
    records, all_or_none = _records(await _json(request))
    return _apply(state, user_id, records, all_or_none, update=True)


def _apply(state: SalesforceState, user_id: str, records: list[Any], all_or_none: bool, *,
           update: bool) -> list[dict[str, Any]]:
    staged: list[tuple[dict[str, Any] | None, SfError | None]] = []
    for record in records:
        try:
            if not isinstance(record, dict) or not isinstance(record.get("attributes"), dict):
                raise SfError(400, "INVALID_FIELD", "each record needs attributes.type")
            _writable(state, str(record["attributes"].get("type") or ""))
            fields = {k: v for k, v in _fields(record).items() if k != "id"}
            existing = _existing(state, str(record.get("id") or "")) if update else None
            checked = _check(state, user_id, fields, existing)
            if not update:
                state.quotas[checked["Id"]] = checked  # visible to the next record's checks
            staged.append((checked, None))
        except SfError as error:
            staged.append((None, error))
    failed = any(e is not None for _, e in staged)
    if all_or_none and failed:
        for made, _ in staged:
            if made is not None and not update:
                state.quotas.pop(made["Id"], None)
        rolled = SfError(400, "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                         "Record rolled back because not all records were valid and the "
                         "request was using AllOrNone header")
        return [_result(None, e or rolled) for _, e in staged]
    for changed, _ in staged:
        if changed is not None and update:
            state.quotas[changed["Id"]] = changed
    return [_result(done["Id"] if done else None, e) for done, e in staged]


async def collection_delete(request: Request, state: SalesforceState,
                            user_id: str) -> list[dict[str, Any]]:
    ids = [i for i in request.query_params.get("ids", "").split(",") if i]
    if not ids or len(ids) > COLLECTION_MAX:
        raise SfError(400, "EXCEEDED_ID_LIMIT", f"give 1 to {COLLECTION_MAX} ids")
    results = []
    for record_id in ids:
        try:
            if not state.manage_quotas:
                raise SfError(400, INSUFFICIENT_ACCESS, "insufficient access rights on object "
                                                        "id: Manage Quotas permission required")
            existing = _existing(state, record_id)
            _own(existing, user_id)
            del state.quotas[existing["Id"]]
            results.append({"id": record_id, "success": True, "errors": []})
        except SfError as error:
            results.append({"id": record_id, **_result(None, error)})
    return results
