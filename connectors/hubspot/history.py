"""HubSpot's stage history (docs/vendors/hubspot.md §11): the `dealstage` property's history.

A batch read of deals asking `propertiesWithHistory=["dealstage"]` answers, per deal, every
value the property held with its `timestamp`, newest first; at most 50 deals a call (more
answers 400). Values are stage ids: they become the stage names deals carry through the
pipelines (§5), looked up in the deal's own pipeline."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.base import stage_changes
from connectors.hubspot import mapping
from connectors.hubspot.wire import HISTORY_BATCH_LIMIT, parse_time
from core.records import StageChangeRecord

if TYPE_CHECKING:
    from connectors.hubspot.client import HubSpotClient

STAGE = "dealstage"
BATCH = HISTORY_BATCH_LIMIT  # deals per read_stage_history call: one batch read


async def read(client: "HubSpotClient", deal_ids: Sequence[str]) -> list[StageChangeRecord]:
    """Every stage move of `deal_ids` (one batch read per 50); deals HubSpot no longer has
    give nothing."""
    stages = mapping.stage_lookup(await client.stages())
    rows = await client.batch_read("deals", [str(i) for i in deal_ids], ("pipeline", STAGE),
                                   history=(STAGE,))
    out: list[StageChangeRecord] = []
    for row in rows:
        pipeline = str((row.get("properties") or {}).get("pipeline") or "")
        entries = []
        for entry in (row.get("propertiesWithHistory") or {}).get(STAGE) or []:
            at, value = parse_time(entry.get("timestamp")), str(entry.get("value") or "")
            if at is None or not value:
                continue
            meta = stages.get((pipeline, value)) or stages.get((None, value))
            entries.append((at, meta.name if meta else value))
        out += stage_changes(str(row["id"]), entries)
    return out
