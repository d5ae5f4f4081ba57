"""Fxiaoke (纷享销客 / ShareCRM) connector. Every behaviour cites docs/vendors/fxiaoke.md (§n).

Every call is a JSON POST; business errors arrive as HTTP 200 with errorCode != 0,
so responses are classified by errorCode only (§0, §6). CRM objects are read
through /cgi/crm/v2/data/query (custom `__c` objects: /cgi/crm/custom/v2/data/query)
oldest change first, with a keyset on (last_modified_time, _id) and offset 0
(§2: offset may not pass 10,000 and offset paging skips rows while data changes).
"""

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import (
    GoalDeletion,
    GoalOut,
    Page,
    PushResult,
    Sandbox,
    WebhookIntake,
    WebhookRequest,
    WebhookSecrets,
    read_stream,
)
from connectors.fxiaoke import mapping, notifications
from connectors.fxiaoke.client import FxiaokeClient, FxiaokeConfig, FxiaokeSecrets
from connectors.fxiaoke.goals import push_goals as goals_push
from connectors.fxiaoke.sandbox import SANDBOX
from connectors.fxiaoke.wire import (
    ACTIVITY_OBJECT,
    MAX_LIMIT,
)
from core.errors import SourceError

log = logging.getLogger("crmsync.fxiaoke")

OVERLAP_MS = 60_000  # re-read the last minute: late-visible writes are never lost (§2 [INF])
MODIFIED = "last_modified_time"


class FxiaokeConnector(FxiaokeClient):
    """Reads users, stages, accounts, deals and activities from one Fxiaoke tenant."""

    name: ClassVar[str] = "fxiaoke"
    config_model: ClassVar[type[BaseModel]] = FxiaokeConfig
    secrets_model: ClassVar[type[BaseModel]] = FxiaokeSecrets
    max_in_flight: ClassVar[int] = 4
    sandbox: ClassVar[Sandbox] = SANDBOX

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        return read_stream(self, "Fxiaoke", stream, cursor)

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        # §3: there is no incremental user API; the directory is small and read whole.
        directory = await self.directory()
        yield Page(records=list(directory.users.values()), cursor={})

    async def _read_stages(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        meta = await self.meta()
        yield Page(records=list(meta.stages.values()), cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        directory = await self.directory()
        async for rows, state in self.walk("AccountObj", cursor):
            yield Page(records=[mapping.account(r, directory) for r in rows], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        meta, directory = await self.meta(), await self.directory()
        currency = self.config.home_currency
        async for rows, state in self.walk(self.config.opportunity_object, cursor):
            yield Page(records=[mapping.deal(r, meta, directory, currency) for r in rows],
                       cursor=state)

    async def _read_activities(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§10: follow-up records (ActiveRecordObj), walked like the deals; voided ones
        arrive as tombstones."""
        directory, deal_object = await self.directory(), self.config.opportunity_object
        async for rows, state in self.walk(ACTIVITY_OBJECT, cursor):
            yield Page(records=[mapping.activity(r, directory, deal_object) for r in rows],
                       cursor=state)

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """Nothing to read: voided records (life_status "invalid", §2) stay queryable and
        arrive in the accounts and deals pages as tombstones; records purged after voiding
        leave no trace an incremental read can see, so a full sync tombstones them."""
        return
        yield  # an async generator that yields nothing

    # -- paging ---------------------------------------------------------------

    async def walk(
        self, api_name: str, cursor: dict[str, Any]
    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Every record changed at or after the cursor (minus an overlap), oldest first.

        Keyset on (last_modified_time, _id), offset always 0 (§2: offset <= 10,000;
        deep reads use an `_id GT` keyset): each page asks for last_modified_time >=
        the last time seen and drops the rows already read at that time; when a full
        page shares one time, the rows of that time are walked by `_id GT`.
        The cursor is the newest last_modified_time read; a resumed or later read
        starts OVERLAP_MS before it, so nothing committed late is ever skipped.
        """
        since = cursor.get("modified_since")
        low: int | None = None if since is None else int(since) - OVERLAP_MS
        after: str | None = None  # last _id read at time `low`
        strict, tie, newest = False, False, since
        while True:
            if tie:
                filters = [_filter(MODIFIED, "EQ", low), _filter("_id", "GT", after)]
                orders = [{"fieldName": "_id", "isAsc": True}]
            else:
                filters = [] if low is None else [_filter(MODIFIED, "GT" if strict else "GTE",
                                                          low)]
                orders = [{"fieldName": MODIFIED, "isAsc": True},
                          {"fieldName": "_id", "isAsc": True}]
            rows = await self.query(api_name, filters, orders)
            fresh = [r for r in rows if after is None or _modified(r) != low
                     or str(r["_id"]) > after]
            if rows:
                newest = max(newest or 0, _modified(rows[-1]))
            if fresh or len(rows) < MAX_LIMIT:
                yield fresh, {"modified_since": newest}
            if len(rows) < MAX_LIMIT:
                if not tie:
                    return
                tie, strict, after = False, True, None  # the rest: strictly after `low`
                continue
            last = rows[-1]
            if tie or _modified(rows[0]) == _modified(last):
                tie = True  # a full page of one time: walk that time by _id
            else:
                strict = False
            low, after = _modified(last), str(last["_id"])

    # -- callbacks (§5, connectors/fxiaoke/notifications.py) --------------------

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        return notifications.parse(request, known)

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        return await notifications.resolve(self, payloads)

    # -- goal push (§4, connectors/fxiaoke/goals.py; connectors.base.GoalPusher) -

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        return await goals_push(self, goals, deletions)

def _filter(name: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field_name": name, "operator": operator, "field_values": [value]}


def _modified(row: dict[str, Any]) -> int:
    value = row.get(MODIFIED)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceError(f"Fxiaoke record {row.get('_id')} has no last_modified_time") from None
