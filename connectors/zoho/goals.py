"""Goal push into Zoho CRM: a custom module, written with upsert (docs/vendors/zoho.md §9).

Zoho has no goals or forecast-target API (§9), so goals live in a custom module
(`goals_module`, default Sales_Goals) with the fields below; `Goal_Key` holds
core.goals' stable key and is the upsert's duplicate-check field, so an edited goal
updates its record. Upsert takes at most 100 records per call, `trigger: []` skips
workflows, and every element of the answer carries its own result (§9); deletes go
by ids, at most 100 per call (Zoho's delete-records API: DELETE /{module}?ids=).
"""

import json
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx

from connectors.http import json_body, raise_for_transient
from connectors.zoho.client import ZohoClient, parse_response
from core.errors import ConfigError, SourceError
from core.records import GoalDeletion, GoalOut, PushResult
from core.types import PushStatus

BATCH = 100  # §9: at most 100 records per upsert call; delete takes 100 ids (guess: same)
METRIC_LABELS = {"bookings": "Bookings", "deals_won": "Deals Won"}  # the Metric picklist
FIELDS = (  # (API name, type in Zoho's module builder, what it holds)
    ("Name", "Single Line (the module's record name)", "rep, metric and period, readable"),
    ("Goal_Key", "Single Line, Do not allow duplicate values", "crmsync's goal key"),
    ("Sales_Rep", "Lookup to Users", "the rep (empty for a company goal)"),
    ("Period_Start", "Date", "first day of the period"),
    ("Period_End", "Date", "last day of the period (inclusive)"),
    ("Target_Amount", "Currency", "the target (a number of deals for Deals Won)"),
    ("Metric", "Pick List: Bookings, Deals Won", "what the target counts"),
)
NAME_LENGTH = 120  # guess: a custom module's Name is a 120-character single line


def setup_message(module: str) -> str:
    """What an admin must create when the module is missing (INVALID_MODULE)."""
    fields = "; ".join(f"{name} ({kind})" for name, kind, _ in FIELDS)
    return (f"Zoho CRM has no module with the API name {module!r} (INVALID_MODULE). Create "
            f"it in Zoho CRM: Setup > Customization > Modules and Fields > Create New Module, "
            f"API name {module}, with the fields {fields}. Or set the connection's config "
            "goals_module to the API name of the module you use for goals.")


async def push_goals(connector: ZohoClient, goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    """Upsert `goals` and delete `deletions` in the goals module, 100 per call."""
    module = connector.config.goals_module
    if goals and connector.multi_currency is None:
        await connector.check()
    results: list[PushResult] = []
    for chunk in _chunks(goals):
        body = json.dumps({"data": [record(g, bool(connector.multi_currency)) for g in chunk],
                           "duplicate_check_fields": ["Goal_Key"], "trigger": []},
                          default=_number)
        elements = await _send(
            connector, "POST", f"/{module}/upsert", _elements(module), content=body.encode(),
            headers={"Content-Type": "application/json"})
        results += [_upserted(goal, elements[i] if i < len(elements) else None)
                    for i, goal in enumerate(chunk)]
    for batch in _chunks(deletions):
        elements = await _send(
            connector, "DELETE", f"/{module}", _elements(module),
            params={"ids": ",".join(d.remote_id for d in batch), "wf_trigger": "false"})
        by_id = {str((e.get("details") or {}).get("id")): e for e in elements}
        results += [_deleted(d, by_id.get(d.remote_id) or (
            elements[i] if i < len(elements) else None)) for i, d in enumerate(batch)]
    return results


async def _send(connector: ZohoClient, method: str, path: str,
                parse: Callable[[httpx.Response], list[dict[str, Any]]],
                **kwargs: Any) -> list[dict[str, Any]]:
    """{method} {api_domain}/crm/v8{path} with the connector's auth, cap and retries."""
    url = f"{await connector.api_domain()}/crm/v8{path}"
    return await connector.api.send(method, url, parse, auth=connector.auth, **kwargs)


def record(goal: GoalOut, multi_currency: bool = False) -> dict[str, Any]:
    """The module record of a goal (§9 field names).

    In a multi-currency org every record has a `Currency` (ISO code) and its currency fields
    are in it (https://www.zoho.com/crm/developer/docs/api/v8/enable-multi-currency.html):
    a bookings target is sent with its currency (core.goals.push gives the connection's home
    currency). A one-currency org has no such field and rejects it, so it is never sent."""
    who = goal.owner_name or goal.owner_email or "Company"
    name = f"{who} - {METRIC_LABELS[goal.metric]} - {period_label(goal)}"
    currency = {"Currency": goal.currency} if multi_currency and goal.currency else {}
    return {
        "Name": name[:NAME_LENGTH],
        "Goal_Key": goal.key,
        "Sales_Rep": {"id": goal.owner_remote_id} if goal.owner_remote_id else None,
        "Period_Start": goal.period_start.isoformat(),  # §2: dates are YYYY-MM-DD
        "Period_End": goal.period_end.isoformat(),
        "Target_Amount": goal.target,
        "Metric": METRIC_LABELS[goal.metric],
        **currency,
    }


def period_label(goal: GoalOut) -> str:
    """2025-Q2, 2025-04 or 2025 for whole calendar periods, else the two dates."""
    start, end = goal.period_start, goal.period_end
    if start.day == 1 and (end + timedelta(days=1)).day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        if months == 1:
            return f"{start:%Y-%m}"
        if months == 3 and start.month % 3 == 1:
            return f"{start.year}-Q{(start.month + 2) // 3}"
        if months == 12 and start.month == 1:
            return str(start.year)
    return f"{start.isoformat()} to {end.isoformat()}"


def _number(value: Any) -> Any:
    """Decimals as JSON numbers. Targets have at most 15 significant digits (core.goals
    caps them), so a float's shortest repr is exactly the decimal's digits."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} to Zoho")


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def _elements(module: str) -> Callable[[httpx.Response], list[dict[str, Any]]]:
    """Parse a batch answer: its `data` elements, whatever the HTTP status (§9: check each
    element; partial batches may be 207, all-failed ones 400)."""

    def parse(response: httpx.Response) -> list[dict[str, Any]]:
        raise_for_transient(response)  # 429, 5xx: retried by the ApiClient
        if response.status_code == 204:
            return []
        body = json_body(response)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return [e for e in body["data"] if isinstance(e, dict)]
        if isinstance(body, dict) and body.get("code") == "INVALID_MODULE":
            raise ConfigError(setup_message(module))
        parse_response(response)  # raises AuthError, ConfigError or a SourceError naming the code
        raise SourceError(f"Zoho {module}: unexpected answer (HTTP {response.status_code})")

    return parse


def _error(element: dict[str, Any]) -> str:
    details = element.get("details") or {}
    field = details.get("api_name") if isinstance(details, dict) else None
    text = f"Zoho {element.get('code', 'ERROR')}: {element.get('message', '')}".rstrip(": ")
    return f"{text} (field {field})" if field else text


def _upserted(goal: GoalOut, element: dict[str, Any] | None) -> PushResult:
    if element is None:
        return PushResult(goal.goal_id, PushStatus.ERROR, None, "Zoho returned no result for it")
    if element.get("status") != "success":
        return PushResult(goal.goal_id, PushStatus.ERROR, None, _error(element))
    details = element.get("details") or {}
    status = PushStatus.UPDATED if element.get("action") == "update" else PushStatus.INSERTED
    return PushResult(goal.goal_id, status, str(details.get("id") or "") or None)


def _deleted(deletion: GoalDeletion, element: dict[str, Any] | None) -> PushResult:
    if element is None:
        return PushResult(deletion.goal_id, PushStatus.ERROR, deletion.remote_id,
                          "Zoho returned no result for it")
    # INVALID_DATA for an id: the record is gone already (deleted in Zoho by hand).
    if element.get("status") == "success" or element.get("code") == "INVALID_DATA":
        return PushResult(deletion.goal_id, PushStatus.DELETED, deletion.remote_id)
    return PushResult(deletion.goal_id, PushStatus.ERROR, deletion.remote_id, _error(element))
