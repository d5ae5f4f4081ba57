"""The job context's database pool holds what a process's jobs can use at once
(workers.context.pool_size): each running sync writes on two PostgreSQL connections
(core.sync), each webhook job on one, plus the crons and the API's requests. With the
former fixed 10 + 10, ten syncs and their webhook jobs waited 30 s for a connection and
failed (the many-connections benchmark). A worker's garbage collector is set once at its
start (workers.context.steady_gc)."""

import subprocess
import sys

from cryptography.fernet import Fernet

from core.config import Settings
from workers.context import build_context


def test_the_pool_holds_two_connections_per_sync_and_one_per_webhook_job() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:5432/nowhere",
                        secret_key=Fernet.generate_key().decode())
    jobs, webhook_jobs = settings.worker_jobs, settings.worker_webhook_jobs  # 10, 10
    context = build_context(settings)  # creating the engine opens no connection
    try:
        pool = context.engine.pool
        capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
        assert capacity >= 2 * jobs + webhook_jobs + 1
        assert pool.size() >= jobs + webhook_jobs  # one each, kept open between jobs
    finally:
        context.engine.dispose()


def test_a_worker_freezes_what_it_loaded_and_collects_young_objects_less_often() -> None:
    # In a process of its own: freezing would keep this test process's objects forever.
    script = ("import gc; from workers.context import GC_THRESHOLD, steady_gc; "
              "before = gc.get_threshold(); steady_gc(); "
              "print(gc.get_freeze_count() > 1000, gc.get_threshold()[0] == GC_THRESHOLD, "
              "gc.get_threshold()[1:] == before[1:], gc.get_count()[0] < 100)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["True"] * 4
