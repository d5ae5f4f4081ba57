"""Zoho CRM connector (API v8). Every behaviour cites docs/vendors/zoho.md (§n)."""

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import (
    Channel,
    GoalDeletion,
    GoalOut,
    Page,
    PushResult,
    Sandbox,
    StageChangeRecord,
    WebhookIntake,
    WebhookRequest,
    WebhookSecrets,
    read_stream,
)
from connectors.zoho import history, mapping, notifications
from connectors.zoho.cli import build_app as build_command_line
from connectors.zoho.client import (
    ACCOUNT_FIELDS,
    ACTIVITY_FIELDS,
    DEAL_FIELDS,
    ZohoClient,
    ZohoConfig,
    ZohoError,
    ZohoSecrets,
)
from connectors.zoho.goals import push_goals as goals_push
from connectors.zoho.sandbox import SANDBOX
from core.errors import SourceError
from core.records import DeletedEntity

log = logging.getLogger("crmsync.zoho")

PER_PAGE = 200  # §2: default and max per_page
PAGE_TOKEN_CAP = 100_000  # §2: page_token reaches 100,000 records, then PAGINATION_LIMIT_EXCEEDED
RESTART_CODES = {"PAGINATION_LIMIT_EXCEEDED", "EXPIRED_VALUE"}  # §2: restart from the cursor
class _Restart(Exception):
    """A page_token walk must start again from the cursor (§2 token cap or expiry)."""


class ZohoConnector(ZohoClient):
    """Reads users, stages, accounts, deals, activities and deletions from one Zoho CRM org."""

    name: ClassVar[str] = "zoho"
    config_model: ClassVar[type[BaseModel]] = ZohoConfig
    secrets_model: ClassVar[type[BaseModel]] = ZohoSecrets
    max_in_flight: ClassVar[int] = 5  # §7: Free edition concurrency; higher editions allow more
    channel_renew_within: ClassVar[timedelta] = notifications.RENEW_WITHIN  # §5
    sandbox: ClassVar[Sandbox] = SANDBOX
    stage_history_batch: ClassVar[int] = history.BATCH

    # -- stage history (§13, connectors/zoho/history.py; connectors.base.StageHistory) --

    async def read_stage_history(self, deal_remote_ids: Sequence[str]) -> list[StageChangeRecord]:
        return await history.read(self, deal_remote_ids)

    # -- links to records (connectors.base.RecordLinks) ------------------------

    @classmethod
    def deal_url(cls, config: BaseModel, remote_id: str) -> str | None:
        return config.deal_url(remote_id) if isinstance(config, ZohoConfig) else None

    # -- webhooks (§5, connectors/zoho/notifications.py) -----------------------

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        return notifications.parse(request, known)

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        return await notifications.resolve(self, payloads)

    # -- notification channels (§5; connectors.base.NotificationChannels) ------

    async def subscribe_channel(self, notify_url: str) -> Channel:
        return await notifications.subscribe_channel(self, notify_url)

    async def renew_channel(self, channel: Channel) -> Channel:
        return await notifications.renew_channel(self, channel)

    async def unsubscribe_channels(self, channel_ids: Sequence[str]) -> None:
        await notifications.unsubscribe(self, channel_ids)

    # -- command line (connectors/zoho/cli.py: crmsync zoho exchange-code) -----

    @classmethod
    def command_line(cls, add_connection: Callable[..., None]) -> Any:
        return build_command_line(add_connection)

    # -- goal push (§9, connectors/zoho/goals.py; connectors.base.GoalPusher) ---

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        """Goals into the custom module `goals_module` via upsert; deletions by id."""
        return await goals_push(self, goals, deletions)

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        return read_stream(self, "Zoho", stream, cursor)

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§2: /users?type=AllUsers, key `users`, page/per_page, If-Modified-Since."""
        since = cursor.get("modified_since")
        newest = since
        page = 1
        while True:
            body = await self.get(
                "/users",
                {"type": "AllUsers", "page": page, "per_page": PER_PAGE},
                since=_overlap(since),
            )
            users = (body or {}).get("users") or []
            records = [mapping.user(u) for u in users]
            newest = _newest(newest, (u.get("Modified_Time") for u in users))
            more = bool((body or {}).get("info", {}).get("more_records"))
            if records or not more:
                yield Page(records=records, cursor=None if more else {"modified_since": newest})
            if not more:
                return
            page += 1

    async def _read_stages(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        yield Page(records=await self.stages(), cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        fields = await self.field_names("Accounts", ACCOUNT_FIELDS)
        async for raws, state in self._walk("Accounts", fields, cursor):
            yield Page(records=[mapping.account(r) for r in raws], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        fields = await self.field_names("Deals", DEAL_FIELDS)
        stage_map = mapping.stage_lookup(await self.stages())
        if self.home_currency is None:
            await self.check()
        async for raws, state in self._walk("Deals", fields, cursor):
            yield Page(
                records=[mapping.deal(r, stage_map, self.home_currency) for r in raws], cursor=state
            )

    async def _read_activities(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§14: Calls, Events and Tasks, one module after the other, each walked like the
        deals (_walk); the cursor keeps each module's newest Modified_Time."""
        state = dict(cursor)
        for module, wanted in ACTIVITY_FIELDS.items():
            fields = await self.field_names(module, wanted)
            async for raws, position in self._walk(module, fields,
                                                   {"modified_since": state.get(module)}):
                state[module] = position["modified_since"]
                yield Page(records=[mapping.activity(module, r) for r in raws],
                           cursor=dict(state))

    async def _walk(
        self, module: str, fields: str, cursor: dict[str, Any]
    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Records oldest change first (§2: sort_by=Modified_Time asc, page_token past 2,000).

        The cursor is the newest Modified_Time committed; the next read starts at
        that instant minus one second (overlap, never cursor + 1 s), so records
        sharing a Modified_Time across a page boundary are re-read, never lost.
        """
        since = cursor.get("modified_since")
        restarted_at: str | None = None
        while True:
            try:
                async for raws, newest in self._query(module, fields, since):
                    since = newest
                    yield raws, {"modified_since": newest}
                return
            except _Restart:
                if since is None or since == restarted_at:
                    raise SourceError(
                        f"Zoho {module}: cannot page past {PAGE_TOKEN_CAP} records that share "
                        f"Modified_Time {since}; sync again later or use a full sync"
                    ) from None
                restarted_at = since
                log.info("restarting %s walk from %s", module, since)

    async def _query(
        self, module: str, fields: str, since: str | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        params: dict[str, Any] = {
            "fields": fields,
            "per_page": PER_PAGE,
            "sort_by": "Modified_Time",
            "sort_order": "asc",
        }
        newest, read, token = since, 0, None
        while True:
            page_params = {**params, **({"page_token": token} if token else {"page": 1})}
            try:
                body = await self.get(f"/{module}", page_params, since=_overlap(since))
            except ZohoError as exc:
                if exc.code in RESTART_CODES and read:
                    raise _Restart from exc
                raise SourceError(str(exc)) from None
            if not body:
                return
            records = body.get("data") or []
            read += len(records)
            newest = _newest(newest, (r.get("Modified_Time") for r in records))
            yield records, newest
            info = body.get("info") or {}
            token = info.get("next_page_token")
            if not info.get("more_records"):
                return
            if not token or read + PER_PAGE > PAGE_TOKEN_CAP:
                raise _Restart  # continue from the newest Modified_Time seen

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§3: /{Module}/deleted?type=all, page/per_page (no page_token), If-Modified-Since;
        §14: the activity modules too. The cursor keeps the newest deleted_time of each
        (under "deals", "accounts" and the activity modules' names)."""
        state = dict(cursor)
        modules: tuple[tuple[str, DeletedEntity, str], ...] = (
            ("Deals", "deals", "deals"), ("Accounts", "accounts", "accounts"),
            *((module, "activities", module) for module in ACTIVITY_FIELDS))
        for module, entity, key in modules:
            since = state.get(key)
            newest = since
            page = 1
            while True:
                body = await self.get(
                    f"/{module}/deleted",
                    {"type": "all", "page": page, "per_page": PER_PAGE},
                    since=_overlap(since),
                )
                rows = (body or {}).get("data") or []
                newest = _newest(newest, (r.get("deleted_time") for r in rows))
                more = bool((body or {}).get("info", {}).get("more_records"))
                if not more:
                    state[key] = newest
                yield Page(
                    deletions=[mapping.deletion(entity, r) for r in rows],
                    cursor=None if more else dict(state),
                )
                if not more:
                    break
                page += 1


def _overlap(since: str | None) -> str | None:
    """The If-Modified-Since to send for a cursor: one second earlier (overlap)."""
    if not since:
        return None
    return (datetime.fromisoformat(since.replace("Z", "+00:00")) - timedelta(seconds=1)).isoformat(
        timespec="seconds"
    )


def _newest(current: str | None, values: Any) -> str | None:
    best = current
    best_at = mapping.instant(current)  # aware instants compare across offsets
    for value in values:
        at = mapping.instant(value)
        if at is not None and (best_at is None or at > best_at):
            best, best_at = value, at
    return best
