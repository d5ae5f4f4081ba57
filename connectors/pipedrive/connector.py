"""Pipedrive connector (API v2 for deals, organizations, pipelines and stages; v1 for users,
currencies, custom field names, webhooks and goals). Every behaviour cites
docs/vendors/pipedrive.md (§n).

Deals and organizations are read oldest change first (`sort_by=update_time`), 500 a page
with v2 cursors (§2); the stream cursor is the newest update_time read, and a later read
asks for `updated_since` that time: Pipedrive includes records updated at that second, so
records sharing it across a page boundary are re-read, never lost (§3). Deleted deals come
from `status=deleted` (§3) as tombstones.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import (
    Channel,
    GoalDeletion,
    GoalOut,
    Page,
    PushResult,
    Sandbox,
    WebhookIntake,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.pipedrive import goals, mapping, notifications
from connectors.pipedrive.client import PipedriveClient, PipedriveConfig, PipedriveSecrets
from connectors.pipedrive.sandbox import SANDBOX
from connectors.pipedrive.wire import V2, parse_time
from core.errors import ConfigError
from core.records import GoalResult


class PipedriveConnector(PipedriveClient):
    """Reads users, stages, accounts (organizations), deals and deleted deals from one
    Pipedrive company; webhooks, goal push and goal results."""

    name: ClassVar[str] = "pipedrive"
    config_model: ClassVar[type[BaseModel]] = PipedriveConfig
    secrets_model: ClassVar[type[BaseModel]] = PipedriveSecrets
    max_in_flight: ClassVar[int] = 4
    channel_renew_within: ClassVar[timedelta] = notifications.RENEW_WITHIN  # §5
    sandbox: ClassVar[Sandbox] = SANDBOX

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        readers = {
            "users": self._read_users,
            "stages": self._read_stages,
            "accounts": self._read_accounts,
            "deals": self._read_deals,
            "deletions": self._read_deletions,
        }
        if stream not in readers:
            raise ConfigError(f"Pipedrive has no stream {stream!r}")
        return readers[stream](cursor or {})

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§2: /v1/users (no incremental filter: the list is small and read whole)."""
        yield Page(records=[mapping.user(u) for u in await self.v1_all("/users")], cursor={})

    async def _read_stages(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§4: the stages of every pipeline, and each pipeline's won and lost outcomes."""
        meta = await self.meta()
        outcomes = [s for pid, name in meta.pipelines.items()
                    for s in mapping.outcome_stages(pid, name)]
        yield Page(records=[*meta.stages.values(), *outcomes], cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        meta = await self.meta()
        async for rows, state in self._walk(f"{V2}/organizations", {}, cursor):
            yield Page(records=[mapping.account(r, meta) for r in rows], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        if self.home_currency is None:
            await self.check()
        meta = await self.meta()
        async for rows, state in self._walk(f"{V2}/deals", {}, cursor):
            records = [mapping.deal(r, meta, self.home_currency) for r in rows]
            yield Page(records=records, cursor=state)

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§3: deals deleted within 30 days; older ones go with a full sync."""
        async for rows, state in self._walk(f"{V2}/deals", {"status": "deleted"}, cursor):
            yield Page(deletions=[mapping.deletion(r) for r in rows], cursor=state)

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

    # -- webhooks and channels (§5, notifications.py) ------------------------

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        return notifications.parse(request, known)

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        return await notifications.resolve(self, payloads)

    async def subscribe_channel(self, notify_url: str) -> Channel:
        return await notifications.subscribe_channel(self, notify_url)

    async def renew_channel(self, channel: Channel) -> Channel:
        return await notifications.renew_channel(self, channel)

    async def unsubscribe_channels(self, channel_ids: Sequence[str]) -> None:
        await notifications.unsubscribe(self, channel_ids)

    # -- goals (§7, goals.py) ----------------------------------------------------

    async def push_goals(
        self, goals_out: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        return await goals.push_goals(self, goals_out, deletions)

    async def goal_results(self, goals_out: Sequence[GoalOut],
                           remote_ids: Sequence[str]) -> list[GoalResult]:
        return await goals.goal_results(self, goals_out, remote_ids)
