"""Fxiaoke CRM data-change callbacks at POST /api/v1/webhooks/fxiaoke/{connection_id}.

docs/vendors/fxiaoke.md §5: the platform POSTs {signature, timestamp, nonce, messageId, retryTimes?,
enterpriseAccount, encryptedContent}, signed with SHA-1 over those fields and the app's
aesKey, the content AES-256-CBC encrypted with it. It expects a signed, encrypted
"success" acknowledgement, and retries (counting retryTimes) until it gets one.

- Verification and decryption: connectors.fxiaoke.callbacks (checked against the
  official demo's test vector). Bad JSON 400; missing or ill-typed fields 422; a
  signature that does not match the connection's aes_key 401; content that does not
  decrypt or lacks apiName/dataId after a good signature 422. Nothing is stored.
- Replays (callbacks.py): the signature is a plain concatenation, so characters can move
  between adjacent fields without changing it. A messageId inside the content that
  differs from the signed one, or a timestamp more than callbacks.FRESHNESS_MS from this
  server's clock, is 401 and stores nothing.
- One event per decrypted messageId (the dedupe key). The delivery fingerprint is the
  signature: a retry (new retryTimes, timestamp, nonce, so a new signature) of a stored
  message is acknowledged with success so the platform stops retrying, and stores
  nothing new; the very same signed body again, or one with characters shifted between
  its fields (same signature), is a replay and gets 409 (api/routes/webhooks.py).
- The content names only the record (§5: no field values), so the job re-reads each
  record with /cgi/crm/v2/data/get and maps it like a sync (a voided one, life_status
  "invalid", becomes a tombstone). A re-read that fails never deletes anything: 10006 is
  the generic parameter / unknown-path code of the global code table
  (https://developer.fxiaoke.com/openapi_v2/start/guide/codes.html), not "not found".
  Only an explicit `delete` event whose record cannot be read tombstones it; any other
  event whose record cannot be read stays pending with the error (core.webhooks) and the
  next sync reconciles the record, while the batch's other events complete.
"""

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from connectors.base import Page, WebhookIntake, WebhookRejected, WebhookRequest, WebhookSecrets
from connectors.fxiaoke import callbacks
from connectors.fxiaoke.client import FxiaokeClient, FxiaokeError
from core.records import UNRESOLVED, DeletedEntity, Deletion
from core.types import from_epoch_ms

_TEXT_FIELDS = ("signature", "nonce", "messageId", "enterpriseAccount", "encryptedContent")
MAX_MESSAGE_ID = 200  # guess: the demo's ids are 33 characters


def parse(request: WebhookRequest, known: WebhookSecrets,
          now_ms: int | None = None) -> WebhookIntake:
    """Verify and decrypt one callback; the event, the acknowledgement and the fingerprint."""
    body = request.json_object()
    missing = [n for n in (*_TEXT_FIELDS, "timestamp") if body.get(n) in (None, "")]
    if missing:
        raise WebhookRejected(422, f"the callback lacks {', '.join(missing)}")
    if not all(isinstance(body[n], str) for n in _TEXT_FIELDS):
        raise WebhookRejected(422, f"{', '.join(_TEXT_FIELDS)} must be strings")
    for name in ("timestamp", "retryTimes"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise WebhookRejected(422, f"{name} must be an integer")
    if len(body["messageId"]) > MAX_MESSAGE_ID:
        raise WebhookRejected(422, f"messageId is over {MAX_MESSAGE_ID} characters")
    aes_key = str(known.secrets.get("aes_key") or "")
    if not aes_key:
        raise WebhookRejected(401, "this connection has no aes_key: set the secret aes_key "
                                   "to the callback aesKey of the Fxiaoke app")
    signature = callbacks.callback_signature(body, aes_key)
    if not _same(signature, body["signature"].lower()):
        raise WebhookRejected(401, "the callback signature does not match this connection's "
                                   "aes_key (forged, altered, or the key changed)")
    try:
        callbacks.check_fresh(body["timestamp"], now_ms)
        event = callbacks.verify(body, aes_key)
    except callbacks.CallbackForged as exc:  # shifted fields or an old delivery
        raise WebhookRejected(401, str(exc)) from None
    except callbacks.CallbackError as exc:  # signed, yet unreadable: say why
        raise WebhookRejected(422, str(exc)) from None
    payload = {"messageId": event.message_id, "eventType": event.event_type,
               "apiName": event.api_name, "dataId": event.data_id,
               "timestamp": event.timestamp if isinstance(event.timestamp, int)
               else body["timestamp"]}
    ack = callbacks.acknowledgement(aes_key)
    return WebhookIntake(events=[(event.message_id, payload)], body=orjson.dumps(ack),
                         delivery=signature)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def resolve(connector: FxiaokeClient,
                  payloads: Sequence[Mapping[str, Any]]) -> list[tuple[str, Page]]:
    """Current state of every notified account and deal (one /data/get each, §2)."""
    streams: dict[str, DeletedEntity] = {"AccountObj": "accounts",
                                        connector.config.opportunity_object: "deals"}
    wanted: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for payload in payloads:
        api_name = str(payload.get("apiName") or "")
        if api_name in streams:  # else an object crmsync does not sync (e.g. the goals)
            wanted.setdefault((api_name, str(payload.get("dataId") or "")), []).append(payload)
    records: dict[str, list[Any]] = {"accounts": [], "deals": []}
    tombstones: list[Deletion] = []
    unresolved: list[tuple[Mapping[str, Any], str]] = []
    for (api_name, data_id), events in wanted.items():
        stream = streams[api_name]
        try:
            raw = await connector.get_record(api_name, data_id)
        except FxiaokeError as exc:  # this record's own errorCode; others stop the batch
            deletes = [e for e in events if e.get("eventType") == "delete"]
            if deletes:  # §4 /data/delete: the record is gone for good
                when = max(from_epoch_ms(e.get("timestamp")) for e in deletes)
                tombstones.append(Deletion(stream, data_id, when))
            else:
                error = (f"could not read Fxiaoke {api_name} {data_id} ({exc}); left for the "
                         "next sync to reconcile")
                unresolved += [(e, error) for e in events]
            continue
        records[stream].append(await connector.record_for(api_name, raw))
    out = [(stream, Page(records=rows)) for stream, rows in records.items() if rows]
    if tombstones:
        out.append(("deletions", Page(deletions=tombstones)))
    if unresolved:
        out.append((UNRESOLVED, Page(unresolved=unresolved)))
    return out
