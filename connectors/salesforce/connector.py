"""Salesforce connector (REST API, SOQL). Every behaviour cites docs/vendors/salesforce.md
(§n).

Accounts and opportunities are read oldest change first on SystemModstamp (§4), in windows
of `window_days` so no query scans a big org whole (a QUERY_TIMEOUT halves the window,
§2), each window paged with nextRecordsUrl. The cursor is the newest SystemModstamp read;
a later read starts OVERLAP before it, so records committed late are never skipped.
Deletions come from queryAll with IsDeleted = true (§4: the recycle bin, 15 days); a
full sync tombstones whatever it no longer sees (older deletions). There are no webhooks
(§9): the scheduler polls at the connection's sync_interval_minutes, and an incremental
read of an unchanged org costs one query per object.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import GoalDeletion, GoalOut, Page, PushResult, Sandbox, read_stream
from connectors.salesforce import history, mapping
from connectors.salesforce.client import (
    QueryTimedOut,
    SalesforceClient,
    SalesforceConfig,
    SalesforceSecrets,
)
from connectors.salesforce.goals import push_goals as goals_push
from connectors.salesforce.sandbox import SANDBOX
from connectors.salesforce.wire import parse_datetime, soql_datetime
from core.errors import SourceError
from core.records import DeletedEntity, StageChangeRecord
from core.types import utcnow

log = logging.getLogger("crmsync.salesforce")

OVERLAP = timedelta(seconds=60)  # re-read the last minute (late commits, §4)
MIN_WINDOW = timedelta(hours=1)  # QUERY_TIMEOUT below this is an error, not a narrower window
ACCOUNT_FIELDS = "Id, Name, Industry, OwnerId, CreatedDate, SystemModstamp"
DEAL_FIELDS = ("Id, Name, Amount, StageName, IsClosed, IsWon, Probability, CloseDate, "
               "OwnerId, AccountId, CreatedDate, SystemModstamp")
OBJECTS: dict[DeletedEntity, str] = {"deals": "Opportunity", "accounts": "Account"}
ACTIVITY_FIELDS = "Id, Subject, OwnerId, WhatId, AccountId, ActivityDate, CreatedDate, " \
    "SystemModstamp"  # §12: on Task and Event
ACTIVITIES = {  # §12: the activity objects and what each adds
    "Task": f"{ACTIVITY_FIELDS}, Status, IsClosed, CompletedDateTime, TaskSubtype, "
            "CallDurationInSeconds",
    "Event": f"{ACTIVITY_FIELDS}, StartDateTime, EndDateTime, DurationInMinutes, "
             "EventSubtype",
}


class SalesforceConnector(SalesforceClient):
    """Reads users, stages, accounts, deals and deletions from one Salesforce org."""

    name: ClassVar[str] = "salesforce"
    config_model: ClassVar[type[BaseModel]] = SalesforceConfig
    secrets_model: ClassVar[type[BaseModel]] = SalesforceSecrets
    # §6: 25 concurrent long-running requests per org, 5 in Developer Edition and trials.
    max_in_flight: ClassVar[int] = 5
    sandbox: ClassVar[Sandbox] = SANDBOX

    # -- stage history (§11, connectors/salesforce/history.py) ------------------

    stage_history_batch: ClassVar[int] = history.BATCH

    async def read_stage_history(self, deal_remote_ids: Sequence[str]) -> list[StageChangeRecord]:
        return await history.read(self, deal_remote_ids)

    # -- links (§10) -----------------------------------------------------------

    @classmethod
    def deal_url(cls, config: BaseModel, remote_id: str) -> str | None:
        return config.deal_url(remote_id) if isinstance(config, SalesforceConfig) else None

    # -- goal push (§8, connectors/salesforce/goals.py) -------------------------

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        """Goals as ForecastingQuota records, found by owner, period and forecast type."""
        return await goals_push(self, goals, deletions)

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        return read_stream(self, "Salesforce", stream, cursor)

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§3: the standard users, whole (a small object; inactive users included)."""
        users = await self.users()
        yield Page(records=list(users.values()), cursor={})

    async def _read_stages(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        yield Page(records=await self.stages(), cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        users = await self.users()
        async for rows, state in self.walk("Account", ACCOUNT_FIELDS, cursor):
            yield Page(records=[mapping.account(r, users) for r in rows], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        multi, rates = await self.meta()
        users = await self.users()
        stages = {str((s.raw or {}).get("ApiName") or s.name): s for s in await self.stages()}
        fields = f"{DEAL_FIELDS}, CurrencyIsoCode" if multi else DEAL_FIELDS  # §5
        async for rows, state in self.walk("Opportunity", fields, cursor):
            yield Page(records=[mapping.deal(r, stages, users, rates) for r in rows],
                       cursor=state)

    async def _read_activities(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§12: Tasks and Events changed since each one's cursor (queryAll, so archived
        activities are read too, IsDeleted = false), then the deleted ones (§4) as
        deletions. The cursor holds each object's cursor and the deletions'."""
        users = await self.users()
        state: dict[str, Any] = {k: v for k, v in cursor.items() if isinstance(v, dict)}
        for object_name, fields in ACTIVITIES.items():
            async for rows, sub in self.walk(object_name, fields, state.get(object_name) or {},
                                             archived=True):
                state[object_name] = sub
                yield Page(records=[mapping.activity(object_name, r, users) for r in rows],
                           cursor=dict(state))
        gone: list[tuple[str, DeletedEntity, str]] = [(n, "activities", n) for n in ACTIVITIES]
        async for page in self._deleted(gone, dict(state.get("deleted") or {})):
            state["deleted"] = page.cursor
            yield Page(deletions=page.deletions, cursor=dict(state))

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§4: deleted opportunities and accounts (cursor: the newest deletion of each)."""
        objects = [(name, entity, entity) for entity, name in OBJECTS.items()]
        async for page in self._deleted(objects, cursor):
            yield page

    async def _deleted(self, objects: Sequence[tuple[str, DeletedEntity, str]],
                       cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§4: queryAll rows with IsDeleted = true of each (object, entity of its
        deletions, cursor key) changed since the object's cursor."""
        state = dict(cursor)
        for object_name, entity, key in objects:
            since = state.get(key)
            soql = f"SELECT Id, SystemModstamp FROM {object_name} WHERE IsDeleted = true"
            if since:
                soql += f" AND SystemModstamp >= {soql_datetime(_moment(since) - OVERLAP)}"
            soql += " ORDER BY SystemModstamp, Id"
            async for rows in self.query(soql, deleted=True):
                if rows:
                    state[key] = rows[-1]["SystemModstamp"]
                yield Page(deletions=[mapping.deletion(entity, r) for r in rows],
                           cursor=dict(state))

    # -- paging ---------------------------------------------------------------

    async def walk(self, object_name: str, fields: str, cursor: dict[str, Any], *,
                   archived: bool = False
                   ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Records changed at or after the cursor (minus OVERLAP), oldest first, one
        SystemModstamp window per query; the last window is open-ended, so a clock that
        runs behind Salesforce's loses nothing. `archived`: with the records `query` leaves
        out (archived activities, §12), through queryAll without the deleted ones."""
        since = cursor.get("modstamp")
        live = "IsDeleted = false AND " if archived else ""
        start = _moment(since) - OVERLAP if since else \
            await self._oldest(object_name, live, archived)
        if start is None:
            return  # an empty object: nothing to read, the cursor stays as it was
        window = timedelta(days=self.config.window_days)
        while True:
            end = start + window
            last = end > utcnow()
            soql = (f"SELECT {fields} FROM {object_name} "
                    f"WHERE {live}SystemModstamp >= {soql_datetime(start)}"
                    + ("" if last else f" AND SystemModstamp < {soql_datetime(end)}")
                    + " ORDER BY SystemModstamp, Id")
            try:
                async for rows in self.query(soql, deleted=archived):
                    if rows:
                        since = rows[-1]["SystemModstamp"]
                    yield rows, {"modstamp": since}
            except QueryTimedOut:
                if window <= MIN_WINDOW:
                    raise SourceError(f"Salesforce {object_name}: QUERY_TIMEOUT even for one "
                                      f"hour of changes from {start.isoformat()}; ask "
                                      "Salesforce support to index SystemModstamp, or sync "
                                      "again when the org is quieter") from None
                window = max(MIN_WINDOW, window / 2)  # §2: a narrower window
                log.info("Salesforce %s QUERY_TIMEOUT; window now %s", object_name, window)
                continue
            if last:
                return
            start = end

    async def _oldest(self, object_name: str, live: str = "", archived: bool = False
                      ) -> datetime | None:
        where = f"WHERE {live.removesuffix(' AND ')} " if live else ""
        rows = [r async for batch in self.query(
            f"SELECT SystemModstamp FROM {object_name} {where}ORDER BY SystemModstamp LIMIT 1",
            deleted=archived) for r in batch]
        return _moment(rows[0]["SystemModstamp"]) if rows else None


def _moment(value: Any) -> datetime:
    try:
        return parse_datetime(str(value))
    except ValueError:
        raise SourceError(f"Salesforce cursor {value!r} is not a dateTime") from None


__all__ = ["SalesforceConnector"]
