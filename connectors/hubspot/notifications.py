"""HubSpot webhooks at POST /api/v1/webhooks/hubspot/{connection_id} (docs/vendors/hubspot.md §8).

- Verification: the v3 signature, HMAC-SHA256 with the app's client secret (the
  connection's `client_secret`) over method + URI + body + timestamp, base64, compared
  in constant time; a timestamp more than 5 minutes from this server's clock is refused
  (401, nothing stored). No client secret: 401 with what to set. Older signature
  versions (v1, v2: no timestamp, replayable) are not accepted.
- The body is a JSON array of events (400 not JSON, 422 not an array of events); each
  event is stored once, deduplicated by `appId:eventId` (HubSpot retries deliveries).
- Resolution: events carry ids only, so the job re-reads the companies and deals in
  batches (§2 batch read, 100 a call) and maps them like a sync; `*.deletion` events
  become tombstones; `*.merge` events tombstone `mergedObjectIds` and re-read the
  primary. A record that cannot be read (archived since, or never there) after a
  non-deletion event stays pending with the error for the next sync to reconcile.
"""

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from connectors.base import Page, WebhookIntake, WebhookRejected, WebhookRequest, WebhookSecrets
from connectors.hubspot import mapping
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.wire import (
    COMPANY_PROPERTIES,
    DEAL_PROPERTIES,
    SIGNATURE_MAX_AGE_MS,
    signature_v3,
)
from core.records import UNRESOLVED, DeletedEntity, Deletion, Record
from core.types import from_epoch_ms

KINDS: dict[str, tuple[str, DeletedEntity]] = {  # §8 subscription prefixes; 0-3/0-2 object ids
    "deal": ("deals", "deals"), "company": ("companies", "accounts"),
    "0-3": ("deals", "deals"), "0-2": ("companies", "accounts")}


def parse(request: WebhookRequest, known: WebhookSecrets,
          now_ms: int | None = None) -> WebhookIntake:
    """Verify one delivery (§8 v3) and split it into its events."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    secret = str(known.secrets.get("client_secret") or "")
    if not secret:
        raise WebhookRejected(401, "this connection has no client_secret: set the secret "
                                   "client_secret to the HubSpot app's client secret")
    signature, stamp = headers.get("x-hubspot-signature-v3"), \
        headers.get("x-hubspot-request-timestamp")
    if not signature or not stamp:
        raise WebhookRejected(401, "the request carries no X-HubSpot-Signature-v3 and "
                                   "X-HubSpot-Request-Timestamp")
    if not stamp.isdigit():
        raise WebhookRejected(401, "X-HubSpot-Request-Timestamp is not epoch milliseconds")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - int(stamp)) > SIGNATURE_MAX_AGE_MS:
        raise WebhookRejected(401, "the request timestamp is more than 5 minutes away from "
                                   "this server's clock (a replay, or a clock out of sync)")
    expected = signature_v3(secret, request.method, request.url, request.body, stamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRejected(401, "the X-HubSpot-Signature-v3 does not match this "
                                   "connection's client_secret and URL (forged, altered, the "
                                   "secret changed, or CRMSYNC_PUBLIC_URL is not the URL set "
                                   "in the HubSpot app)")
    try:
        events = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "the body is not valid JSON") from None
    if not isinstance(events, list) or not all(
            isinstance(e, dict) and e.get("eventId") is not None and e.get("objectId") is not None
            and isinstance(e.get("subscriptionType"), str) for e in events):
        raise WebhookRejected(422, "the body must be a JSON array of events with eventId, "
                                   "objectId and subscriptionType")
    return WebhookIntake(events=[(f"{e.get('appId', '')}:{e['eventId']}", e) for e in events])


def _kind(event: Mapping[str, Any]) -> tuple[str, DeletedEntity] | None:
    subscription = str(event.get("subscriptionType") or "")
    prefix = subscription.split(".", 1)[0]
    if prefix == "object":  # generic subscriptions name the object type id
        prefix = str(event.get("objectTypeId") or "")
    return KINDS.get(prefix)


Plan = tuple[dict[DeletedEntity, dict[str, list[Mapping[str, Any]]]],
             dict[tuple[DeletedEntity, str], Deletion]]


def _plan(payloads: Sequence[Mapping[str, Any]]) -> Plan:
    """In order of occurrence: the ids to re-read (with their events) and the tombstones."""
    wanted: dict[DeletedEntity, dict[str, list[Mapping[str, Any]]]] = {"accounts": {},
                                                                       "deals": {}}
    tombstones: dict[tuple[DeletedEntity, str], Deletion] = {}
    for event in sorted(payloads, key=lambda e: int(e.get("occurredAt") or 0)):
        kind = _kind(event)
        if kind is None:
            continue  # an object crmsync does not sync
        entity = kind[1]
        object_id = str(event["objectId"])
        when = from_epoch_ms(event.get("occurredAt"))
        action = str(event.get("subscriptionType")).rsplit(".", 1)[-1]
        if action == "deletion":
            wanted[entity].pop(object_id, None)
            tombstones[(entity, object_id)] = Deletion(entity, object_id, when)
            continue
        if action == "merge":
            primary = str(event.get("primaryObjectId") or object_id)
            for merged in event.get("mergedObjectIds") or []:
                if str(merged) != primary:
                    tombstones[(entity, str(merged))] = Deletion(entity, str(merged), when)
            object_id = primary
        tombstones.pop((entity, object_id), None)  # created, changed or restored since
        wanted[entity].setdefault(object_id, []).append(event)
    return wanted, tombstones


async def resolve(client: HubSpotClient,
                  payloads: Sequence[Mapping[str, Any]]) -> list[tuple[str, Page]]:
    """Current state of every notified company and deal (§2 batch read), tombstones for
    deletions and merged-away ids (§10)."""
    wanted, tombstones = _plan(payloads)
    out: list[tuple[str, Page]] = []
    unresolved: list[tuple[Mapping[str, Any], str]] = []
    for entity, by_id in wanted.items():
        if not by_id:
            continue
        object_type = KINDS["deal" if entity == "deals" else "company"][0]
        properties = DEAL_PROPERTIES if entity == "deals" else COMPANY_PROPERTIES
        raws = await client.batch_read(object_type, list(by_id), properties)
        found = {str(r["id"]): r for r in raws}
        for deletion in (d for r in found.values() for d in mapping.merged_away(entity, r)):
            tombstones.setdefault((entity, deletion.remote_id), deletion)
        for object_id, events in by_id.items():
            if object_id not in found and (entity, object_id) not in tombstones:
                error = (f"HubSpot has no live {object_type} {object_id} (archived or merged "
                         "since?); left for the next sync to reconcile")
                unresolved += [(e, error) for e in events]
        records = await _records(client, entity, list(found.values()))
        if records:
            out.append((entity, Page(records=records)))
    if tombstones:
        out.append(("deletions", Page(deletions=list(tombstones.values()))))
    if unresolved:
        out.append((UNRESOLVED, Page(unresolved=unresolved)))
    return out


async def _records(client: HubSpotClient, entity: DeletedEntity,
                   raws: list[dict[str, Any]]) -> list[Record]:
    owners = await client.owners()
    if entity == "accounts":
        return [mapping.account(r, owners) for r in raws]
    stages = mapping.stage_lookup(await client.stages())
    money = await client.money()
    companies = await client.associated("deals", "companies",
                                        [str(r["id"]) for r in raws]) if raws else {}
    return [mapping.deal(r, stages, money, companies.get(str(r["id"])), owners) for r in raws]
