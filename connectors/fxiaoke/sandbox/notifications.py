"""The Fxiaoke sandbox's CRM callbacks (docs/vendors/fxiaoke.md §5): signed, encrypted
(connectors/fxiaoke/callbacks.py) POSTs of each data change to the tenant's callback_url,
sent by a background thread and retried until acknowledged."""

from dataclasses import dataclass
from typing import Any

import httpx

from connectors.fxiaoke import callbacks
from connectors.sandbox import outbox


@dataclass(frozen=True, slots=True)
class Callback:
    """One callback to send: where, what, and how to sign it."""

    url: str
    content: dict[str, Any]
    aes_key: str
    enterprise_account: str
    attempts: int


class Outbox(outbox.Outbox[Callback]):
    """Callbacks waiting to be sent, in order (connectors.sandbox.outbox); each one
    delivered or given up is appended to `log`."""

    def __init__(self, log: list[dict[str, Any]]) -> None:
        # §5 (legacy callback): answer within 3 s
        super().__init__(name="fxiaoke-callbacks", timeout=3.0)
        self.log = log

    def deliver(self, client: httpx.Client, job: Callback) -> None:
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
