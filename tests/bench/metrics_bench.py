"""Metrics benchmark: API latency of the metrics at a million deals.

Run: python -m tests.bench.metrics_bench [--deals 1000000] [--sqlite-deals N]
                                         [--db postgresql,sqlite] [--requests 30] [--keep]
     python -m tests.bench.metrics_bench --url URL   (a database kept by --keep, again)
     python -m tests.bench.metrics_bench --after-sync 300000 [--db postgresql]

For each database it creates a fresh store (PostgreSQL: a database of its own named
with the pid; SQLite: a temporary file), runs the migrations and loads, directly
(PostgreSQL COPY; SQLite executemany in one transaction), not through a CRM:
3 connections with home currencies USD, EUR and GBP (USD reports; fx_rate holds EUR
and GBP so every metric converts), 100 reps spread over them, each one person (in four
teams) as core.people matches them, 5 stages each, N/10 accounts and N deals whose close
dates spread over the 3 years 2023-2025 (won 45%, lost 35%, open 20%), with created dates
in the store's zone (Europe/Berlin) and owner persons, as core.store would write them.
Then ANALYZE, the rollups built as a sync builds them after it wrote
(core.metrics.rollups.refresh, timed), the API under uvicorn in a thread, a read API key,
and sequential HTTP requests (warm-up first) of every summary and series shape the
dashboard and the API use, and the drill-down: p50/p95 and the CPU time per request (this
process and the database's backends) are printed, with the load average.

--after-sync N instead syncs N deals from the Zoho sandbox (in a child process, with
CRMSYNC_TIMEZONE set, as a first sync of a new deployment) and measures the dashboard's
shapes at once, then again after the scheduled rollup job: the two should match.
"""

import argparse
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.bench.common import PG_URL, drop_database, fresh_database, process_cpu

ZONE = "Europe/Berlin"
FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2025, 12, 31)
OWNERS = 100
TEAMS = ("North", "South", "East", "West")  # rep i is in TEAMS[i % 4]
CONNECTIONS = (("crm-usd", "zoho", "USD"), ("crm-eur", "pipedrive", "EUR"),
               ("crm-gbp", "hubspot", "GBP"))
FX = {"EUR": "1.0850", "GBP": "1.2700"}
# remote_id, name, sort order, probability (x100), category
STAGES = (("s1", "Qualification", 1, 1000, "open"), ("s2", "Proposal", 2, 4000, "open"),
          ("s3", "Negotiation", 3, 7000, "open"), ("s4", "Closed Won", 4, 10000, "won"),
          ("s5", "Closed Lost", 5, 0, "lost"))
SCALE = 10_000  # Money: integer ten-thousandths (core.columns.ScaledDecimal(4))
QUARTER = ("2025-10-01", "2025-12-31")
ALL = (FIRST_DAY.isoformat(), LAST_DAY.isoformat())

DEAL_COLUMNS = ("connection_id", "remote_id", "remote_modified_at", "first_seen_at",
                "last_synced_at", "name", "amount", "currency", "exchange_rate", "amount_home",
                "stage", "stage_remote_id", "status", "probability", "close_date",
                "remote_created_at", "created_date", "owner_remote_id", "owner_email",
                "owner_name", "owner_person_id", "account_remote_id", "account_name", "pipeline")
ACCOUNT_COLUMNS = ("connection_id", "remote_id", "remote_modified_at", "first_seen_at",
                   "last_synced_at", "name", "industry", "owner_remote_id", "owner_email",
                   "owner_name", "owner_person_id", "remote_created_at", "created_date")
USER_COLUMNS = ("connection_id", "remote_id", "first_seen_at", "last_synced_at", "name",
                "email", "active", "team", "person_id", "person_match")
PERSON_COLUMNS = ("id", "name", "email", "team", "team_set_by_hand", "created_at",
                  "updated_at")
STAGE_COLUMNS = ("connection_id", "remote_id", "first_seen_at", "last_synced_at", "pipeline",
                 "name", "sort_order", "probability", "category")


def owner(i: int) -> tuple[int, str, str, str]:
    """(connection id, remote id, email, name) of rep i; reps are spread over connections."""
    return i % len(CONNECTIONS) + 1, f"u{i}", f"rep{i:03d}@example.com", f"Rep {i:03d}"


def person(i: int) -> int:
    """The person id of rep i (core.people: one person per email), as loaded."""
    return i + 1


class Stamp:
    """Timestamps as each database's driver takes them as text."""

    def __init__(self, kind: str) -> None:
        self.suffix = "+00" if kind == "postgresql" else ""

    def __call__(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") + self.suffix


def deal_rows(n: int, kind: str, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    zone = ZoneInfo(ZONE)
    stamp = Stamp(kind)
    now = stamp(datetime(2026, 1, 1, tzinfo=UTC))
    span = (LAST_DAY - FIRST_DAY).days + 1
    accounts = max(20, n // 10)
    for i in range(n):
        rep = rnd.randrange(OWNERS)
        cid, owner_rid, email, owner_name = owner(rep)
        currency = CONNECTIONS[cid - 1][2]
        close = FIRST_DAY + timedelta(days=rnd.randrange(span))
        created = (datetime(close.year, close.month, close.day, tzinfo=UTC)
                   - timedelta(days=rnd.randrange(180), minutes=rnd.randrange(1440)))
        roll = rnd.random()
        stage = STAGES[3] if roll < 0.45 else STAGES[4] if roll < 0.80 else \
            STAGES[rnd.randrange(3)]
        amount = rnd.randrange(500, 200_000) * SCALE + rnd.randrange(100) * 100
        account = rnd.randrange(accounts)
        yield (cid, f"d{i}", now, now, now, f"Deal {i}", amount, currency, "1", amount,
               stage[1], stage[0], stage[4], stage[3], close.isoformat(), stamp(created),
               created.astimezone(zone).date().isoformat(), owner_rid, email, owner_name,
               person(rep), f"a{account}", f"Account {account}", "default")


def account_rows(n: int, kind: str, seed: int = 2) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    zone = ZoneInfo(ZONE)
    stamp = Stamp(kind)
    now = stamp(datetime(2026, 1, 1, tzinfo=UTC))
    span = (LAST_DAY - FIRST_DAY).days * 1440
    for i in range(n):
        rep = rnd.randrange(OWNERS)
        cid, owner_rid, email, owner_name = owner(rep)
        created = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=rnd.randrange(span))
        yield (cid, f"a{i}", now, now, now, f"Account {i}", "Software", owner_rid, email,
               owner_name, person(rep), stamp(created),
               created.astimezone(zone).date().isoformat())


def small_rows(kind: str) -> dict[str, list[tuple[Any, ...]]]:
    """People (one per rep, in teams, as core.people matches them by email), reps, stages."""
    now = Stamp(kind)(datetime(2026, 1, 1, tzinfo=UTC))
    people = [(person(i), name, email, TEAMS[i % len(TEAMS)], False, now, now)
              for i, (_, _, email, name) in enumerate(map(owner, range(OWNERS)))]
    users = [(cid, rid, now, now, name, email, True, TEAMS[i % len(TEAMS)], person(i), "email")
             for i, (cid, rid, email, name) in enumerate(map(owner, range(OWNERS)))]
    stages = [(cid, rid, now, now, "default", name, order, prob, category)
              for cid in range(1, len(CONNECTIONS) + 1)
              for rid, name, order, prob, category in STAGES]
    return {"person": people, "crm_user": users, "stage": stages}



def load(url: str, kind: str, deals: int) -> str:
    """Load the dataset; returns a read API key."""
    from sqlalchemy import text

    from core.db import make_engine, session_scope
    from core.models import ApiKey, Connection, FxRate, StoreMeta
    from core.security import hash_api_key, new_api_key

    engine = make_engine(url)
    key = new_api_key()
    with session_scope(engine) as session:
        for name, provider, currency in CONNECTIONS:
            session.add(Connection(name=name, provider=provider, home_currency=currency))
            session.flush()
        for code, rate in FX.items():
            session.add(FxRate(code=code, rate_to_reporting=Decimal(rate)))
        meta = session.get(StoreMeta, "created_date_timezone")
        if meta is None:
            session.add(StoreMeta(key="created_date_timezone", value=ZONE))
        else:
            meta.value = ZONE
        session.add(ApiKey(name="bench", key_hash=hash_api_key(key), prefix=key[:12],
                           scopes="read"))
    tables = {**small_rows(kind), "account": account_rows(max(20, deals // 10), kind),
              "deal": deal_rows(deals, kind)}
    columns = {"person": PERSON_COLUMNS, "crm_user": USER_COLUMNS, "stage": STAGE_COLUMNS,
               "account": ACCOUNT_COLUMNS, "deal": DEAL_COLUMNS}
    raw = engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection
        if kind == "postgresql":
            with dbapi.cursor() as cur:
                for table, rows in tables.items():
                    cols = ", ".join(columns[table])
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        batch: list[str] = []
                        for row in rows:
                            batch.append("\t".join(r"\N" if v is None else str(v) for v in row))
                            if len(batch) == 10_000:
                                copy.write("\n".join(batch) + "\n")
                                batch.clear()
                        if batch:
                            copy.write("\n".join(batch) + "\n")
                cur.execute("SELECT setval('person_id_seq', (SELECT max(id) FROM person))")
            dbapi.commit()
        else:
            assert isinstance(dbapi, sqlite3.Connection)
            dbapi.execute("BEGIN")
            for table, rows in tables.items():
                names = columns[table]
                dbapi.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                    f"({', '.join('?' * len(names))})", rows)
            dbapi.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if kind == "postgresql" else "ANALYZE"))
    engine.dispose()
    return key


def read_key(url: str) -> str:
    """A new read API key in the store at `url`."""
    from core.db import make_engine, session_scope
    from core.models import ApiKey
    from core.security import hash_api_key, new_api_key

    key = new_api_key()
    engine = make_engine(url)
    with session_scope(engine) as session:
        session.add(ApiKey(name="bench", key_hash=hash_api_key(key), prefix=key[:12],
                           scopes="read"))
    engine.dispose()
    return key


def build_rollups(url: str) -> float:
    """What a sync does after writing: core.metrics.rollups.refresh; returns the seconds it took."""
    from core.db import make_engine
    from core.metrics import rollups

    engine = make_engine(url)
    started = time.perf_counter()
    rollups.refresh(engine)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


TARGET_MS = 50.0  # p95 of every summary and series shape at 1,000,000 deals
SUMMARY, SERIES = "/api/v1/metrics/summary", "/api/v1/metrics/timeseries"
YEARS = {"start": ALL[0], "end": ALL[1]}
QUARTER_RANGE = {"start": QUARTER[0], "end": QUARTER[1]}
# Every summary and series shape the dashboard (leaderboard, trends, pipeline, scorecards)
# and the API's documented examples use, and the drill-down's first page.
QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("summary by owner, 1 quarter", SUMMARY, {**QUARTER_RANGE, "group_by": "owner"}),
    ("summary by team, 1 quarter", SUMMARY, {**QUARTER_RANGE, "group_by": "team"}),
    ("summary, total, 1 quarter", SUMMARY, {**QUARTER_RANGE, "group_by": "none"}),
    ("summary by owner, 3 years", SUMMARY, {**YEARS, "group_by": "owner"}),
    ("summary by owner, 2023-11-15..2025-02-14", SUMMARY,
     {"start": "2023-11-15", "end": "2025-02-14", "group_by": "owner"}),
    ("timeseries bookings/month, 3 years", SERIES,
     {"metric": "bookings", "interval": "month", **YEARS}),
    ("timeseries win_rate/month, 3 years", SERIES,
     {"metric": "win_rate", "interval": "month", **YEARS}),
    ("timeseries bookings/quarter, 3 years", SERIES,
     {"metric": "bookings", "interval": "quarter", **YEARS}),
    ("timeseries bookings/month by owner, 3y", SERIES,
     {"metric": "bookings", "interval": "month", **YEARS, "group_by": "owner"}),
    ("timeseries bookings/month by team, 3y", SERIES,
     {"metric": "bookings", "interval": "month", **YEARS, "group_by": "team"}),
    ("timeseries bookings/week, 2025", SERIES,
     {"metric": "bookings", "interval": "week", "start": "2025-01-01", "end": "2025-12-31"}),
    ("timeseries bookings/week by owner, 1 q", SERIES,
     {"metric": "bookings", "interval": "week", **QUARTER_RANGE, "group_by": "owner"}),
    ("drill-down bookings, 1 quarter, page 1", "/api/v1/metrics/deals",
     {"metric": "bookings", **QUARTER_RANGE}),
)


class BackendCpu:
    """CPU seconds used so far by the PostgreSQL backends of the database at `url` (zero
    for SQLite): read before and after a query's requests."""

    def __init__(self, url: str) -> None:
        from core.db import make_engine

        self.name = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
        self.engine = make_engine(PG_URL) if self.name else None

    def __call__(self) -> float:
        from sqlalchemy import text

        if self.engine is None:
            return 0.0
        with self.engine.connect() as connection:
            pids = connection.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :name "
                "AND pid <> pg_backend_pid()"), {"name": self.name}).scalars().all()
        total = 0.0
        for pid in pids:
            try:
                total += process_cpu(pid)
            except OSError:  # it ended meanwhile
                continue
        return total

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def time_requests(client: httpx.Client, label: str, path: str, params: dict[str, str],
                  requests: int, warmup: int) -> tuple[str, float, float]:
    """(label, p50, p95) in ms of `requests` sequential GETs after `warmup` untimed ones;
    RuntimeError unless every answer is 200."""
    times = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{label}: {response.status_code} {response.text[:500]}")
        if i >= warmup:
            times.append(elapsed * 1000)
    return label, statistics.median(times), percentile(times, 95)


Result = tuple[str, float, float, float]  # label, p50 ms, p95 ms, CPU ms per request


def measure(url: str, key: str, requests: int, warmup: int,
            queries: tuple[tuple[str, str, dict[str, str]], ...] = QUERIES,
            ) -> list[Result]:
    """Each query's p50 and p95, and the CPU time per request of the server: this process
    but the client's thread (the API under uvicorn in other threads) and the database's
    backends. On a loaded machine wall times wait for a core, CPU time does not."""
    from api.app import create_app
    from connectors.sandbox.server import BackgroundServer
    from core.config import Settings

    settings = Settings(database_url=url, secret_key=os.environ["BENCH_KEY"], timezone=ZONE)
    results = []
    backends = BackendCpu(url)
    with BackgroundServer(create_app(settings)) as server, \
            httpx.Client(base_url=server.url, timeout=120,
                         headers={"Authorization": f"Bearer {key}"}) as client:
        for label, path, params in queries:
            cpu = server_cpu(backends)
            _, p50, p95 = time_requests(client, label, path, params, requests, warmup)
            cpu = server_cpu(backends) - cpu
            results.append((label, p50, p95, cpu * 1000 / (requests + warmup)))
        check = client.get(queries[1][1], params=queries[1][2]).json()
        total = check["total"]
        print(f"  check: {queries[1][0]}: total deals_won {total['deals_won']:,}, deals_lost "
              f"{total['deals_lost']:,}, bookings {total['bookings']} {check['currency']}, "
              f"{len(check['data'])} rows")
    backends.close()
    return results


def server_cpu(backends: BackendCpu) -> float:
    """CPU seconds so far of the API (this process but the calling, client thread) and of
    the database's backends."""
    return time.process_time() - time.thread_time() + backends()


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(results: list[Result]) -> None:
    print(f"  {'query':<42} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>7}  target p95 <= "
          f"{TARGET_MS:.0f} ms")
    for label, p50, p95, cpu in results:
        print(f"  {label:<42} {p50:8.1f} {p95:8.1f} {cpu:7.1f}  "
              f"{'ok' if p95 <= TARGET_MS else 'MISSED'}")
    print(f"  ({load_average()}; CPU ms: the API's threads and the database's backends per "
          "request, the client excluded)")


def bench(kind: str, deals: int, requests: int, warmup: int, keep: bool) -> None:
    url = fresh_database(kind, "crmsync_metrics_bench", keep=keep)
    try:
        started = time.perf_counter()
        key = load(url, kind, deals)
        elapsed = time.perf_counter() - started
        print(f"{kind}: loaded {deals:,} deals + {max(20, deals // 10):,} accounts, "
              f"{OWNERS} reps, {len(CONNECTIONS)} connections in {elapsed:.1f} s "
              f"({deals / elapsed:,.0f} deals/s, ANALYZE included)")
        print(f"  rollups (monthly, weekly and daily) built in {build_rollups(url):.2f} s "
              f"({load_average()})")
        report(measure(url, key, requests, warmup))
    finally:
        if keep:
            print(f"  kept: {url}")
        else:
            drop_database(url)


def recent_queries(today: date) -> tuple[tuple[str, str, dict[str, str]], ...]:
    """The dashboard's shapes over the sandbox's data (the 18 months before today)."""
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    last_q = (quarter - timedelta(days=1)).replace(day=1)
    last_q = date(last_q.year, 3 * ((last_q.month - 1) // 3) + 1, 1)
    span = (date(today.year - 1, today.month, 1) - timedelta(days=184)).isoformat()
    return (
        ("summary by owner, last quarter", "/api/v1/metrics/summary",
         {"start": last_q.isoformat(), "end": (quarter - timedelta(days=1)).isoformat(),
          "group_by": "owner"}),
        ("summary by team, last quarter", "/api/v1/metrics/summary",
         {"start": last_q.isoformat(), "end": (quarter - timedelta(days=1)).isoformat(),
          "group_by": "team"}),
        ("summary by owner, 18 months", "/api/v1/metrics/summary",
         {"start": span, "end": today.isoformat(), "group_by": "owner"}),
        ("timeseries bookings/month, 18 months", "/api/v1/metrics/timeseries",
         {"metric": "bookings", "interval": "month", "start": span, "end": today.isoformat()}),
        ("timeseries bookings/quarter, 18 months", "/api/v1/metrics/timeseries",
         {"metric": "bookings", "interval": "quarter", "start": span,
          "end": today.isoformat()}),
        ("timeseries bookings/month by owner", "/api/v1/metrics/timeseries",
         {"metric": "bookings", "interval": "month", "start": span, "end": today.isoformat(),
          "group_by": "owner"}),
        ("timeseries bookings/week, 1 year", "/api/v1/metrics/timeseries",
         {"metric": "bookings", "interval": "week",
          "start": (today - timedelta(days=365)).isoformat(), "end": today.isoformat()}),
        ("drill-down bookings, last quarter, page 1", "/api/v1/metrics/deals",
         {"metric": "bookings", "start": last_q.isoformat(),
          "end": (quarter - timedelta(days=1)).isoformat()}),
    )


def after_sync(kind: str, deals: int, requests: int, warmup: int) -> None:
    """Issue F1 item 15: a first sync through the Zoho sandbox (CRMSYNC_TIMEZONE=ZONE),
    then the metrics measured at once, and again after the scheduled rollup job ran."""
    import asyncio

    from core.db import make_engine
    from tests.bench.sync_bench import run_child, start_sandbox

    os.environ["BENCH_TZ"] = ZONE
    proc, sandbox = start_sandbox(deals, 0.0)
    url = fresh_database(kind, "crmsync_metrics_bench")
    try:
        full = run_child(url, sandbox, "full", None)
        print(f"{kind}: first sync of {deals:,} deals from the Zoho sandbox in "
              f"{full['seconds']:.1f} s (CRMSYNC_TIMEZONE={ZONE}); measured at once "
              f"({load_average()}):")
        key = read_key(url)
        engine = make_engine(url)
        queries = recent_queries(date.today())
        at_once = measure(url, key, requests, warmup, queries)
        from core.config import Settings
        from core.security import SecretBox
        from workers.context import JobContext
        from workers.jobs import refresh_rollups

        ctx = JobContext(settings=Settings(database_url=url, secret_key=os.environ["BENCH_KEY"],
                                           timezone=ZONE), engine=engine,
                         secrets=SecretBox(os.environ["BENCH_KEY"]))
        started = time.perf_counter()
        months = asyncio.run(refresh_rollups(ctx))
        print(f"  scheduled rollup job afterwards: {months} months rebuilt in "
              f"{time.perf_counter() - started:.2f} s; measured again:")
        later = measure(url, key, requests, warmup, queries)
        engine.dispose()
        print(f"  {'query':<42} {'at once p50/p95, CPU':>22} {'later p50/p95, CPU':>22}")
        for (label, p50, p95, cpu), (_, l50, l95, lcpu) in zip(at_once, later, strict=True):
            print(f"  {label:<42} {p50:7.1f}/{p95:7.1f}, {cpu:5.1f} "
                  f"{l50:7.1f}/{l95:7.1f}, {lcpu:5.1f}")
        print(f"  ({load_average()}; CPU ms: the API's threads and the database's backends per "
          "request, the client excluded)")
    finally:
        proc.kill()
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--sqlite-deals", type=int, default=None,
                        help="deals for SQLite (default: --deals)")
    parser.add_argument("--db", default="postgresql,sqlite")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per query")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases (EXPLAIN)")
    parser.add_argument("--url", default=None,
                        help="instead: measure a database kept by --keep (no loading)")
    parser.add_argument("--after-sync", type=int, default=0, metavar="DEALS",
                        help="instead: sync DEALS deals from the Zoho sandbox, then measure "
                             "at once and after the scheduled rollup job")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    os.environ.setdefault("BENCH_KEY", Fernet.generate_key().decode())
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"sequential requests: {args.warmup} warm-up + {args.requests} timed per query")
    if args.url:
        report(measure(args.url, read_key(args.url), args.requests, args.warmup))
        return
    for kind in args.db.split(","):
        if args.after_sync:
            after_sync(kind, args.after_sync, args.requests, args.warmup)
            continue
        n = args.deals if kind == "postgresql" else (args.sqlite_deals or args.deals)
        bench(kind, n, args.requests, args.warmup, args.keep)


if __name__ == "__main__":
    main()
