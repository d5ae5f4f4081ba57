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
from core.records import StageChangeRecord, StageRecord

if TYPE_CHECKING:
    from connectors.pipedrive.client import PipedriveClient

BATCH = 50  # deals per read_stage_history call
MAX_PAGES = 20  # 10,000 changes of one deal: past that, the rest is left unread (logged)


async def read(client: "PipedriveClient", deal_ids: Sequence[str]) -> list[StageChangeRecord]:
    """Every stage move of `deal_ids`; a deal Pipedrive no longer has gives none."""
    stages = (await client.meta()).stages
    lists = await asyncio.gather(*(_deal(client, str(i), stages) for i in deal_ids))
    return [change for moves in lists for change in moves]


async def _deal(client: "PipedriveClient", deal_id: str,
                stages: dict[str, StageRecord]) -> list[StageChangeRecord]:
    if not deal_id.isdigit():
        return []
    rows: list[dict[str, Any]] = []
    current: Any = None
    start = 0
    for _ in range(MAX_PAGES):
        try:
            body = await client.get(f"{V1}/deals/{deal_id}/flow",
                                    {"start": start, "limit": MAX_LIMIT, "items": FLOW_ITEMS})
        except PipedriveError as exc:
            if exc.status in (404, 410):  # deleted for good: no history to read
                return []
            raise
        rows += [r for r in body.get("data") or [] if isinstance(r, dict)]
        related = ((body.get("related_objects") or {}).get("deal") or {}).get(deal_id) or {}
        current = related.get("stage_id", current)
        pagination = (body.get("additional_data") or {}).get("pagination") or {}
        if not pagination.get("more_items_in_collection"):
            break
        start = int(pagination.get("next_start") or start + MAX_LIMIT)
    return mapping.stage_changes(deal_id, rows, stages, current)
