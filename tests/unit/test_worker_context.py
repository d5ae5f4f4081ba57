"""The job context's database pool holds what a process's jobs can use at once
(workers.context.pool_size): each running sync writes on two PostgreSQL connections
(core.sync), each webhook job on one, plus the crons and the API's requests. With the
former fixed 10 + 10, ten syncs and their webhook jobs waited 30 s for a connection and
failed (the many-connections benchmark)."""

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

