"""The sync engine: drives a Source into the store, page by page (docs/sync.md).

- Each page's upserts, tombstones, cursor and run counters commit in one
  transaction, so a crash resumes from the last committed page.
- Streams run concurrently (the source's ApiClient caps requests in flight);
  a bounded read-ahead per stream (READ_AHEAD_RECORDS) lets the next pages download while
  one is written, and pages that are already waiting when the writer gets to them are
  written together (up to MERGE_RECORDS), in one transaction with the newest of their
  cursors.
- A full sync reads everything and then tombstones rows it did not see; an
  interrupted full sync resumes from its cursor and still tombstones correctly.
- On PostgreSQL the run writes on two connections (lanes, see LANES): the deals' pages on
  one while the accounts' and activities' pages are written on the other, so the
  database works on both at once; everything else takes both lanes and runs alone.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine

from core import store
from core.config import Settings
from core.db import retrying_deadlocks, session_scope
from core.errors import AuthError, ConfigError, SourceError
from core.metrics import rollups
from core.models import Connection
from core.records import OPTIONAL_STREAMS, STREAMS, Page, Source
from core.types import ConnectionStatus, RunStatus, Stream, SyncMode, utcnow

log = logging.getLogger("crmsync.sync")

TOMBSTONE_ON_FULL = (Stream.USERS, Stream.STAGES, Stream.ACCOUNTS, Stream.DEALS,
                     Stream.ACTIVITIES)
WHOLE_READ = frozenset({Stream.STAGES})
"""Streams every sync reads whole (no cursor): an incremental sync writes a page of them only
when its records differ from the last page of the stream written (a digest of them kept in
the stream's sync_state by every sync, full or not; SyncEngine._unchanged). A renamed,
added or removed stage is written by the next sync; an unchanged one is not rewritten (its
last_synced_at moves with full syncs and changes only)."""
ANALYZE_AFTER_PAGES = frozenset({3, 30, 300, 3000})  # a table may have grown tenfold since
COUNTS_EVERY = 1.0  # seconds between writes of the run's running counts
READ_AHEAD_RECORDS = 5000
"""Records a stream reads ahead of its writer on PostgreSQL, at most (a larger page alone when
none wait): memory bounded per stream whatever a connector's page size (Zoho 200, Salesforce
up to 2,000), and enough waiting for MERGE_RECORDS."""
READ_AHEAD_RECORDS_SQLITE = 1000
"""The same on SQLite, where the syncing process also does the database's work (one
interpreter), so pages read far ahead only hold memory: a 100,000-deal first sync peaked at
195-221 MB with 5,000 and ran no faster than with 4 pages (143-149 MB)."""
MERGE_RECORDS = 4000
"""Records of pages already read that are written in one transaction, at most (a larger page
alone). A transaction's fixed cost on the writer's path (its statements' round trips, the
cursor, the commit) is paid once for them: 20 Zoho pages instead of 5 took a 100,000-deal
first sync from 11.2-11.5 s to 9.4-9.6 s (docs/benchmarks.md, 2026-12-06 10:40)."""
DEALS_LANE, OTHER_LANE = 0, 1
LANES = {Stream.DEALS: (DEALS_LANE,), Stream.ACCOUNTS: (OTHER_LANE,),
         Stream.ACTIVITIES: (OTHER_LANE,)}
"""The connections a stream's pages are written on (PostgreSQL). Two pages on different lanes
are two transactions at once, so they must not wait for each other's rows: a deals page
writes deal, deal_stage_change and deal_version, an accounts or activities page account or
activity; both may add people (core.people.ensure_owner_persons, in email order: one waits
for the other, never both) and rollup marks (plain inserts), and write their own sync_state
row and the run's row last. The other streams (users relink deals, accounts and
activities; deletions and tombstones touch all three) take every lane."""
BOTH = (OTHER_LANE, DEALS_LANE)
"""Every lane, in the order they are taken: a stream that needs both never holds the deals'
lane while it waits for the other (deals pages would wait for accounts and activities)."""


@dataclass
class StreamCounts:
    fetched: int = 0
    upserted: int = 0
    deleted: int = 0
    pages: int = field(default=0, repr=False)

    def public(self) -> dict[str, int]:
        return {"fetched": self.fetched, "upserted": self.upserted, "deleted": self.deleted}


ProgressFn = Callable[[Stream, StreamCounts, bool], None]
"""Called after each page: (stream, counts so far, stream finished)."""


class SyncEngine:
    """One sync run of one connection."""

    def __init__(
        self,
        engine: Engine,
        source: Source,
        *,
        connection_id: int,
        run_id: int,
        mode: SyncMode,
        streams: tuple[Stream, ...] = STREAMS,
        progress: ProgressFn | None = None,
        settings: Settings | None = None,
        refresh_rollups: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        if mode not in (SyncMode.FULL, SyncMode.INCREMENTAL):
            raise ValueError(f"mode must be full or incremental, not {mode!r}")
        self.engine = engine
        self.source = source
        self.connection_id = connection_id
        self.run_id = run_id
        self.mode = mode
        self.streams = streams
        self.progress = progress
        self.settings = settings  # the caller's: core.store converts deals with its currency
        self.refresh = refresh_rollups  # the caller's shared refresh; else one of its own
        self.counts = {s: StreamCounts() for s in streams}
        self.started_at = utcnow()
        self._locks = {lane: asyncio.Lock() for lane in BOTH}
        self._connections: dict[int, DbConnection] = {}
        self._counts_written = 0.0
        self._warnings: list[str] = []
        self._states: dict[str, dict[str, Any]] = {}  # stream -> its state when the run began
        # core.store.upsert_records: the owners whose person a committed page of the lane
        # made sure of (one set per lane: another lane's person shows after its commit)
        self._owners_known: dict[int, set[tuple[Any, Any]]] = {lane: set() for lane in BOTH}

    async def run(self) -> dict[str, Any]:
        """Run every stream; record the outcome on the run and the connection."""
        try:
            for lane in BOTH if self.engine.dialect.name == "postgresql" else (DEALS_LANE,):
                self._connections[lane] = await asyncio.to_thread(self._open)
            return await self._run()
        finally:
            await asyncio.to_thread(self._close)

    async def _run(self) -> dict[str, Any]:
        self._states = await self._db(self._mark_started)
        try:
            info = await self.source.check()
            self._warnings = list(info.warnings)
            await self._db(self._set_home_currency, info.home_currency)
            async with asyncio.TaskGroup() as group:
                for stream in self.streams:
                    group.create_task(self._sync_stream(stream))
        except BaseException as exc:
            error = _unwrap(exc)
            await self._db(self._mark_failed, error)
            await self._refresh_rollups()  # the pages it committed count
            raise error from None
        await self._db(self._mark_succeeded)
        await self._refresh_rollups()
        return self.summary()

    async def _refresh_rollups(self) -> None:
        """Rebuild the months this sync touched (core.metrics.rollups); metrics stay exact without
        it, only slower, so a failure is logged and the sync's outcome stands."""
        try:
            if self.refresh is not None:
                await self.refresh()
            else:
                await self._db(rollups.refresh, self.engine, self.connection_id)
        except Exception:
            log.exception("refreshing the metric rollups failed",
                          extra={"connection_id": self.connection_id, "run_id": self.run_id})

    def summary(self) -> dict[str, Any]:
        return {s: c.public() for s, c in self.counts.items()}

    async def _db(self, fn: Callable[..., Any], *args: Any, lanes: tuple[int, ...] = BOTH) -> Any:
        """Run `fn` in a thread, one at a time on each of `lanes` (taken in order: never a
        cycle); a function that writes on the run's connections is given its lane (see
        _stream_db). A cancelled caller (a sibling stream failed) still waits for the
        thread: a write cannot be stopped half way, and the connection must not be used
        again, or closed and returned to the pool, while that transaction is still open."""
        async with contextlib.AsyncExitStack() as held:
            for lane in lanes:
                await held.enter_async_context(self._locks[lane])
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                raise

    async def _stream_db(self, stream: Stream, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(lane, *args)` on `stream`'s lane (LANES; its connection: self._connections),
        holding every lane for the streams that have none."""
        lanes = LANES.get(stream, BOTH) if len(self._connections) > 1 else (DEALS_LANE,)
        return await self._db(fn, lanes[0], *args, lanes=lanes)

    async def _sync_stream(self, stream: Stream) -> None:
        state = dict(self._states.get(stream) or {})
        full_since: str | None = state.get("full_started_at")
        if self.mode == SyncMode.FULL and not full_since:
            full_since, cursor = self.started_at.isoformat(), None
        else:
            cursor = state.get("cursor")
        written: str | None = state.get("digest")  # WHOLE_READ: the last page written
        # a first sync: core.store's `new`
        new = self.mode == SyncMode.FULL and not await self._stream_db(
            stream, self._stores_any, stream)
        queue = _ReadAhead(READ_AHEAD_RECORDS if self.engine.dialect.name == "postgresql"
                           else READ_AHEAD_RECORDS_SQLITE)

        async def produce() -> None:
            try:
                async for page in self.source.read(stream, cursor):
                    await queue.put(page)
                await queue.put(None)
            except BaseException as exc:  # handed to the consumer, which re-raises
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        taken: list[Page | BaseException | None] = []  # out of the queue, not written yet
        try:
            while (item := taken.pop() if taken else await queue.get()) is not None:
                if isinstance(item, BaseException):
                    if stream in OPTIONAL_STREAMS and isinstance(item, AuthError | ConfigError):
                        self._skip_optional(stream, item)
                        return
                    raise item
                pages = [item]  # and the pages already waiting that can join it
                records = len(item.records)
                while not queue.empty():
                    waiting = queue.get_nowait()
                    if not (isinstance(waiting, Page)
                            and records + len(waiting.records) <= MERGE_RECORDS
                            and _joins(pages, waiting)):
                        taken.append(waiting)
                        break
                    pages.append(waiting)
                    records += len(waiting.records)
                digest = _digest(pages) if stream in WHOLE_READ else None
                if digest is not None and digest == written and not full_since \
                        and self.mode == SyncMode.INCREMENTAL:
                    self._unchanged(stream, pages)
                else:
                    await self._stream_db(stream, self._write_pages, stream, pages, full_since,
                                          new, digest)
                    written = digest
                self._report(stream, done=False)
            if self.mode == SyncMode.FULL and full_since:
                await self._db(self._finish_full, DEALS_LANE, stream,
                               datetime.fromisoformat(full_since))
        finally:
            producer.cancel()
        self._report(stream, done=True)

    def _skip_optional(self, stream: Stream, error: SourceError) -> None:
        """An optional stream the CRM refuses (credentials granted before crmsync read it, an
        edition without it): the other streams go on, the pages it committed stay, nothing of
        it is tombstoned, and the refusal is a warning on the connection (docs/sync.md)."""
        log.warning("stream %s skipped: %s", stream, error,
                    extra={"connection_id": self.connection_id, "run_id": self.run_id})
        self._warnings.append(
            f"{stream} not synced, the CRM refused them ({error}); give crmsync the access "
            f"the CRM's page in docs/ lists for {stream} to sync them too")
        self._report(stream, done=True)

    def _report(self, stream: Stream, *, done: bool) -> None:
        if self.progress:
            self.progress(stream, self.counts[stream], done)

    # -- database work (runs in a thread, one transaction each) ----------------

    def _open(self) -> DbConnection:
        """The connection every page of this run is written on: no pool checkout per page,
        and commits that do not wait for their WAL flush (core.store.fast_commits)."""
        connection = self.engine.connect()
        store.fast_commits(connection, True)
        return connection

    def _close(self) -> None:
        while self._connections:
            _, connection = self._connections.popitem()
            try:
                store.fast_commits(connection, False)
            finally:
                connection.close()

    def _unchanged(self, stream: Stream, pages: list[Page]) -> None:
        """Pages of a WHOLE_READ stream equal to the last ones written (no deletions): the
        store has every row as they are; counted as written (seen), nothing is written."""
        counts = self.counts[stream]
        records = [record for page in pages for record in page.records]
        counts.pages += len(pages)
        counts.fetched += len(records)
        counts.upserted += len({record.remote_id for record in records})

    def _stores_any(self, lane: int, stream: str) -> bool:
        """Whether the store holds any row of the stream of this connection."""
        with session_scope(self._connections[lane]) as session:
            return store.stores_any(session, stream=stream, connection_id=self.connection_id)

    def _write_pages(self, lane: int, stream: Stream, pages: list[Page],
                     full_since: str | None, new: bool, digest: str | None = None) -> None:
        """_write_pages_once, again if PostgreSQL made it a deadlock's victim (another
        connection's writer sharing persons: core.db.retrying_deadlocks), with the counts
        and owners known as they were before it."""
        counts, known = replace(self.counts[stream]), set(self._owners_known[lane])

        def undo() -> None:
            vars(self.counts[stream]).update(vars(counts))
            self._owners_known[lane].clear()
            self._owners_known[lane].update(known)

        retrying_deadlocks(lambda: self._write_pages_once(lane, stream, pages, full_since,
                                                          new, digest), on_retry=undo)

    def _write_pages_once(self, lane: int, stream: Stream, pages: list[Page],
                          full_since: str | None, new: bool, digest: str | None) -> None:
        """Pages in one transaction (see _joins): their records merged as one page, their
        deletions, and the newest of their cursors, so a crash resumes after the last
        page committed. Fewer, larger transactions cost the writer (Python and the
        database) less per record: one merge, one cursor write and one commit. `new`: a
        full sync of a stream the store had no row of (core.store.upsert_records)."""
        counts = self.counts[stream]
        records = [record for page in pages for record in page.records]
        deletions = [deletion for page in pages for deletion in page.deletions]
        cursor = next((page.cursor for page in reversed(pages) if page.cursor is not None), None)
        with session_scope(self._connections[lane]) as session:
            upserted = store.upsert_records(
                session, stream=stream, connection_id=self.connection_id, records=records,
                owners_known=self._owners_known[lane], settings=self.settings, new=new,
            )
            deleted = store.apply_deletions(
                session, connection_id=self.connection_id, deletions=deletions
            )
            if cursor is not None:
                state = {"cursor": cursor, "full_started_at": full_since}
                if digest is not None:
                    state["digest"] = digest
                store.set_state(
                    session, connection_id=self.connection_id, stream=stream, state=state
                )
            before, counts.pages = counts.pages, counts.pages + len(pages)
            if records and not ANALYZE_AFTER_PAGES.isdisjoint(range(before + 1, counts.pages + 1)):
                store.refresh_statistics(session, stream=stream,
                                         written=counts.upserted + len(records))
            counts.fetched += len(records) + len(deletions)
            counts.upserted += upserted
            counts.deleted += deleted
            if time.monotonic() - self._counts_written >= COUNTS_EVERY:  # progress for the API
                store.update_run(
                    session, self.run_id, counts=self.summary(), api_calls=self.source.api_calls
                )
                self._counts_written = time.monotonic()

    def _finish_full(self, lane: int, stream: Stream, since: datetime) -> None:
        with session_scope(self._connections[lane]) as session:
            state = store.get_state(session, connection_id=self.connection_id, stream=stream)
            state["full_started_at"] = None
            store.set_state(session, connection_id=self.connection_id, stream=stream, state=state)
            if stream in TOMBSTONE_ON_FULL:
                self.counts[stream].deleted += store.tombstone_unseen(
                    session,
                    stream=stream,
                    connection_id=self.connection_id,
                    since=since,
                    now=utcnow(),
                )
            store.update_run(session, self.run_id, counts=self.summary())

    def _mark_started(self) -> dict[str, dict[str, Any]]:
        """The run marked running, and every stream's state read for it (one statement,
        where each stream read its own in a transaction of its own)."""
        with session_scope(self.engine) as session:
            store.update_run(
                session,
                self.run_id,
                status=RunStatus.RUNNING,
                started_at=self.started_at,
                counts=self.summary(),
                error=None,
            )
            return store.get_states(session, connection_id=self.connection_id)

    def _set_home_currency(self, currency: str | None) -> None:
        with session_scope(self.engine) as session:
            connection = session.get(Connection, self.connection_id)
            if connection and currency and connection.home_currency != currency:
                connection.home_currency = currency

    def _mark_succeeded(self) -> None:
        now = utcnow()
        with session_scope(self.engine) as session:
            store.update_run(
                session,
                self.run_id,
                status=RunStatus.SUCCEEDED,
                finished_at=now,
                counts=self.summary(),
                api_calls=self.source.api_calls,
            )
            connection = session.get(Connection, self.connection_id)
            if connection:  # a source's warnings (SourceInfo.warnings) stay visible there
                connection.status, connection.last_synced_at = ConnectionStatus.ACTIVE, now
                connection.last_error = "; ".join(f"warning: {w}" for w in self._warnings) \
                    or None

    def _mark_failed(self, error: BaseException) -> None:
        message = _describe(error)
        with session_scope(self.engine) as session:
            store.update_run(
                session,
                self.run_id,
                status=RunStatus.FAILED,
                finished_at=utcnow(),
                counts=self.summary(),
                api_calls=self.source.api_calls,
                error=message,
            )
            connection = session.get(Connection, self.connection_id)
            if connection:
                connection.status = (ConnectionStatus.NEEDS_REAUTH if isinstance(error, AuthError)
                                     else ConnectionStatus.ERROR)
                connection.last_error = message
        log.warning("sync of connection %s failed (run %s): %s", self.connection_id,
                    self.run_id, message,
                    extra={"connection_id": self.connection_id, "run_id": self.run_id})


class _ReadAhead:
    """The pages a stream has read and its writer has not taken yet, then None (the end) or
    the reader's exception: at most `limit` records and deletions (a larger page alone when
    none wait); the reader waits for room. One reader and one writer (SyncEngine._sync_stream)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Page | BaseException | None] = deque()
        self._records = 0
        self._room, self._arrived = asyncio.Event(), asyncio.Event()

    async def put(self, item: Page | BaseException | None) -> None:
        size = _size(item)
        while self._items and self._records + size > self.limit:
            self._room.clear()
            await self._room.wait()
        self._items.append(item)
        self._records += size
        self._arrived.set()

    async def get(self) -> Page | BaseException | None:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self.get_nowait()

    def get_nowait(self) -> Page | BaseException | None:
        item = self._items.popleft()
        self._records -= _size(item)
        self._room.set()
        return item

    def empty(self) -> bool:
        return not self._items


def _size(item: Page | BaseException | None) -> int:
    """What an item of _ReadAhead counts for: a page its records and deletions (one at least)."""
    return max(1, len(item.records) + len(item.deletions)) if isinstance(item, Page) else 0


def _joins(pages: list[Page], page: Page) -> bool:
    """Whether `page` can be written in one transaction with `pages`, with the outcome of
    writing it after them: records only (no deletions to order), and none of a record
    already among them (a deal read twice keeps both of its versions and stage changes)."""
    if page.deletions or any(p.deletions for p in pages):
        return False
    ids = {record.remote_id for p in pages for record in p.records}
    return ids.isdisjoint(record.remote_id for record in page.records)


def _digest(pages: list[Page]) -> str | None:
    """A digest of the pages' records (their dataclass repr: every field, raw included), or
    None when they carry deletions (written as they are)."""
    if any(page.deletions for page in pages):
        return None
    records = repr([record for page in pages for record in page.records])
    return hashlib.sha256(records.encode()).hexdigest()


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from the TaskGroup."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(error: BaseException) -> str:
    if isinstance(error, AuthError):
        return f"authorization failed: {error}. Re-enter the connection's credentials."
    if isinstance(error, SourceError):
        return str(error)
    if isinstance(error, asyncio.CancelledError):
        return "the sync was cancelled"
    return f"{type(error).__name__}: {error}"
