"""The rollup refresh after a small change (core.metrics.rollups): CPU per refresh of one
connection's rollups after some of its deals changed, in a store shared by others.

Run: python -m tests.bench.refresh_bench [--connections 20] [--deals 2000] [--trials 20]
     [--db postgresql|sqlite] [--sizes 1,5,10]

Loads `--connections` connections of `--deals` deals (close dates over 23 months, 8 owners,
won, lost and open deals of several probabilities, 10% of the amounts in no home currency)
and 200 accounts each through core.store, builds the rollups, then `--trials` times per size
(`--sizes`: deals changed): changes that many deals of the first connection (a new close
date anywhere in the span, amount, owner and status) and times its refresh. Prints per size
the mean CPU of the process (getrusage) and of the PostgreSQL backends (/proc), the
statement time and the rows the statements touched (pg_stat_statements, when the server
preloads it), and the rows of deal_day, deal_week and deal_month written (new row ids;
SQLite reuses the ids of deleted rows, so there it undercounts). Never run by the test
suite.
"""

import argparse
import random
import resource
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text

from core import store
from core.db import make_engine, session_scope
from core.metrics import rollups
from core.metrics.zone import ensure_zone
from core.models import Connection
from core.records import AccountRecord, DealRecord
from tests.bench import common

START = date(2024, 1, 1)
SPAN = 700  # days: 23 months


def _deal(rng: random.Random, i: int, stamp: datetime) -> DealRecord:
    status = rng.choice(("won", "lost", "open", "open"))
    amount = Decimal(rng.randrange(100, 100_000)) / 100
    owner = f"rep{rng.randrange(8)}@x.com"
    return DealRecord(f"d{i}", f"deal {i}", amount=amount,
                      amount_home=None if rng.random() < 0.1 else amount, currency="EUR",
                      status=status, close_date=START + timedelta(days=rng.randrange(SPAN)),
                      probability=Decimal(rng.choice((10, 25, 50, 75))) if status == "open"
                      else None,
                      remote_created_at=datetime(2023, 12, 1, tzinfo=UTC),
                      remote_modified_at=stamp, owner_email=owner,
                      owner_name=owner.split("@")[0].title())


def _load(engine, connections: int, deals: int) -> list[int]:
    rng = random.Random(7)
    ids = []
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(connections):
        with session_scope(engine) as session:
            ensure_zone(session, "UTC")
            connection = Connection(provider="zoho", name=f"c{n}", home_currency="EUR")
            session.add(connection)
            session.flush()
            cid = int(connection.id or 0)
            store.upsert_records(session, stream="deals", connection_id=cid,
                                 records=[_deal(rng, i, stamp) for i in range(deals)])
            store.upsert_records(session, stream="accounts", connection_id=cid, records=[
                AccountRecord(f"a{i}", f"acct {i}", owner_email=f"rep{i % 8}@x.com",
                              remote_created_at=datetime(2024, 1, 1, tzinfo=UTC)
                              + timedelta(days=rng.randrange(SPAN)))
                for i in range(200)])
        ids.append(cid)
    return ids


def _statements(engine) -> tuple[float, int] | None:
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(rows), 0) "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())")).one()
        return float(row[0]), int(row[1])
    except Exception:
        return None


def _reset(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_statements_reset()"))


def _backends(engine) -> float:
    with engine.connect() as conn:
        pids = conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database()")).all()
    return sum(common.process_cpu(pid) for pid in pids)


def _ids(engine, cid: int) -> dict[str, set[int]]:
    out = {}
    with engine.connect() as conn:
        for period in ("day", "week", "month"):
            table = rollups.ROLLUP_OF["deal"][period]
            out[period] = set(conn.scalars(select(table.c.id).where(
                table.c.connection_id == cid)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--sizes", default="1,5,10", help="deals changed per refresh")
    args = parser.parse_args()
    url = common.fresh_database(args.db, "refresh_bench")
    engine = make_engine(url)
    cids = _load(engine, args.connections, args.deals)
    rollups.refresh(engine)
    rollups.refresh(engine)  # anything the first build left
    postgres = args.db == "postgresql"
    rng = random.Random(11)
    version = datetime(2025, 6, 1, tzinfo=UTC)
    cid = cids[0]
    print(f"{args.connections} connections x {args.deals} deals, {args.db}, "
          f"{args.trials} refreshes of one connection per size")
    for size in (int(n) for n in args.sizes.split(",")):
        cpu = backend = stmt_ms = 0.0
        stmt_rows = 0
        rewritten = {"day": 0, "week": 0, "month": 0}
        stats = postgres and _statements(engine) is not None
        for _ in range(args.trials):
            version += timedelta(seconds=1)
            changed = [_deal(rng, rng.randrange(args.deals), version) for _ in range(size)]
            with session_scope(engine) as session:
                store.upsert_records(session, stream="deals", connection_id=cid,
                                     records=changed)
            before_ids = _ids(engine, cid)
            pg0 = _backends(engine) if postgres else 0.0
            if stats:
                _reset(engine)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            rollups.refresh(engine, cid)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            pg1 = _backends(engine) if postgres else 0.0
            cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            backend += pg1 - pg0
            if stats:
                found = _statements(engine)
                assert found is not None
                stmt_ms += found[0]
                stmt_rows += found[1]
            after_ids = _ids(engine, cid)
            for period in rewritten:
                rewritten[period] += len(after_ids[period] - before_ids[period])
        n = args.trials
        line = (f"{size:>2} deals changed: process {cpu / n * 1000:6.1f} ms CPU, "
                f"PostgreSQL backends {backend / n * 1000:6.1f} ms CPU")
        if stats:
            line += f", statements {stmt_ms / n:6.1f} ms, {stmt_rows / n:6.0f} rows"
        line += ("; rows rewritten: " + ", ".join(
            f"{period} {count / n:.0f}" for period, count in rewritten.items()))
        print(line, flush=True)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rollups.DEAL_DAY).where(
            rollups.DEAL_DAY.c.connection_id == cid))
    print(f"deal_day rows of the connection: {total}")
    engine.dispose()


if __name__ == "__main__":
    main()
