"""The Fxiaoke sandbox's CRM callbacks (docs/vendors/fxiaoke.md §5): signed, encrypted
(connectors/fxiaoke/callbacks.py) POSTs of each data change to the tenant's callback_url,
sent by a background thread and retried until acknowledged."""

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.fxiaoke import callbacks


@dataclass(frozen=True, slots=True)
class Callback:
    """One callback to send: where, what, and how to sign it."""

    url: str
    content: dict[str, Any]
    aes_key: str
    enterprise_account: str
    attempts: int


class Outbox:
    """Callbacks waiting to be sent and the daemon thread sending them, in order; each one
    delivered or given up is appended to `log`."""

    def __init__(self, log: list[dict[str, Any]]) -> None:
        self.log = log
        self._queue: queue.Queue[Callback] | None = None

    def put(self, callback: Callback) -> None:
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._deliver_forever, daemon=True,
                             name="fxiaoke-callbacks").start()
        self._queue.put(callback)

    def wait(self, timeout: float) -> None:
        """Block until every queued callback was delivered or given up (for tests)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("callbacks still pending")
            time.sleep(0.01)

    def _deliver_forever(self) -> None:
        assert self._queue is not None
        with httpx.Client(timeout=3.0) as client:  # §5 (legacy callback): answer within 3 s
            while True:
                job = self._queue.get()
                try:
                    self._deliver(client, job)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, job: Callback) -> None:
        content = job.content
        entry = {"messageId": content["messageId"], "eventType": content["eventType"],
                 "apiName": content["apiName"], "dataId": content["dataId"],
                 "attempts": 0, "status": "failed", "error": None}
        self.log.append(entry)
        for attempt in range(job.attempts):
            body = callbacks.build_callback(
                content, job.aes_key, enterprise_account=job.enterprise_account,
                message_id=content["messageId"], retry_times=attempt or None)
            entry["attempts"] = attempt + 1
            try:
                response = client.post(job.url, json=body)
                result = callbacks.read_acknowledgement(response.json(), job.aes_key)
            except (httpx.HTTPError, ValueError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                continue
            if result == callbacks.SUCCESS:
                entry["status"], entry["error"] = "delivered", None
                return
            entry["error"] = f"acknowledged {result!r}"
