"""Dashboard benchmark: full HTML page renders at a million deals, signed in as a manager.

Run: python -m tests.bench.dashboard_bench [--deals 1000000] [--requests 20] [--keep]
     [--url URL: the pages again on a database a --keep run kept]

On a fresh PostgreSQL database (tests/bench/common.fresh_database) it loads the metrics
benchmark's dataset (tests.bench.metrics_bench.load: 3 connections in USD, EUR and GBP,
100 reps who are people in four teams, N deals over 2023-2025, linked to their people as
core.people would link them), then builds the rollups as a first sync does
(core.metrics.rollups.refresh). Each rep gets a bookings goal for the quarter. Then the
app runs under uvicorn in a thread and sequential GETs of whole pages (HTML, every
query, template and byte) are timed with a manager's session cookie: p50 / p95 in ms.

The target is the leaderboard for a quarter under 1 s.
"""

import argparse
import os
import sys
import time
from datetime import date
from decimal import Decimal

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text

from api.access import SESSION_COOKIE
from api.app import create_app
from connectors.sandbox.server import BackgroundServer
from core import accounts
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.goals.targets import GoalInput, create_goal
from core.metrics import rollups
from tests.bench.common import drop_database, fresh_database
from tests.bench.metrics_bench import (
    OWNERS,
    QUARTER,
    ZONE,
    load,
    owner,
    time_requests,
)

YEAR = ("2025-01-01", "2025-12-31")
TARGET_MS = 1000.0
MANAGERS = ("boss@example.com", "north@example.com")  # of everyone, of team North


def people_and_goals(url: str, settings: Settings) -> tuple[float, str, str, int]:
    """Rollups, a goal per rep for the quarter; a manager of everyone and one of team North.
    Returns (seconds of the rollups, the two managers' session tokens, a rep's person id)."""
    engine = make_engine(url)
    started = time.perf_counter()
    rollups.refresh(engine)
    elapsed = time.perf_counter() - started
    first, last = (date.fromisoformat(d) for d in QUARTER)
    with session_scope(engine) as session:
        for i in range(OWNERS):
            create_goal(session, GoalInput(owner(i)[2], "bookings", first, last,
                                           Decimal(1_500_000 + 10_000 * i)), settings)
        accounts.add_user(session, email=MANAGERS[0], role="manager")
        accounts.add_user(session, email=MANAGERS[1], role="manager", teams=["North"])
    engine.dispose()
    return elapsed, *sign_in(url)


def sign_in(url: str) -> tuple[str, str, int]:
    """Session tokens of the manager of everyone and the one of team North, and a rep's
    person id, on a database people_and_goals prepared."""
    engine = make_engine(url)
    with session_scope(engine) as session:
        everyone, north = (accounts.open_session(session, accounts.find_user(session, e))[0]
                           for e in MANAGERS)
        rep = int(session.execute(text("SELECT id FROM person WHERE email = :e"),
                                  {"e": owner(0)[2]}).scalar_one())
    engine.dispose()
    return everyone, north, rep


def pages(rep: int) -> list[tuple[str, str, dict[str, str]]]:
    quarter = {"period": "custom", "start": QUARTER[0], "end": QUARTER[1]}
    return [
        ("leaderboard, 1 quarter (target < 1 s)", "/leaderboard", quarter),
        ("leaderboard, 1 quarter, sorted by win rate", "/leaderboard",
         {**quarter, "sort": "-win_rate"}),
        ("leaderboard, 1 year", "/leaderboard",
         {"period": "custom", "start": YEAR[0], "end": YEAR[1]}),
        ("drill-down, a rep's bookings, 1 quarter", "/leaderboard/deals",
         {"metric": "bookings", "person": str(rep), "start": QUARTER[0], "end": QUARTER[1]}),
        ("trends, 2025 by month", "/trends",
         {"period": "custom", "start": YEAR[0], "end": YEAR[1], "interval": "month"}),
        ("trends, 3 years by quarter, cumulative", "/trends",
         {"period": "custom", "start": "2023-01-01", "end": YEAR[1], "interval": "quarter",
          "cumulative": "1"}),
        ("trends, one rep, 2025 by month", "/trends",
         {"period": "custom", "start": YEAR[0], "end": YEAR[1], "interval": "month",
          "show": f"person:{rep}"}),
        ("pipeline, 1 quarter", "/pipeline", quarter),
        ("pipeline, team North, 1 quarter", "/pipeline", {**quarter, "show": "team:North"}),
        ("hygiene, everyone", "/hygiene", {}),
        ("hygiene, team North", "/hygiene", {"show": "team:North"}),
        ("hygiene, one rep, rule past_close", "/hygiene",
         {"show": f"person:{rep}", "rule": "past_close"}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--url", help="time the pages on a database a --keep run kept "
                        "(upgraded to this crmsync's schema), without loading one")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_KEY", Fernet.generate_key().decode())
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"sequential requests: {args.warmup} warm-up + {args.requests} timed per page")
    url = args.url or fresh_database("postgresql", "crmsync_dashboard_bench", keep=args.keep)
    settings = Settings(database_url=url, secret_key=os.environ["BENCH_KEY"], timezone=ZONE)
    try:
        if args.url:
            upgrade_engine = make_engine(url)
            upgrade(upgrade_engine)
            upgrade_engine.dispose()
            everyone, north, rep = sign_in(url)
        else:
            started = time.perf_counter()
            load(url, "postgresql", args.deals)
            print(f"postgresql: loaded {args.deals:,} deals in "
                  f"{time.perf_counter() - started:.1f} s")
            seconds, everyone, north, rep = people_and_goals(url, settings)
            print(f"  rollups in {seconds:.1f} s")
        app = create_app(settings)
        with BackgroundServer(app) as server:
            for who, token in (("manager of everyone", everyone), ("manager of North", north)):
                print(f"  signed in as the {who}:")
                print(f"  {'page':<46} {'p50 ms':>8} {'p95 ms':>8} {'KiB':>6}")
                with httpx.Client(base_url=server.url, timeout=120,
                                  cookies={SESSION_COOKIE: token}) as client:
                    for label, path, params in pages(rep):
                        if who != "manager of everyone" and "target" not in label:
                            continue
                        size = len(client.get(path, params=params).content) / 1024
                        _, p50, p95 = time_requests(client, label, path, params,
                                                    args.requests, args.warmup)
                        verdict = ("ok" if p95 < TARGET_MS else "MISSED") \
                            if "target" in label else ""
                        print(f"  {label:<46} {p50:8.1f} {p95:8.1f} {size:6.0f}  {verdict}")
    finally:
        if args.keep or args.url:
            print(f"  kept: {url}")
        else:
            drop_database(url)


if __name__ == "__main__":
    main()
