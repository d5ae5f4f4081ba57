"""workers.refresh.RollupRefresh: jobs finishing together share rollup refreshes, and each
still returns with the months it wrote rebuilt (PostgreSQL, where refreshes take a lock)."""

import asyncio
from datetime import date
from typing import Any

from core import store
from core.db import session_scope
from core.metrics import rollups
from tests.integration.test_rollups import _clean, _deal, _load
from workers.refresh import BACKGROUND, RollupRefresh

JAN, FEB, MAR = (rollups.month_of(date(2025, m, 1)) for m in (1, 2, 3))


async def test_jobs_finishing_together_share_two_refreshes_at_most(pg_engine):
    cid = _load(pg_engine)
    refresh = RollupRefresh()
    assert await refresh(pg_engine) > 0  # the first build
    with session_scope(pg_engine) as session:  # January and March dirty
        store.upsert_records(session, stream="deals", connection_id=cid,
                             records=[_deal("d1", date(2025, 3, 20), "won", "1200")])
    assert _clean(pg_engine) == [FEB]
    done = await asyncio.gather(*(refresh(pg_engine) for _ in range(20)))
    # the first caller's refresh, then one more for the 19 that asked while it ran (it
    # finds nothing left to rebuild); the others joined those
    assert sum(1 for months in done if months) == 1, done
    assert _clean(pg_engine) == [JAN, FEB, MAR]


async def test_a_write_made_during_a_refresh_gets_a_refresh_of_its_own(pg_engine):
    cid = _load(pg_engine)
    refresh = RollupRefresh()
    await refresh(pg_engine)
    first = asyncio.create_task(refresh(pg_engine))  # running (nothing dirty yet)
    await asyncio.sleep(0)
    with session_scope(pg_engine) as session:  # committed while it may already run
        store.upsert_records(session, stream="deals", connection_id=cid,
                             records=[_deal("d3", date(2025, 1, 5), "won", "250.25")])
    await refresh(pg_engine)  # asked after the write: not served by the running one
    await first
    assert _clean(pg_engine) == [JAN, FEB, MAR]



async def test_a_connections_refresh_does_not_wait_for_another_connections(pg_engine):
    first = _load(pg_engine)
    rollups.refresh(pg_engine)
    with session_scope(pg_engine) as session:
        second = _connection(session)
        store.upsert_records(session, stream="deals", connection_id=second,
                             records=[_deal("e1", date(2025, 2, 3), "won", "10")])
        store.upsert_records(session, stream="deals", connection_id=first,
                             records=[_deal("d1", date(2025, 3, 20), "won", "1200")])
    rollups.refresh(pg_engine)  # February, new for the second: the store-wide part
    with session_scope(pg_engine) as session:  # both dirty again
        store.upsert_records(session, stream="deals", connection_id=second,
                             records=[_deal("e1", date(2025, 2, 3), "won", "20")])
        store.upsert_records(session, stream="deals", connection_id=first,
                             records=[_deal("d1", date(2025, 3, 21), "won", "1300")])
    with rollups._locked(pg_engine, first):  # the first's refresh, holding its locks
        assert await asyncio.wait_for(asyncio.to_thread(
            rollups.refresh, pg_engine, second), 10) == 1
        assert _clean(pg_engine) == [JAN, FEB]  # the first's March still dirty
        waiting = asyncio.create_task(asyncio.to_thread(rollups.refresh, pg_engine, first))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # the same connection's refresh waits for it
    assert await asyncio.wait_for(waiting, 10) == 1
    assert _clean(pg_engine) == [JAN, FEB, MAR]


def _connection(session) -> int:
    from core.models import Connection

    connection = Connection(provider="hubspot", name="second", home_currency="EUR")
    session.add(connection)
    session.flush()
    return int(connection.id or 0)


async def test_refreshes_asked_soon_are_shared_and_cover_every_write_before_them(pg_engine):
    """Webhook jobs (PostgreSQL) leave their refresh to one started `delay` later in the
    background: the asks meanwhile share it, and an ask after it started gets another."""
    cid = _load(pg_engine)
    refresh = RollupRefresh()
    await refresh(pg_engine)
    with session_scope(pg_engine) as session:  # January and March dirty
        store.upsert_records(session, stream="deals", connection_id=cid,
                             records=[_deal("d1", date(2025, 3, 20), "won", "1200")])
    for _ in range(20):
        refresh.soon(pg_engine, cid, 0.5)
    await asyncio.sleep(0.2)
    assert _clean(pg_engine) == [FEB]  # nothing waited for it
    await asyncio.sleep(0.1)
    with session_scope(pg_engine) as session:  # before the refresh starts: covered by it
        store.upsert_records(session, stream="deals", connection_id=cid,
                             records=[_deal("d3", date(2025, 2, 20), "won", "300")])
    refresh.soon(pg_engine, cid, 0.5)
    assert len(refresh._soon[asyncio.get_running_loop()]) == 1  # one refresh waiting
    for _ in range(50):
        await asyncio.sleep(0.1)
        if _clean(pg_engine) == [JAN, FEB, MAR]:
            break
    assert _clean(pg_engine) == [JAN, FEB, MAR]
    assert not refresh._soon[asyncio.get_running_loop()]
    with session_scope(pg_engine) as session:  # after it ran: a refresh of its own
        store.upsert_records(session, stream="deals", connection_id=cid,
                             records=[_deal("d1", date(2025, 1, 20), "won", "1300")])
    refresh.soon(pg_engine, cid, 0.1)
    await asyncio.sleep(1.5)
    assert _clean(pg_engine) == [JAN, FEB, MAR]


async def test_background_refreshes_run_a_few_at_a_time(pg_engine):
    """However many connections' webhook jobs ask, at most BACKGROUND refreshes run at once:
    each holds a thread the jobs and the schedule's tick need too."""
    running, most, done = [0], [0], []

    class Slow(RollupRefresh):
        async def __call__(self, engine: Any, connection_id: int | None = None) -> int:
            running[0] += 1
            most[0] = max(most[0], running[0])
            await asyncio.sleep(0.05)
            running[0] -= 1
            done.append(connection_id)
            return 0

    refresh = Slow()
    for cid in range(1, 9):
        refresh.soon(pg_engine, cid, 0.01)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(done) == 8:
            break
    assert sorted(done) == list(range(1, 9)) and most[0] == BACKGROUND
    assert not refresh._soon[asyncio.get_running_loop()]
