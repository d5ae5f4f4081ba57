"""core.collector: a long-running process freezes what it loaded and collects young objects
less often; a process that serves the API and runs syncs keeps the worker's lower figure."""

import subprocess
import sys


def tuned(*calls: str) -> list[str]:
    # In a process of its own: freezing would keep this test process's objects forever.
    script = ("import gc; from core import collector; before = gc.get_threshold(); "
              + "; ".join(f"collector.tune(collector.{c})" for c in calls) +
              "; print(gc.get_freeze_count() > 1000, gc.get_threshold()[0], "
              "gc.get_threshold()[1:] == before[1:], gc.get_count()[0] < 100)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.split()


def test_a_process_freezes_what_it_loaded_and_collects_young_objects_less_often() -> None:
    assert tuned("API_YOUNG") == ["True", "50000", "True", "True"]
    assert tuned("WORKER_YOUNG") == ["True", "5000", "True", "True"]


def test_the_lower_figure_wins_whichever_comes_first() -> None:
    assert tuned("API_YOUNG", "WORKER_YOUNG")[1] == "5000"
    assert tuned("WORKER_YOUNG", "API_YOUNG")[1] == "5000"


def test_an_api_that_runs_its_jobs_itself_collects_as_a_worker(tmp_path) -> None:
    """Without Redis the API's process runs the syncs (the in-process runner): a worker's
    figure, or a sync's peak memory grows with its size."""
    script = (
        "import asyncio, gc; from cryptography.fernet import Fernet; "
        "from api.app import create_app; from core.config import Settings; "
        f"s = Settings(database_url='sqlite:///{tmp_path}/s.db', "
        "secret_key=Fernet.generate_key().decode()); app = create_app(s)\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        print(gc.get_threshold()[0])\n"
        "asyncio.run(main())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "5000"
