"""Calls a sandbox makes back to its subscribers (webhooks, callbacks), sent in order by one
daemon thread so the app's request never waits for them. A vendor's sandbox subclasses
`Outbox` with `deliver`: one job's attempts (its signing, retries and log entry)."""

import queue
import threading
import time
from typing import Generic, TypeVar

import httpx

J = TypeVar("J")


class Outbox(Generic[J]):
    """Jobs waiting to be delivered, and the thread delivering them (started on first use)."""

    def __init__(self, *, name: str, timeout: float) -> None:
        self.name, self.timeout = name, timeout
        self._queue: queue.Queue[J] | None = None

    def put(self, job: J) -> None:
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._deliver_forever, daemon=True, name=self.name).start()
        self._queue.put(job)

    def wait(self, timeout: float) -> None:
        """Block until every queued job was delivered or given up (for tests)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: deliveries still pending")
            time.sleep(0.01)

    def deliver(self, client: httpx.Client, job: J) -> None:
        """Send one job (every attempt of it); exceptions are the subclass's to handle."""
        raise NotImplementedError

    def _deliver_forever(self) -> None:
        assert self._queue is not None
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                job = self._queue.get()
                try:
                    self.deliver(client, job)
                finally:
                    self._queue.task_done()
