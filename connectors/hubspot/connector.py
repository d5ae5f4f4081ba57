"""HubSpot connector (CRM v3). Every behaviour cites docs/vendors/hubspot.md (§n).

Full reads list every record (§2, 100 a page, by id); incremental reads search on
hs_lastmodifieddate (§3) from the cursor minus an overlap, up to the time the read
started, in windows that never page past the 10,000-result cap: when a window is full
the next one starts at the last timestamp read, and when more than 10,000 records share
one timestamp they are walked by hs_object_id. Every search waits for the account's
5-a-second budget (SharedLimits, shared by every process with Redis). Deletions: the
archived lists (§10) and, on every read, the ids merged into a record (§10)."""

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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
)
from connectors.hubspot import history, mapping, notifications
from connectors.hubspot.client import HubSpotClient, HubSpotConfig, HubSpotError, HubSpotSecrets
from connectors.hubspot.goals import push_goals as goals_push
from connectors.hubspot.sandbox import SANDBOX
from connectors.hubspot.wire import (
    ACTIVITY_PROPERTIES,
    COMPANY_PROPERTIES,
    DEAL_PROPERTIES,
    LIST_LIMIT,
    MODIFIED,
    OBJECT_ID,
    OBJECTS,
    SEARCH_CAP,
    SEARCH_LIMIT,
    epoch_ms,
    parse_time,
)
from core.errors import ConfigError
from core.records import DeletedEntity, Deletion, StageChangeRecord

log = logging.getLogger("crmsync.hubspot")

OVERLAP_MS = 1000  # docs/sync.md: each incremental read starts one second before its cursor
SETTLE_MS = 30_000  # §3: changes take moments to reach search; the cursor stays this far back
SKEW_MS = 300_000  # HubSpot's clock may run ahead of ours: the upper bound allows for it
# What each list, search and archived list reads: (object type, properties, the entity of
# its deletions, the associations a list asks for). "accounts" and "deals" are streams; the
# activity objects (§13) make the activities stream together.
OBJECT: dict[str, tuple[str, tuple[str, ...], DeletedEntity, tuple[str, ...]]] = {
    "accounts": ("companies", COMPANY_PROPERTIES, "accounts", ()),
    "deals": ("deals", DEAL_PROPERTIES, "deals", ("companies",)),
    **{name: (name, props, "activities", ("deals", "companies"))
       for name, props in ACTIVITY_PROPERTIES.items()},
}
ACTIVITY_OBJECTS = tuple(ACTIVITY_PROPERTIES)
KIND_OF = {spec[0]: kind for kind, spec in OBJECT.items()}  # object type -> OBJECT key
Rows = list[dict[str, Any]]
Reader = Callable[[dict[str, Any]], AsyncIterator[Page]]
MORE, DONE, CAPPED = "more", "done", "capped"  # where one search query stands (_search)


class HubSpotConnector(HubSpotClient):
    """Reads owners, stages, companies, deals and deletions from one HubSpot account."""

    name: ClassVar[str] = "hubspot"
    config_model: ClassVar[type[BaseModel]] = HubSpotConfig
    secrets_model: ClassVar[type[BaseModel]] = HubSpotSecrets
    max_in_flight: ClassVar[int] = 8  # §7: no concurrency limit documented; the burst budget
    sandbox: ClassVar[Sandbox] = SANDBOX
    search_cap: int = SEARCH_CAP  # §3; lowered for this client if HubSpot answers 400 sooner

    # -- webhooks (§8, connectors/hubspot/notifications.py) --------------------

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        return notifications.parse(request, known)

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        return await notifications.resolve(self, payloads)

    # -- stage history (§11, connectors/hubspot/history.py) ---------------------

    stage_history_batch: ClassVar[int] = history.BATCH

    async def read_stage_history(self, deal_remote_ids: Sequence[str]) -> list[StageChangeRecord]:
        return await history.read(self, deal_remote_ids)

    # -- links (§12) -----------------------------------------------------------

    @classmethod
    def deal_url(cls, config: BaseModel, remote_id: str) -> str | None:
        return config.deal_url(remote_id) if isinstance(config, HubSpotConfig) else None

    # -- goal push (§9, connectors/hubspot/goals.py) ---------------------------

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        return await goals_push(self, goals, deletions)

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        readers: dict[str, Reader] = {"users": self._read_users, "stages": self._read_stage_stream,
                   "accounts": self._read_objects("accounts"),
                   "deals": self._read_objects("deals"),
                   "activities": self._read_activities, "deletions": self._read_deletions}
        if stream not in readers:
            raise ConfigError(f"HubSpot has no stream {stream!r}")
        return readers[stream](cursor or {})

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§4: active and archived (deactivated) owners, read once per client (the deal and
        company pages take their owners' emails from the same read)."""
        yield Page(records=list((await self.owners()).values()), cursor={})

    async def _read_stage_stream(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        yield Page(records=await self.stages(), cursor={})

    def _read_objects(self, stream: str) -> "Reader":
        async def reader(cursor: dict[str, Any]) -> AsyncIterator[Page]:
            if "since" in cursor:
                async for page in self._incremental(stream, int(cursor["since"])):
                    yield page
            else:
                async for page in self._full(stream, cursor):
                    yield page
        return reader

    async def _full(self, stream: str, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """Every live record by id (§2). Page cursors hold the list position and the newest
        change seen; the last one `since`: that change, or the read's start if earlier."""
        object_type, properties, _, associations = OBJECT[stream]
        started = int(cursor.get("started") or time.time() * 1000)
        newest = int(cursor.get("newest") or 0)
        after: str | None = cursor.get("after")
        while True:
            params: dict[str, Any] = {"limit": LIST_LIMIT, "properties": ",".join(properties),
                                      "archived": "false"}
            if associations:
                params["associations"] = ",".join(associations)
            if after:
                params["after"] = after
            body = await self.call("GET", f"{OBJECTS}/{object_type}", params=params) or {}
            rows: Rows = body.get("results") or []
            newest = max([newest, *(_modified_ms(r) for r in rows)])
            after = _next(body)
            state: dict[str, Any] = ({"after": after, "newest": newest, "started": started}
                                     if after else {"since": min(newest, started - SETTLE_MS)})
            yield await self._page(stream, rows, state, listed=True)
            if not after:
                return

    async def _incremental(self, stream: str, since: int) -> AsyncIterator[Page]:
        now = int(time.time() * 1000)
        upper = now + SKEW_MS  # a fixed end, so the window does not grow while it is read
        async for rows, newest in self._search_windows(stream, since - OVERLAP_MS, upper):
            cursor_ms = max(since, min(newest, now - SETTLE_MS))
            yield await self._page(stream, rows, {"since": cursor_ms}, listed=False)

    async def _page(self, stream: str, rows: Rows, cursor: dict[str, Any], *,
                    listed: bool) -> Page:
        object_type, _, entity, _ = OBJECT[stream]
        gone = [d for r in rows for d in mapping.merged_away(entity, r)]  # §10
        owners = await self.owners()
        if entity == "activities":
            links = [await self._links(object_type, to, rows, listed)
                     for to in ("deals", "companies")]
            return Page(records=[mapping.activity(object_type, r, owners,
                                                  links[0].get(str(r["id"])),
                                                  links[1].get(str(r["id"]))) for r in rows],
                        deletions=gone, cursor=cursor)
        if stream == "accounts":
            return Page(records=[mapping.account(r, owners) for r in rows], deletions=gone,
                        cursor=cursor)
        stages = mapping.stage_lookup(await self.stages())
        money = await self.money()
        companies = await self._links(object_type, "companies", rows, listed)
        records = [mapping.deal(r, stages, money, companies.get(str(r["id"])), owners)
                   for r in rows]
        return Page(records=records, deletions=gone, cursor=cursor)

    async def _links(self, object_type: str, to_type: str, rows: Rows, listed: bool
                     ) -> dict[str, str | None]:
        """§2: each row's first `to_type` record: inline in a list answer, read with the
        association batch read for a search answer (search returns none)."""
        if listed:
            return {str(r["id"]): mapping.first_associated(r, to_type) for r in rows}
        found = await self.associated(object_type, to_type, [str(r["id"]) for r in rows])
        return dict(found.items())

    async def _search_windows(self, stream: str, start: int, upper: int
                              ) -> AsyncIterator[tuple[Rows, int]]:
        """§3: records modified in [start, upper], oldest first, never paging past the cap:
        (rows, the newest modification read so far). A window holding more than the cap
        whose first page reaches an instant that alone holds more (its first or its last) is
        read up to that instant, then the instant is walked by id: its records are not read
        a first time by the window up to the cap."""
        object_type = OBJECT[stream][0]
        while True:
            last_ts, state = start, DONE
            filters = [_flt(MODIFIED, "GTE", start), _flt(MODIFIED, "LTE", upper)]
            async for rows, status, total in self._search(object_type, filters, MODIFIED):
                state = status
                if total > self.search_cap and rows and last_ts == start:  # the first page
                    crowded = await self._crowded(object_type, rows)
                    if crowded is not None:
                        before = [r for r in rows if _modified_ms(r) < crowded]
                        if before:
                            yield before, max(_modified_ms(r) for r in before)
                        state, last_ts = CAPPED, crowded
                        break
                last_ts = max([last_ts, *(_modified_ms(r) for r in rows)])
                yield rows, last_ts
            if state == DONE:
                return
            if last_ts > start and await self._count_at(object_type, last_ts) <= self.search_cap:
                log.info("%s: search window full at %s; continuing from it", stream, last_ts)
                start = last_ts  # the window is full: the next starts at the last time read
                continue
            async for rows in self._walk_one_instant(object_type, last_ts):
                yield rows, last_ts
            start = last_ts + 1

    async def _crowded(self, object_type: str, rows: Rows) -> int | None:
        """The first of a page's first and last instants that alone holds more records
        than the cap, if any."""
        stamps = [_modified_ms(r) for r in rows]
        for instant in dict.fromkeys((min(stamps), max(stamps))):
            if await self._count_at(object_type, instant) > self.search_cap:
                return instant
        return None

    async def _count_at(self, object_type: str, instant: int) -> int:
        """How many records share one hs_lastmodifieddate (one search of one result)."""
        answer = await self.call("POST", f"{OBJECTS}/{object_type}/search", search=True, json={
            "filterGroups": [{"filters": [_flt(MODIFIED, "EQ", instant)]}],
            "properties": [OBJECT_ID], "limit": 1}) or {}
        return int(answer.get("total") or 0)

    async def _walk_one_instant(self, object_type: str, instant: int) -> AsyncIterator[Rows]:
        """More than 10,000 records share one hs_lastmodifieddate: walk them by
        hs_object_id (§3, the Airbyte fix), each query under the cap."""
        last_id, state = 0, CAPPED
        while state == CAPPED:
            filters = [_flt(MODIFIED, "EQ", instant), _flt(OBJECT_ID, "GT", last_id)]
            async for rows, status, _ in self._search(object_type, filters, OBJECT_ID):
                state = status
                last_id = max([last_id, *(int(r["id"]) for r in rows)])
                yield rows

    async def _search(self, object_type: str, filters: list[dict[str, Any]], sort: str
                      ) -> AsyncIterator[tuple[Rows, str, int]]:
        """Pages of one query, 200 each, ascending by `sort`, stopping before the cap:
        (rows, MORE | DONE | CAPPED, total), CAPPED when results remain past the cap."""
        after, served = "0", 0
        stream = KIND_OF[object_type]
        while True:
            body = {"filterGroups": [{"filters": filters}],
                    "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                    "properties": list(OBJECT[stream][1]), "limit": SEARCH_LIMIT,
                    "after": after}
            try:
                answer = await self.call("POST", f"{OBJECTS}/{object_type}/search", json=body,
                                         search=True) or {}
            except HubSpotError as exc:  # §3: 400 past the cap (should the cap be lower)
                if exc.status == 400 and served:  # learn the cap this account applies
                    self.search_cap = min(self.search_cap, served)
                    yield [], CAPPED, served
                    return
                raise
            rows: Rows = answer.get("results") or []
            served += len(rows)
            total = int(answer.get("total") or served)
            token = _next(answer)
            if not token:
                yield rows, DONE, total
                return
            if served + SEARCH_LIMIT > self.search_cap:
                yield rows, CAPPED, total
                return
            yield rows, MORE, total
            after = token

    async def _read_activities(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§13: calls, meetings, tasks and notes, each object read as deals are (a full list,
        then searches on hs_lastmodifieddate from its own cursor), then their archived lists
        (§10) as deletions. The cursor holds each object's cursor and the archived lists'."""
        state: dict[str, Any] = {k: v for k, v in cursor.items() if isinstance(v, dict)}
        for kind in ACTIVITY_OBJECTS:
            async for page in self._read_objects(kind)(dict(state.get(kind) or {})):
                state[kind] = page.cursor or state.get(kind) or {}
                page.cursor = dict(state)
                yield page
        async for page in self._archived(ACTIVITY_OBJECTS, dict(state.get("archived") or {})):
            if page.cursor is not None:
                state["archived"] = page.cursor
            yield Page(deletions=page.deletions,
                       cursor=None if page.cursor is None else dict(state))

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§10: the archived lists of deals and companies (cursor: the newest archive time
        of each)."""
        async for page in self._archived(("deals", "accounts"), cursor):
            yield page

    async def _archived(self, kinds: Sequence[str], cursor: dict[str, Any]
                        ) -> AsyncIterator[Page]:
        """§10: the archived lists of `kinds` (OBJECT keys); each list is read whole and the
        records archived since its cursor (minus the overlap) become tombstones."""
        state = dict(cursor)
        for stream in kinds:
            object_type, _, entity, _ = OBJECT[stream]
            since = int(state.get(stream) or 0)
            newest = since
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": LIST_LIMIT, "archived": "true",
                                          "properties": OBJECT_ID}
                if after:
                    params["after"] = after
                body = await self.call("GET", f"{OBJECTS}/{object_type}", params=params) or {}
                found = [mapping.archived(entity, r) for r in body.get("results") or []]
                fresh = [d for d in found if epoch_ms(d.deleted_at) >= since - OVERLAP_MS]
                newest = max([newest, *(epoch_ms(d.deleted_at) for d in found)])
                after = _next(body)
                if not after:
                    state[stream] = newest
                yield Page(deletions=fresh, cursor=None if after else dict(state))
                if not after:
                    break




def _flt(name: str, operator: str, value: int) -> dict[str, Any]:
    return {"propertyName": name, "operator": operator, "value": str(value)}


def _next(body: Mapping[str, Any]) -> str | None:
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after not in (None, "") else None


def _modified_ms(raw: Mapping[str, Any]) -> int:
    props = raw.get("properties") or {}
    moment = parse_time(props.get(MODIFIED) or raw.get("updatedAt"))
    return epoch_ms(moment) if moment else 0


__all__ = ["Deletion", "HubSpotConnector"]
