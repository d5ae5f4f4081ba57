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
"""

import asyncio
import weakref

from sqlalchemy import Engine

from core.metrics import rollups


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
