"""The metric rollup refreshes of one process, shared by its jobs (core.metrics.rollups).

Every sync and webhook job refreshes the rollups of its connection when it is done, so
metrics are fast right after it; a refresh rebuilds that connection's dirty months, one
refresh of a connection at a time (refreshes of different connections run side by side:
core.metrics.rollups). Jobs of one connection finishing together (a sync and its webhook
jobs) would each queue a refresh behind the other's, holding their job slots meanwhile.
Here a job joins the refresh that covers its writes instead: one of the same connection
that starts after it asked. So however many jobs of a connection
finish together, they wait for at most two refreshes back to back, and every job still
returns with the months it wrote rebuilt.

Webhook jobs on PostgreSQL do not wait: `soon()` leaves their refresh to one that starts a
few seconds later in the background, shared by every job of the connection finishing
meanwhile (a fleet's webhook jobs each carry a few events, and each refresh rebuilt the
connection's months: docs/benchmarks.md, many connections). Metrics stay exact meanwhile
(a dirty month is read from the deals), and a refresh lost with its process is done by
the minute's scheduled one.
"""

import asyncio
import logging
import weakref

from sqlalchemy import Engine

from core.metrics import rollups

log = logging.getLogger("crmsync.jobs")
BACKGROUND = 2
"""Background refreshes of a process running at once: each holds a thread of the default
pool (6 on 2 cores), which the jobs and the schedule's minute tick need too."""


class _Turn:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.asked = 0  # refreshes asked for so far
        self.covered = 0  # every ask up to this one is covered by a finished refresh


class RollupRefresh:
    """`await refresh(engine, connection_id)`: the rollups of the connection (None: of
    every connection) rebuilt with every write committed before the call
    (core.metrics.rollups.refresh), shared with the other callers of this process (one
    state per event loop and connection). Returns the months rebuilt by the refresh it
    ran, or 0 when it joined another's."""

    def __init__(self) -> None:
        self._turns: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int | None, _Turn]] = weakref.WeakKeyDictionary()
        self._soon: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int, asyncio.Task[None]]] = (
                weakref.WeakKeyDictionary())
        self._background: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()

    def soon(self, engine: Engine, connection_id: int, delay: float) -> None:
        """The connection's refresh, `delay` seconds from now in the background (at most
        BACKGROUND of them running at once), covering every write committed before the
        call: joins one still waiting (it starts after this call), else starts one."""
        loop = asyncio.get_running_loop()
        waiting = self._soon.setdefault(loop, {})
        if connection_id in waiting:
            return
        slots = self._background.setdefault(loop, asyncio.Semaphore(BACKGROUND))

        async def later() -> None:
            try:
                await asyncio.sleep(delay)
                async with slots:
                    del waiting[connection_id]  # an ask from now on needs a later refresh
                    await self(engine, connection_id)
            except Exception:
                log.exception("refreshing the metric rollups failed",
                              extra={"connection_id": connection_id})
            finally:  # cancelled while waiting (the process stopping): not waiting any more
                if waiting.get(connection_id) is task:
                    del waiting[connection_id]

        task = waiting[connection_id] = loop.create_task(later())

    async def __call__(self, engine: Engine, connection_id: int | None = None) -> int:
        turn = self._turns.setdefault(asyncio.get_running_loop(), {}).setdefault(
            connection_id, _Turn())
        turn.asked += 1
        mine = turn.asked
        async with turn.lock:
            if turn.covered >= mine:  # a refresh that started after this ask has finished
                return 0
            covers = turn.asked  # every ask made before this refresh starts
            months = await asyncio.to_thread(rollups.refresh, engine, connection_id)
            turn.covered = covers
            return months
