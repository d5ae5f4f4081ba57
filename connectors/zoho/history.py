"""Zoho's stage history (docs/vendors/zoho.md §13): the Stage_History related list of a deal.

`GET /crm/v8/Deals/{id}/Stage_History?fields=...` is the generic related-records path
(zoho/crm-oas v8.0 related_records.json): `fields` mandatory, page/per_page (200 at most),
204 when the deal has no rows. Each row is a stage the deal entered (Stage) and when
(Last_Modified_Time); the rows are read whole and ordered here, so their order on the wire
does not matter.
"""

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connectors.base import stage_changes
from connectors.zoho import mapping
from core.records import StageChangeRecord, StageRecord

if TYPE_CHECKING:
    from connectors.zoho.client import ZohoClient

FIELDS = "Stage,Probability,Last_Modified_Time,Modified_By"
PER_PAGE = 200  # §13: default and maximum of a related list page
MAX_PAGES = 10  # §13: past 2,000 rows a related list needs page_token; no deal has that many
BATCH = 50  # deals per read_stage_history call (one request each, capped by max_in_flight)


async def read(client: "ZohoClient", deal_ids: Sequence[str]) -> list[StageChangeRecord]:
    """Every stage move of `deal_ids`, one deal's list at a time (ApiClient caps requests
    in flight)."""
    stages = mapping.stage_lookup(await client.stages())
    lists = await asyncio.gather(*(_deal(client, str(i), stages) for i in deal_ids))
    return [change for moves in lists for change in moves]


async def _deal(client: "ZohoClient", deal_id: str,
                stages: dict[tuple[str | None, str], StageRecord]) -> list[StageChangeRecord]:
    rows: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        body = await client.get(f"/Deals/{deal_id}/Stage_History",
                                {"fields": FIELDS, "page": page, "per_page": PER_PAGE})
        if not body:  # §13: 204, no history (or no such deal any more)
            break
        rows += body.get("data") or []
        if not (body.get("info") or {}).get("more_records"):
            break
    moves = []
    for row in rows:
        at = mapping.timestamp(row.get("Last_Modified_Time"))
        value = str(row.get("Stage") or "")
        if at is None or not value:
            continue
        meta = stages.get((None, value))
        moves.append((at, meta.name if meta else value))
    return stage_changes(deal_id, moves)
