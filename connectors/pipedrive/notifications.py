"""Pipedrive webhooks (docs/vendors/pipedrive.md §5) as crmsync's notification channels.

- A channel is one webhook crmsync creates with `POST /v1/webhooks` (all actions, all
  objects, version 2.0) and HTTP Basic credentials it generates; the channel token is
  `user:password`, stored encrypted by crmsync and never returned by Pipedrive.
- Pipedrive's webhooks do not expire, but one is deleted after 3 days without a
  successful delivery, so a channel is "renewed" daily: its webhook is looked up and a
  new one subscribed when it is gone.
- A callback is accepted only with the Basic credentials of one of the connection's
  channels, compared in constant time; events of deals, organizations and activities
  are kept (dedupe key: the event id), others acknowledged and dropped.
- Resolving re-reads each deal, organization or activity (its current state), or
  tombstones it when the event was a delete or the record is gone (a deleted activity's
  delete event is how an incremental sync learns of it, §12).
"""

import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from connectors.base import (
    Channel,
    Deletion,
    Page,
    WebhookIntake,
    WebhookRejected,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.pipedrive import mapping
from connectors.pipedrive.client import PipedriveClient, PipedriveError
from connectors.pipedrive.wire import V1, V2, parse_time, read_basic
from core.errors import SourceError
from core.records import DeletedEntity
from core.types import utcnow

CHANNEL_LIFETIME = timedelta(days=1)  # looked up daily (§5: gone after 3 failing days)
RENEW_WITHIN = timedelta(hours=2)  # more than the hourly renewal job
ENTITIES: dict[str, DeletedEntity] = {"deal": "deals", "organization": "accounts",
                                      "activity": "activities"}
PATHS = {"deals": f"{V2}/deals", "accounts": f"{V2}/organizations",
         "activities": f"{V2}/activities"}


async def subscribe_channel(client: PipedriveClient, notify_url: str) -> Channel:
    """§5: a webhook for every change, with generated Basic credentials."""
    user, password = f"crmsync-{secrets.token_hex(6)}", secrets.token_urlsafe(32)
    body = await client.call("POST", f"{V1}/webhooks", json={
        "subscription_url": notify_url, "event_action": "*", "event_object": "*",
        "name": "crmsync", "http_auth_user": user, "http_auth_password": password,
        "version": "2.0"})
    hook = body.get("data") or {}
    if hook.get("id") is None:
        raise SourceError("Pipedrive created a webhook without an id")
    return Channel(str(hook["id"]), f"{user}:{password}", notify_url,
                   utcnow() + CHANNEL_LIFETIME, ("*.*",))


async def renew_channel(client: PipedriveClient, channel: Channel) -> Channel:
    """The same channel for another day, if Pipedrive still has its webhook."""
    hooks = (await client.get(f"{V1}/webhooks")).get("data") or []
    if not any(str(h.get("id")) == channel.channel_id for h in hooks):
        raise SourceError(f"Pipedrive no longer has webhook {channel.channel_id}")
    return Channel(channel.channel_id, channel.token, channel.notify_url,
                   utcnow() + CHANNEL_LIFETIME, channel.events)


async def unsubscribe(client: PipedriveClient, channel_ids: Sequence[str]) -> None:
    for channel_id in channel_ids:
        try:
            await client.call("DELETE", f"{V1}/webhooks/{channel_id}")
        except PipedriveError as exc:
            if exc.status != 404:  # already gone counts as removed
                raise


def parse(request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
    """Verify the Basic credentials (§5) in constant time, then split out the event."""
    given = read_basic(request.headers.get("authorization"))
    if given is None:
        raise WebhookRejected(401, "missing HTTP Basic credentials")
    presented = f"{given[0]}:{given[1]}".encode()
    matched = False
    for token in known.channels.values():  # every one compared: no early exit
        matched |= hmac.compare_digest(presented, token.encode())
    if not matched:
        raise WebhookRejected(401, "the credentials match no webhook of this connection")
    body = request.json_object()
    meta = body.get("meta")
    if not isinstance(meta, dict) or not meta.get("action") or meta.get("entity_id") is None:
        raise WebhookRejected(422, "a Pipedrive v2 webhook has meta.action and meta.entity_id")
    entity = ENTITIES.get(str(meta.get("entity")))
    if entity is None:  # persons, notes, ...: acknowledged, not synced
        return WebhookIntake(events=[])
    event_id = str(meta.get("id") or
                   f"{meta.get('entity')}:{meta['entity_id']}:{meta['action']}:"
                   f"{meta.get('timestamp')}")
    payload = {"action": str(meta["action"]), "entity": entity,
               "entity_id": str(meta["entity_id"]), "timestamp": meta.get("timestamp")}
    return WebhookIntake(events=[(f"pipedrive:{event_id}", payload)])


async def resolve(client: PipedriveClient,
                  payloads: Sequence[Mapping[str, Any]]) -> list[tuple[str, Page]]:
    """Current state of every record named; deletes (and records gone) become tombstones."""
    wanted: dict[str, dict[str, Any]] = {entity: {} for entity in PATHS}
    for payload in payloads:
        entity = str(payload.get("entity"))
        if entity in wanted:
            when = _when(payload.get("timestamp"))
            wanted[entity][str(payload.get("entity_id"))] = (payload.get("action"), when)
    out: list[tuple[str, Page]] = []
    tombstones: list[Deletion] = []
    for entity, events in wanted.items():
        records = []
        for record_id, (action, when) in events.items():
            raw = None if action == "delete" else await _read(client, entity, record_id)
            if raw is None or raw.get("is_deleted") or raw.get("status") == "deleted":
                at = parse_time((raw or {}).get("update_time")) or when
                tombstones.append(Deletion(entity, record_id, at))  # type: ignore[arg-type]
            elif entity == "deals":
                records.append(await client.map_deal(raw))
            elif entity == "activities":
                records.append(mapping.activity(raw, await client.meta_for([raw]),
                                                await client.custom_activity_types()))
            else:
                records.append(mapping.account(raw, await client.meta_for([raw])))
        if records:
            out.append((entity, Page(records=records)))
    if tombstones:
        out.append(("deletions", Page(deletions=tombstones)))
    return out


async def _read(client: PipedriveClient, entity: str, record_id: str) -> dict[str, Any] | None:
    if not record_id.isdigit():
        return None
    try:
        found = (await client.get(f"{PATHS[entity]}/{record_id}")).get("data")
    except PipedriveError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return found if isinstance(found, dict) else None


def _when(value: Any) -> Any:
    try:
        return parse_time(value) or utcnow()
    except ValueError:
        return utcnow()
