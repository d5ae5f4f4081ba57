"""Schedule decisions (workers.schedule) with fixed clocks, and the database side of them."""

from datetime import UTC, datetime, timedelta

import pytest

from core import store
from core.db import session_scope
from core.models import Connection
from workers.schedule import (
    TICK_SLACK,
    ConnectionSchedule,
    due_mode,
    due_syncs,
    enqueue_due_syncs,
    interval_of,
    load_schedules,
    next_sync_at,
    nightly_boundary,
)

NOW = datetime(2026, 3, 10, 14, 7, tzinfo=UTC)
MIN15 = timedelta(minutes=15)


def conn(last_run=None, last_full=None, status="active", interval=MIN15, cid=1):
    return ConnectionSchedule(cid, status, interval, last_run, last_full)


def test_nightly_boundary_is_the_latest_local_hour_at_or_before_now():
    assert nightly_boundary(NOW, 2, "UTC") == datetime(2026, 3, 10, 2, tzinfo=UTC)
    assert nightly_boundary(NOW, 20, "UTC") == datetime(2026, 3, 9, 20, tzinfo=UTC)
    assert nightly_boundary(NOW, 14, "UTC") == datetime(2026, 3, 10, 14, tzinfo=UTC)
    # 14:07 UTC is 23:07 in Tokyo: 02:00 Tokyo was 17:00 UTC the day before
    assert nightly_boundary(NOW, 2, "Asia/Tokyo") == datetime(2026, 3, 9, 17, tzinfo=UTC)
    # New York: EDT (UTC-4) from 2026-03-08, so 02:00 local on the 10th is 06:00 UTC
    assert nightly_boundary(NOW, 2, "America/New_York") == datetime(2026, 3, 10, 6, tzinfo=UTC)


def test_a_connection_never_synced_gets_a_full_sync_now():
    assert due_mode(conn(), NOW, None) == "full"


def test_not_due_before_its_interval_has_passed():
    nightly = nightly_boundary(NOW, 2, "UTC")
    assert due_mode(conn(NOW - timedelta(minutes=14), NOW - timedelta(hours=5)), NOW,
                    nightly) is None
    assert due_mode(conn(NOW - MIN15, NOW - timedelta(hours=5)), NOW, nightly) == "incremental"
    hourly = timedelta(minutes=60)
    assert due_mode(conn(NOW - timedelta(minutes=59), NOW - timedelta(hours=5),
                         interval=hourly), NOW, nightly) is None


def test_a_run_queued_seconds_after_its_tick_is_due_at_the_tick_an_interval_later():
    """Runs are dated when queued, after the tick that decided them (a fleet takes seconds
    to queue): the next tick, an interval after that one, must queue them again, not the
    tick after it (a 1-minute interval made 2). Half a tick early at most (TICK_SLACK)."""
    minute = timedelta(minutes=1)
    queued_late = NOW - minute + timedelta(seconds=8)  # the last tick was NOW - 1 minute
    assert due_mode(conn(queued_late, NOW - timedelta(hours=1), interval=minute), NOW,
                    None) == "incremental"
    assert due_mode(conn(NOW - MIN15 + timedelta(seconds=29), NOW - timedelta(hours=1)),
                    NOW, None) == "incremental"
    assert due_mode(conn(NOW - MIN15 + timedelta(seconds=31), NOW - timedelta(hours=1)),
                    NOW, None) is None  # more than half a tick early: the next tick
    assert due_mode(conn(NOW - timedelta(seconds=29), NOW, interval=minute), NOW, None) is None
    assert next_sync_at(conn(NOW - timedelta(minutes=5), NOW), NOW) == \
        NOW + timedelta(minutes=10) - TICK_SLACK


def test_nightly_full_when_no_full_sync_succeeded_since_the_boundary():
    nightly = nightly_boundary(NOW, 2, "UTC")  # 02:00 today
    due = NOW - timedelta(minutes=20)
    assert due_mode(conn(due, datetime(2026, 3, 10, 1, 59, tzinfo=UTC)), NOW, nightly) == "full"
    assert due_mode(conn(due, datetime(2026, 3, 10, 2, 0, tzinfo=UTC)), NOW,
                    nightly) == "incremental"
    assert due_mode(conn(due, None), NOW, nightly) == "full"
    assert due_mode(conn(due, None), NOW, None) == "incremental"  # nightly sync turned off


def test_a_connection_waiting_for_new_credentials_is_left_alone():
    assert due_mode(conn(status="needs_reauth"), NOW, None) is None
    assert due_mode(conn(NOW - timedelta(days=2), status="error"), NOW, None) == "incremental"


def test_due_syncs_over_several_connections():
    schedules = [conn(cid=1), conn(NOW - timedelta(minutes=3), NOW, cid=2),
                 conn(NOW - timedelta(hours=1), NOW - timedelta(hours=1), cid=3),
                 conn(NOW - timedelta(hours=1), NOW - timedelta(days=1), cid=4)]
    assert due_syncs(schedules, NOW, nightly_hour=2, zone="UTC") == [
        (1, "full"), (3, "incremental"), (4, "full")]


def test_due_syncs_come_longest_overdue_first():
    """Queues run in this order: a connection that waited long (a busy queue, a long
    interval) goes before one that fell due a minute ago, whatever their ids."""
    hourly = timedelta(minutes=60)
    schedules = [conn(NOW - timedelta(minutes=16), NOW, cid=1),  # due 1 minute ago
                 conn(NOW - timedelta(minutes=70), NOW, interval=hourly, cid=2),  # 10
                 conn(NOW - timedelta(minutes=40), NOW, cid=3),  # 25 minutes ago
                 conn(cid=4)]  # never synced
    assert due_syncs(schedules, NOW, nightly_hour=None, zone="UTC") == [
        (4, "full"), (3, "incremental"), (2, "incremental"), (1, "incremental")]


@pytest.mark.parametrize(("config", "minutes"), [
    ({}, 15), (None, 15), ({"sync_interval_minutes": 60}, 60), ({"sync_interval_minutes": "5"}, 5),
    ({"sync_interval_minutes": 0}, 15), ({"sync_interval_minutes": "soon"}, 15),
    ({"sync_interval_minutes": 99999}, 15)])
def test_interval_comes_from_the_connection_config(config, minutes):
    assert interval_of(config) == timedelta(minutes=minutes)


def _connection(engine, name, **config) -> int:
    with session_scope(engine) as session:
        c = Connection(provider="zoho", name=name, config=config)
        session.add(c)
        session.flush()
        return int(c.id or 0)


def _run(engine, cid, mode, status, created_at):
    with session_scope(engine) as session:
        run = store.create_run(session, connection_id=cid, mode=mode)
        store.update_run(session, int(run.id or 0), status=status, created_at=created_at)


def test_load_schedules_reads_last_runs_from_the_database(engine):
    fresh = _connection(engine, "fresh")
    busy = _connection(engine, "busy", sync_interval_minutes=30)
    _run(engine, busy, "full", "succeeded", NOW - timedelta(hours=3))
    _run(engine, busy, "full", "failed", NOW - timedelta(hours=2))
    _run(engine, busy, "incremental", "succeeded", NOW - timedelta(minutes=40))
    _run(engine, busy, "webhook", "succeeded", NOW - timedelta(minutes=1))  # not scheduled work
    with session_scope(engine) as session:
        got = {s.connection_id: s for s in load_schedules(session)}
    assert got[fresh] == ConnectionSchedule(fresh, "active", MIN15, None, None)
    assert got[busy] == ConnectionSchedule(busy, "active", timedelta(minutes=30),
                                           NOW - timedelta(minutes=40), NOW - timedelta(hours=3))


class RecordingQueue:
    def __init__(self):
        self.calls = []

    async def enqueue_sync(self, connection_id, mode):
        self.calls.append((connection_id, mode))
        return 100 + connection_id


async def test_enqueue_due_syncs_hands_due_connections_to_the_runner(engine):
    from tests.integration.zoho_helpers import make_context

    url = engine.url.render_as_string(hide_password=False)
    ctx = make_context(engine, url)
    due = _connection(engine, "due")
    recent = _connection(engine, "recent")
    _run(engine, due, "full", "succeeded", NOW - timedelta(minutes=20))
    _run(engine, recent, "full", "succeeded", NOW - timedelta(minutes=5))
    queue = RecordingQueue()
    queued = await enqueue_due_syncs(ctx, queue, now=NOW)
    assert queue.calls == [(due, "incremental")]
    assert queued == [(due, "incremental", 100 + due)]
