"""Salesforce's stage history (docs/vendors/salesforce.md §11): OpportunityHistory.

One SOQL query reads the rows of a batch of opportunities (`OpportunityId IN (...)`), paged
by nextRecordsUrl (§2). Salesforce writes a row whenever the stage, amount, probability or
close date changes, so rows repeating the stage they follow are no moves. StageName holds the
stage's ApiName; the stage names deals carry are the labels (§3), looked up here."""

from collections.abc import Sequence
from datetime import datetime

from connectors.base import stage_changes
from connectors.salesforce.client import SalesforceClient, soql_list
from connectors.salesforce.mapping import timestamp
from core.records import StageChangeRecord

# Opportunities per query: 200 quoted 18-character ids keep the query's URL near 6,000
# characters, well under the REST API's URI limit (§2).
BATCH = 200


async def read(client: SalesforceClient, deal_ids: Sequence[str]) -> list[StageChangeRecord]:
    """Every stage move of `deal_ids`; opportunities Salesforce no longer has give nothing."""
    if not deal_ids:
        return []
    labels = {str((s.raw or {}).get("ApiName") or s.name): s.name for s in await client.stages()}
    soql = ("SELECT OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
            f"WHERE OpportunityId IN ({soql_list([str(i) for i in deal_ids])}) "
            "ORDER BY OpportunityId, CreatedDate")
    entries: dict[str, list[tuple[datetime, str]]] = {}
    async for batch in client.query(soql):
        for row in batch:
            at, name = timestamp(row.get("CreatedDate")), str(row.get("StageName") or "")
            if at is not None and name:
                entries.setdefault(str(row["OpportunityId"]), []).append(
                    (at, labels.get(name, name)))
    return [change for deal_id, moves in entries.items()
            for change in stage_changes(deal_id, moves)]
