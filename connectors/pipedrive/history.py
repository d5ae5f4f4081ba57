"""Pipedrive's stage history (docs/vendors/pipedrive.md §11): the `stage_id` changes in a
deal's updates, `GET /v1/deals/{id}/flow?items=dealChange`, paged by start/limit like
every v1 list (§2). One request a page per deal; ApiClient caps the requests in flight
and the client keeps them within the rate budgets (§6). Stage ids become the stage names
the deals stream gives (mapping.stage_changes).
"""

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connectors.pipedrive import mapping
from connectors.pipedrive.client import PipedriveError
from connectors.pipedrive.wire import FLOW_ITEMS, MAX_LIMIT, V1
from core.records import StageChangeRecord

if TYPE_CHECKING:
    from connectors.pipedrive.client import PipedriveClient

BATCH = 50  # deals per read_stage_history call
MAX_PAGES = 20  # 10,000 changes of one deal: past that, the rest is left unread (logged)


async def read(client: "PipedriveClient", deal_ids: Sequence[str]) -> list[StageChangeRecord]:
    """Every stage move of `deal_ids`; a deal Pipedrive no longer has gives none. The stage
    names come from the company's metadata, read again first if the flows name a stage
    the kept copy does not know (PipedriveClient.meta_for)."""
    flows = await asyncio.gather(*(_flow(client, str(i)) for i in deal_ids))
    named = [{"stage_id": value} for _, rows, current in flows
             for value in (current, *_stage_values(rows)) if value not in (None, "")]
    stages = (await client.meta_for(named)).stages
    return [change for deal_id, rows, current in flows
            for change in mapping.stage_changes(deal_id, rows, stages, current)]


def _stage_values(rows: list[dict[str, Any]]) -> list[Any]:
    """The stage ids the `stage_id` changes of a flow move from and to."""
    values = []
    for row in rows:
        data = row.get("data")
        change: dict[str, Any] = data if isinstance(data, dict) else row
        if change.get("field_key") == "stage_id":
            values += [change.get("old_value"), change.get("new_value")]
    return values


async def _flow(client: "PipedriveClient", deal_id: str,
                ) -> tuple[str, list[dict[str, Any]], Any]:
    """(deal id, its flow's rows, its current stage id)."""
    if not deal_id.isdigit():
        return deal_id, [], None
    rows: list[dict[str, Any]] = []
    current: Any = None
    start = 0
    for _ in range(MAX_PAGES):
        try:
            body = await client.get(f"{V1}/deals/{deal_id}/flow",
                                    {"start": start, "limit": MAX_LIMIT, "items": FLOW_ITEMS})
        except PipedriveError as exc:
            if exc.status in (404, 410):  # deleted for good: no history to read
                return deal_id, [], None
            raise
        rows += [r for r in body.get("data") or [] if isinstance(r, dict)]
        related = ((body.get("related_objects") or {}).get("deal") or {}).get(deal_id) or {}
        current = related.get("stage_id", current)
        pagination = (body.get("additional_data") or {}).get("pagination") or {}
        if not pagination.get("more_items_in_collection"):
            break
        start = int(pagination.get("next_start") or start + MAX_LIMIT)
    return deal_id, rows, current
