"""Zoho CRM notifications (docs/vendors/zoho.md §5): subscribe/renew channels, verify and
resolve callbacks.

- `POST /crm/v8/actions/watch` subscribes a channel: events `{Module}.{create|edit|delete|all}`,
  a `token` of at most 50 characters, `channel_expiry` at most one week ahead (omitted or
  further means 1 hour), so channels are renewed with `PATCH` before they expire.
- Zoho POSTs `{"server_time","module","ids","operation","channel_id","token",...}` to
  `notify_url`. It documents no signature: `channel_id` and `token` are compared with what
  we stored, in constant time. The body carries only ids, so the job re-reads them with
  `GET /{Module}?ids=` (at most 100 per call) and tombstones ids of a `delete` it no longer gets.
"""

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import (
    Channel,
    Page,
    StageRecord,
    WebhookIntake,
    WebhookRejected,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.zoho import mapping
from connectors.zoho.client import ACCOUNT_FIELDS, DEAL_FIELDS, ZohoClient
from core.errors import SourceError
from core.records import DeletedEntity, Deletion
from core.types import from_epoch_ms, utcnow

EVENTS = ("Deals.all", "Accounts.all")
MODULES: dict[str, DeletedEntity] = {"Deals": "deals", "Accounts": "accounts"}
MAX_TOKEN = 50  # §5: token holds at most 50 characters
MAX_EXPIRY = timedelta(days=7)  # §5: channel_expiry at most one week ahead
EXPIRY = MAX_EXPIRY - timedelta(hours=1)  # what we ask for: safely inside the week
RENEW_WITHIN = timedelta(days=2)  # renew channels that expire sooner than this
MAX_IDS = 100  # GET /{Module}?ids= takes at most 100 ids per call
META_TTL = 900.0  # seconds webhook batches reuse an org's field lists, stages and currency


def new_token() -> str:
    token = secrets.token_urlsafe(32)  # 43 characters
    assert len(token) <= MAX_TOKEN
    return token


def new_channel_id() -> str:
    """§5: channel_id is a long, sent as a string."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


@dataclass(frozen=True, slots=True)
class Subscription:
    channel_id: str
    token: str
    notify_url: str
    expires_at: datetime
    events: tuple[str, ...] = EVENTS


def zoho_time(moment: datetime) -> str:
    """ISO-8601 with an offset, no fractions (§2 datetime format)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _watch_body(sub: Subscription) -> dict[str, Any]:
    return {"watch": [{
        "channel_id": sub.channel_id,
        "events": list(sub.events),
        "channel_expiry": zoho_time(sub.expires_at),
        "token": sub.token,
        "notify_url": sub.notify_url,
        # Actions on related records (a deal added under an account, a note on a deal) would
        # notify the parent too: a re-read and API credits for nothing we sync (field
        # notify_on_related_action, zoho/crm-oas v8.0/notifications/notifications.yaml).
        "notify_on_related_action": False,
    }]}


def _granted_expiry(body: Any, wanted: datetime) -> datetime:
    """The channel_expiry Zoho answered with (§5 response: details.events[].channel_expiry)."""
    items = (body or {}).get("watch") or []
    for item in items:
        if str(item.get("status", "")).lower() != "success":
            raise SourceError(f"Zoho refused the notification channel: {item.get('code')}: "
                              f"{item.get('message')}")
        for event in (item.get("details") or {}).get("events") or []:
            expiry = mapping.timestamp(event.get("channel_expiry"))
            if expiry is not None:
                return expiry
    return wanted


async def subscribe(connector: ZohoClient, sub: Subscription) -> datetime:
    """POST /actions/watch; returns the expiry Zoho granted."""
    body = await connector.call("POST", "/actions/watch", json=_watch_body(sub))
    return _granted_expiry(body, sub.expires_at)


async def renew(connector: ZohoClient, sub: Subscription) -> datetime:
    """PATCH /actions/watch with a new channel_expiry (§5: renew with PATCH on a schedule)."""
    body = await connector.call("PATCH", "/actions/watch", json=_watch_body(sub))
    return _granted_expiry(body, sub.expires_at)


async def unsubscribe(connector: ZohoClient, channel_ids: Sequence[str]) -> None:
    """DELETE /actions/watch?channel_ids=..."""
    await connector.call("DELETE", "/actions/watch",
                         params={"channel_ids": ",".join(channel_ids)})


async def subscribe_channel(connector: ZohoClient, notify_url: str) -> Channel:
    """A new channel (fresh id and token) calling `notify_url` (connectors.base
    NotificationChannels)."""
    sub = Subscription(new_channel_id(), new_token(), notify_url, utcnow() + EXPIRY)
    expires = await subscribe(connector, sub)
    return Channel(sub.channel_id, sub.token, notify_url, expires, sub.events)


async def renew_channel(connector: ZohoClient, channel: Channel) -> Channel:
    """The channel renewed for another EXPIRY; SourceError when Zoho no longer knows it."""
    sub = Subscription(channel.channel_id, channel.token, channel.notify_url,
                       utcnow() + EXPIRY)
    expires = await renew(connector, sub)
    return Channel(sub.channel_id, sub.token, sub.notify_url, expires, sub.events)


# ---- callbacks --------------------------------------------------------------------------------


def parse(request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
    """Verify a Zoho notification and turn it into one event (token never stored)."""
    body = request.json_object()
    channel_id, token = str(body.get("channel_id") or ""), body.get("token")
    if not _verified(channel_id, token if isinstance(token, str) else "", known.channels):
        raise WebhookRejected(401, "unknown channel_id or wrong token for this connection")
    module, operation, ids = body.get("module"), body.get("operation"), body.get("ids")
    if not isinstance(module, str) or not isinstance(operation, str):
        raise WebhookRejected(422, "module and operation must be strings")
    if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
        raise WebhookRejected(422, "ids must be a list of record ids")
    server_time = body.get("server_time")
    if server_time is not None and (not isinstance(server_time, int) or
                                    isinstance(server_time, bool)):
        raise WebhookRejected(422, "server_time must be epoch milliseconds")
    record_ids = [str(i) for i in ids]
    payload = {"channel_id": channel_id, "module": module, "operation": operation,
               "ids": record_ids, "server_time": server_time}
    key = "|".join((channel_id, module, operation, ",".join(sorted(record_ids)),
                    str(server_time)))
    return WebhookIntake(events=[(hashlib.sha256(key.encode()).hexdigest(), payload)])


def _verified(channel_id: str, token: str, channels: Mapping[str, str]) -> bool:
    """Constant time in the values compared: every stored channel is checked."""
    ok = False
    for known_id, known_token in channels.items():
        same_id = secrets.compare_digest(known_id.encode(), channel_id.encode())
        same_token = secrets.compare_digest(known_token.encode(), token.encode())
        ok |= same_id & same_token
    return ok


async def resolve(connector: ZohoClient,
                  payloads: Sequence[Mapping[str, Any]]) -> list[tuple[str, Page]]:
    """Current state of every notified id; a `delete` whose id is gone becomes a tombstone."""
    wanted: dict[str, dict[str, None]] = {m: {} for m in MODULES}
    deleted: dict[str, dict[str, datetime]] = {m: {} for m in MODULES}
    for payload in payloads:
        module = payload.get("module")
        if module not in MODULES:
            continue  # a module we do not sync
        when = from_epoch_ms(payload.get("server_time"))
        for record_id in payload.get("ids") or []:
            wanted[module][str(record_id)] = None
            if payload.get("operation") == "delete":
                previous = deleted[module].get(str(record_id))
                deleted[module][str(record_id)] = max(previous or when, when)
    out: list[tuple[str, Page]] = []
    tombstones: list[Deletion] = []
    meta = await _metadata(connector) if any(wanted.values()) else None
    for module, stream in MODULES.items():
        if not wanted[module] or meta is None:
            continue
        raws = await _read_ids(connector, module, list(wanted[module]), meta)
        if module == "Deals" and meta.reused and (new := _new_stages(raws, meta)):
            # a stage added in the CRM since the stages were read: read them again rather
            # than store its deals as open with no stage id until they change again
            meta = await _metadata(connector, fresh=True, unknown=new)
        out.append((stream, Page(records=_map(module, raws, meta))))
        seen = {str(r["id"]) for r in raws}
        tombstones += [Deletion(stream, i, at) for i, at in deleted[module].items()
                       if i not in seen]
    if tombstones:
        out.append(("deletions", Page(deletions=tombstones)))
    return out



StageKey = tuple[str | None, str]  # (pipeline, stage) as a deal carries them


@dataclass(frozen=True, slots=True)
class _Meta:
    fields: dict[str, str]  # module -> the `fields` parameter for it
    stages: dict[StageKey, StageRecord]
    home_currency: str | None
    unknown: frozenset[StageKey] = frozenset()  # deals' stages still unknown when read
    reused: bool = False  # read by an earlier batch


async def _metadata(connector: ZohoClient, *, fresh: bool = False,
                    unknown: frozenset[StageKey] = frozenset()) -> _Meta:
    """Field lists, stages and home currency, reused for META_TTL by the webhook batches of
    one org in this process (a batch a second would otherwise spend most of its API calls,
    and the org's daily credits (§7), on metadata). `fresh`: read again, because deals
    carry the `unknown` stages; those still unknown then (a stage the pipelines do not
    list) do not make the next batches read them again."""
    form = connector.auth.form
    digest = hashlib.sha256("\0".join((connector.auth.token_url, form["client_id"],
                                        form["refresh_token"])).encode()).hexdigest()
    key = f"zoho-meta:{digest}"
    cached: _Meta | None = None if fresh else connector.api.limits.memo.get(key)
    if cached is not None:
        return replace(cached, reused=True)
    fields = {"Deals": await connector.field_names("Deals", DEAL_FIELDS),
              "Accounts": await connector.field_names("Accounts", ACCOUNT_FIELDS)}
    stages = mapping.stage_lookup(await connector.stages())
    if connector.home_currency is None:
        await connector.check()
    meta = _Meta(fields, stages, connector.home_currency,
                 frozenset(k for k in unknown if not mapping.known_stage(stages, k)))
    connector.api.limits.memo.put(key, meta, META_TTL)
    return meta


def _new_stages(raws: list[dict[str, Any]], meta: _Meta) -> frozenset[StageKey]:
    """The (pipeline, stage) of deals in `raws` that `meta` neither knows nor knew to be
    unknown."""
    keys = (mapping.stage_key(raw) for raw in raws)
    return frozenset(k for k in keys if k[1] and not mapping.known_stage(meta.stages, k)
                     and k not in meta.unknown)


async def _read_ids(connector: ZohoClient, module: str, ids: list[str],
                    meta: _Meta) -> list[dict[str, Any]]:
    """GET /{Module}?ids=... (at most 100 per call); 204 means none of them exist (§2)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start:start + MAX_IDS]
        body = await connector.get(f"/{module}", {"ids": ",".join(chunk),
                                                  "fields": meta.fields[module],
                                                  "per_page": MAX_IDS})
        found += (body or {}).get("data") or []
    return found


def _map(module: str, raws: list[dict[str, Any]], meta: _Meta) -> list[Any]:
    if module == "Accounts":
        return [mapping.account(r) for r in raws]
    return [mapping.deal(r, meta.stages, meta.home_currency) for r in raws]
