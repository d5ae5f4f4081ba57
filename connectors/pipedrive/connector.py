"""Pipedrive connector (API v2 for deals, organizations, pipelines, stages and activities;
v1 for users, teams, currencies, custom field names, activity types, deal updates (stage
history), webhooks and goals). Every behaviour cites docs/vendors/pipedrive.md (§n).

Deals, organizations and activities are read oldest change first
(`sort_by=update_time`), 500 a page with v2 cursors (§2); the stream cursor is the newest
update_time read, and a later read asks for `updated_since` that time: Pipedrive includes
records updated at that second, so records sharing it across a page boundary are re-read,
never lost (§3). Deleted deals come from `status=deleted` (§3) as tombstones.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import Page, Sandbox, StageChangeRecord, read_stream
from connectors.pipedrive import goals, history, mapping, notifications
from connectors.pipedrive.client import PipedriveClient, PipedriveConfig, PipedriveSecrets
from connectors.pipedrive.sandbox import SANDBOX
from connectors.pipedrive.wire import V2, parse_time


class PipedriveConnector(PipedriveClient):
    """Reads users (with their teams), stages, accounts (organizations), deals, deleted
    deals and activities from one Pipedrive company; stage history, links to deals,
    webhooks, goal push and goal results."""

    name: ClassVar[str] = "pipedrive"
    config_model: ClassVar[type[BaseModel]] = PipedriveConfig
    secrets_model: ClassVar[type[BaseModel]] = PipedriveSecrets
    max_in_flight: ClassVar[int] = 4
    channel_renew_within: ClassVar[timedelta] = notifications.RENEW_WITHIN  # §5
    sandbox: ClassVar[Sandbox] = SANDBOX
    stage_history_batch: ClassVar[int] = history.BATCH
    # §12: deleting an activity does not bump its update_time: only a full read (or a
    # delete webhook) sees it (connectors.base, the activities stream)
    activity_deletions: ClassVar[str] = "full"

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        return read_stream(self, "Pipedrive", stream, cursor)

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§2: /v1/users (no incremental filter: the list is small and read whole), each
        with their team where the plan has teams (§10)."""
        users, teams = await asyncio.gather(self.v1_all("/users"), self.teams())
        yield Page(records=[mapping.user(u, teams) for u in users], cursor={})

    async def _read_stages(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§4: the stages of every pipeline, and each pipeline's won and lost outcomes."""
        meta = await self.meta()
        outcomes = [s for pid, name in meta.pipelines.items()
                    for s in mapping.outcome_stages(pid, name)]
        yield Page(records=[*meta.stages.values(), *outcomes], cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        async for rows, state in self._walk(f"{V2}/organizations", {}, cursor):
            meta = await self.meta_for(rows)
            yield Page(records=[mapping.account(r, meta) for r in rows], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        if self.home_currency is None:
            await self.check()
        async for rows, state in self._walk(f"{V2}/deals", {}, cursor):
            meta = await self.meta_for(rows)
            records = [mapping.deal(r, meta, self.home_currency) for r in rows]
            yield Page(records=records, cursor=state)

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§3: deals deleted within 30 days; older ones go with a full sync."""
        async for rows, state in self._walk(f"{V2}/deals", {"status": "deleted"}, cursor):
            yield Page(deletions=[mapping.deletion(r) for r in rows], cursor=state)

    async def _read_activities(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§12: /api/v2/activities, oldest change first; one flagged is_deleted is a
        tombstone. Deleting does not bump update_time (§12), so an incremental read misses
        deletions: a full sync (tombstoning what it no longer sees) and delete webhooks
        (§5) catch them."""
        custom = await self.custom_activity_types()
        async for rows, state in self._walk(f"{V2}/activities", {}, cursor):
            meta = await self.meta_for(rows)
            yield Page(records=[mapping.activity(r, meta, custom) for r in rows
                                if not r.get("is_deleted")],
                       deletions=[mapping.activity_deletion(r) for r in rows
                                  if r.get("is_deleted")], cursor=state)

    async def _walk(self, path: str, params: dict[str, Any], cursor: dict[str, Any]
                    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Every record updated at or after the cursor, oldest change first (§2, §3)."""
        since = cursor.get("updated_since")
        query = {**params, "sort_by": "update_time", "sort_direction": "asc"}
        if since:
            query["updated_since"] = since
        newest = since
        async for rows in self.v2_pages(path, query):
            newest_at = parse_time(newest)
            for row in rows:
                moment = parse_time(row.get("update_time"))
                if moment is not None and (newest_at is None or moment > newest_at):
                    newest_at = moment
            newest = newest_at.strftime("%Y-%m-%dT%H:%M:%SZ") if newest_at else None
            yield rows, {"updated_since": newest} if newest else {}

    # -- stage history (§11, connectors/pipedrive/history.py) and links to deals (§13) --

    async def read_stage_history(self, deal_remote_ids: Sequence[str]
                                 ) -> list[StageChangeRecord]:
        return await history.read(self, deal_remote_ids)

    @classmethod
    def deal_url(cls, config: BaseModel, remote_id: str) -> str | None:
        return config.deal_url(remote_id) if isinstance(config, PipedriveConfig) else None

    # -- webhooks and channels (§5), goals and their results (§7): the modules' functions
    # of the client, as methods
    parse_webhook = staticmethod(notifications.parse)
    resolve_webhook_events = notifications.resolve
    subscribe_channel = notifications.subscribe_channel
    renew_channel = notifications.renew_channel
    unsubscribe_channels = notifications.unsubscribe
    push_goals = goals.push_goals
    goal_results = goals.goal_results
