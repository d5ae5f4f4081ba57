"""The HubSpot sandbox's webhooks (docs/vendors/hubspot.md §8): the app's subscriptions
fire on every change of a deal or company; events are batched (up to 100 a request,
gathered for `batch_window` seconds), signed with v3 (connectors/hubspot/wire.py) and
POSTed by a background thread to the app's target URL, retried until answered 2xx."""

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from connectors.hubspot.wire import signature_v3

MAX_BATCH = 100  # §8 (assumed)
OBJECT = {"deals": "deal", "accounts": "company"}


@dataclass
class Outbox:
    """Events waiting to be sent and the daemon thread sending them; each delivery is
    appended to `log` ({"events", "attempts", "status", "error"})."""

    secret: str
    app_id: int
    portal_id: int
    batch_window: float = 0.2
    attempts: int = 3
    clock_skew_ms: int = 0  # sign with a timestamp this far in the past (stale-signature tests)
    log: list[dict[str, Any]] = field(default_factory=list)
    _queue: "queue.Queue[tuple[str, dict[str, Any]]] | None" = None
    _next_event: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, url: str, subscription: str, object_id: str, occurred_at: int,
              **extra: Any) -> None:
        """Queue one event (§8 fields) for `url`."""
        with self._lock:
            event_id, self._next_event = self._next_event, self._next_event + 1
        body = {"eventId": event_id, "subscriptionId": 4_000 + len(subscription),
                "portalId": self.portal_id, "appId": self.app_id,
                "occurredAt": occurred_at, "subscriptionType": subscription,
                "attemptNumber": 0, "objectId": int(object_id), "changeSource": "CRM",
                **extra}
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._deliver_forever, daemon=True,
                             name="hubspot-webhooks").start()
        self._queue.put((url, body))

    def wait(self, timeout: float) -> None:
        """Block until every queued event was delivered or given up (for tests)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("webhooks still pending")
            time.sleep(0.01)

    def _deliver_forever(self) -> None:
        assert self._queue is not None
        with httpx.Client(timeout=5.0) as client:
            while True:
                batch = [self._queue.get()]
                deadline = time.monotonic() + self.batch_window
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get(timeout=max(0.0, deadline -
                                                                 time.monotonic())))
                    except queue.Empty:
                        break
                try:
                    by_url: dict[str, list[dict[str, Any]]] = {}
                    for url, body in batch:
                        by_url.setdefault(url, []).append(body)
                    for url, events in by_url.items():
                        self._deliver(client, url, events)
                finally:
                    for _ in batch:
                        self._queue.task_done()

    def _deliver(self, client: httpx.Client, url: str, events: list[dict[str, Any]]) -> None:
        entry: dict[str, Any] = {"events": [e["eventId"] for e in events], "attempts": 0,
                                 "status": "failed", "error": None}
        self.log.append(entry)
        for attempt in range(self.attempts):
            payload = orjson.dumps([{**e, "attemptNumber": attempt} for e in events])
            timestamp = str(int(time.time() * 1000) - self.clock_skew_ms)
            headers = {"Content-Type": "application/json",
                       "X-HubSpot-Request-Timestamp": timestamp,
                       "X-HubSpot-Signature-v3": signature_v3(self.secret, "POST", url,
                                                              payload, timestamp),
                       "X-HubSpot-Signature-Version": "v3"}
            entry["attempts"] = attempt + 1
            try:
                response = client.post(url, content=payload, headers=headers)
            except httpx.HTTPError as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
                continue
            if 200 <= response.status_code < 300:
                entry["status"], entry["error"] = "delivered", None
                return
            entry["error"] = f"HTTP {response.status_code}"
            time.sleep(0.2)


def listener(target: Callable[[], str | None], outbox: Callable[[], Outbox],
             merging: Callable[[], tuple[str, list[str]] | None],
             occurred: Callable[[str, str, str], int]
             ) -> Callable[[str, str, list[str]], None]:
    """A Company listener turning mutations into §8 events for the current target URL;
    `occurred(entity, operation, id)` is when the change happened (epoch ms)."""

    def notify(entity: str, operation: str, ids: list[str]) -> None:
        url = target()
        if not url or entity not in OBJECT:
            return
        kind = OBJECT[entity]
        merge = merging()
        for object_id in ids:
            if merge is not None:
                primary, merged = merge
                if object_id == primary and operation == "update":
                    outbox().event(url, f"{kind}.merge", primary,
                                   occurred(entity, operation, primary),
                                   primaryObjectId=int(primary),
                                   mergedObjectIds=[int(m) for m in merged],
                                   newObjectId=int(primary))
                continue  # the merged-away record's own deletion is not reported (§10)
            at = occurred(entity, operation, object_id)
            if operation == "insert":
                outbox().event(url, f"{kind}.creation", object_id, at)
            elif operation == "update":
                outbox().event(url, f"{kind}.propertyChange", object_id, at,
                               propertyName="hs_lastmodifieddate", propertyValue=str(at))
            else:
                outbox().event(url, f"{kind}.deletion", object_id, at)

    return notify
