"""The Zoho sandbox's notifications: `/crm/v8/actions/watch` and the calls it makes back.

Follows docs/vendors/zoho.md §5: channels subscribe to `{Module}.{create|edit|delete|all}`; a
`token` holds at most 50 characters; `channel_expiry` at most a week ahead, and when
omitted or further it defaults to 1 hour. When data changes (control API or dataset
mutations, through `Company.listeners`), the documented body is POSTed to each live
channel's `notify_url`, asynchronously, with the channel's token. Where Zoho documents
nothing the choice is marked "guess".

Answers follow zoho/crm-oas v8.0/notifications: POST (createNotifications) 201 when every
channel was created, 207 with one success or error element per channel when some were not,
400 when none was; PATCH (updateNotificationInfo) and PUT (updateNotificationDetails) 200;
DELETE 200 with one element per channel and module (disableNotifications, example
response-200-sample). A channel with `notify_on_related_action` (true unless sent false)
is also notified when a record related to one of its module's records changes: here, an
Accounts channel hears of its accounts' deals (guess: Zoho documents the flag, not the
body; the sandbox sends operation "update" with the parent's id).
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http import build_client
from connectors.zoho.sandbox.auth import authenticated
from connectors.zoho.sandbox.errors import ZohoError, empty, invalid, json_response, missing
from connectors.zoho.sandbox.state import ZohoState
from connectors.zoho.sandbox.wire import API

log = logging.getLogger("crmsync.sandbox.zoho.watch")

MAX_TOKEN = 50  # §5
MAX_EXPIRY = 7 * 86_400  # §5: at most one week ahead
DEFAULT_EXPIRY = 3600  # §5: omitted or more than a week -> 1 hour
MODULE_NAMES = {"deals": "Deals", "accounts": "Accounts"}
OPERATIONS = {"create", "edit", "delete", "all"}  # §5: {Module}.{create|edit|delete|all}
EVENT_OF = {"insert": "create", "update": "edit", "delete": "delete"}
IDS_PER_CALL = 100  # guess: one notification carries at most 100 ids (re-readable in one GET)
SENDERS = 4  # concurrent deliveries: notifications may arrive out of order, as on the web


@dataclass
class Channel:
    channel_id: str
    events: list[str]
    token: str | None
    notify_url: str
    expires_at: float  # epoch seconds
    notify_on_related_action: bool = True


@dataclass
class Watch:
    """Channels of one sandbox org and their delivery queue. Tests may set `duplicate_rate`
    (a share of notifications sent twice, as a retrying vendor would) and `transport`."""

    channels: dict[str, Channel] = field(default_factory=dict)
    duplicate_rate: float = 0.0
    transport: httpx.AsyncBaseTransport | None = None
    seed: int = 0
    clock: Callable[[], datetime] | None = None
    """The org's notion of now (server_time); the wall clock when unset."""
    parents: Callable[[str, list[str]], list[str]] | None = None
    """The Accounts a change of (entity, ids) is a related action of (their deals' accounts)."""
    sent: int = 0
    failed: int = 0
    queued: int = 0
    log: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Every notification answered with 2xx (tests compare the store with it)."""
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _queue: "asyncio.Queue[tuple[str, dict[str, Any]]] | None" = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _senders: list["asyncio.Task[None]"] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def stats(self) -> dict[str, int]:
        return {"channels": len(self.live()), "notifications_queued": self.queued,
                "notifications_sent": self.sent, "notifications_failed": self.failed}

    def live(self) -> list[Channel]:
        now = time.time()
        return [c for c in self.channels.values() if c.expires_at > now]

    def pending(self) -> int:
        """Notifications not yet answered (queued or in flight)."""
        return self.queued - self.sent - self.failed

    # ---- firing ----------------------------------------------------------------------------
    def on_change(self, entity: str, operation: str, ids: list[str]) -> None:
        """Company listener: queue a notification per live channel that wants this event."""
        module = MODULE_NAMES.get(entity)
        if module is None or operation not in EVENT_OF:
            return
        wanted = {f"{module}.all", f"{module}.{EVENT_OF[operation]}"}
        parents = self.parents(entity, ids) if self.parents else []
        for channel in self.live():
            if wanted.intersection(channel.events):
                self._notify(channel, module, operation, ids)
            if parents and channel.notify_on_related_action and \
                    {"Accounts.all", "Accounts.edit"}.intersection(channel.events):
                self._notify(channel, "Accounts", "update", parents)

    def _notify(self, channel: Channel, module: str, operation: str, ids: list[str]) -> None:
        for start in range(0, len(ids), IDS_PER_CALL):
            body = {"server_time": self._server_time(),
                    "query_params": dict(parse_qsl(urlsplit(channel.notify_url).query)),
                    "module": module,
                    "resource_uri": f"https://www.zohoapis.com/crm/v2/{module}",
                    "ids": ids[start:start + IDS_PER_CALL], "affected_fields": [],
                    "operation": operation, "channel_id": channel.channel_id,
                    "token": channel.token}
            copies = 2 if self._rng.random() < self.duplicate_rate else 1
            for _ in range(copies):
                self._put(channel.notify_url, body)

    def _server_time(self) -> int:
        """§5: epoch milliseconds, on the same clock as the records' Modified_Time."""
        if self.clock is None:
            return int(time.time() * 1000)
        return int(self.clock().timestamp() * 1000)

    def _put(self, url: str, body: dict[str, Any]) -> None:
        self.queued += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a mutation from another thread: hand it to the server's loop
            loop = None
        if loop is None or (self._loop is not None and loop is not self._loop):
            if self._loop is None:
                self.failed += 1
                log.warning("no event loop to deliver a notification from")
                return
            self._loop.call_soon_threadsafe(self._enqueue, url, body)
            return
        self._loop = loop
        self._enqueue(url, body)

    def _enqueue(self, url: str, body: dict[str, Any]) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._senders = [asyncio.get_running_loop().create_task(self._send_forever())
                             for _ in range(SENDERS)]
        self._queue.put_nowait((url, body))

    async def _send_forever(self) -> None:
        assert self._queue is not None
        async with build_client(transport=self.transport, timeout=10.0) as client:
            while True:
                url, body = await self._queue.get()
                try:  # guess: Zoho's retry policy is undocumented (§5); no retries here
                    response = await client.post(url, json=body)
                    ok = response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.sent += 1
                    self.log.append(body)
                else:
                    self.failed += 1

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop


# ---- /crm/v8/actions/watch ------------------------------------------------------------------

def watch_routes() -> list[Route]:
    return [Route(f"{API}/actions/watch", authenticated(_dispatch),
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]


def _watch(request: Request) -> Watch:
    watch: Watch = request.app.state.zoho_watch
    watch.bind(asyncio.get_running_loop())
    return watch


async def _dispatch(request: Request, state: ZohoState) -> Response:
    watch = _watch(request)
    try:
        if request.method == "GET":
            return _list(watch, state)
        if request.method == "DELETE":
            return _unsubscribe(watch, request)
        items = await _items(request)
    except ZohoError as exc:
        return exc.response()
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):  # one result per channel, in order
        try:
            if request.method == "PATCH":
                channel = _patch(watch, item)
                message = "Successfully updated the subscribe details"
            else:  # POST subscribes, PUT replaces
                channel = _channel(item, None)
                watch.channels[channel.channel_id] = channel
                message = "Successfully subscribed for actions-watch of the given module"
            results.append(_answer(state, channel, message))
        except ZohoError as exc:
            body = exc.body()
            body["details"] = {**body["details"], "json_path": f"$.watch[{index}]"}
            results.append(body)
    ok = sum(r["status"] == "success" for r in results)
    status = (201 if request.method == "POST" else 200) if ok == len(results) else \
        400 if ok == 0 else 207
    return json_response({"watch": results}, status)


async def _items(request: Request) -> list[dict[str, Any]]:
    try:
        body = await request.json()
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body is not a valid JSON") from None  # guess
    items = body.get("watch") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise invalid("watch", "the watch list is missing or empty")
    return items


def _channel(item: dict[str, Any], current: Channel | None) -> Channel:
    channel_id = str(item.get("channel_id", "")) if current is None else current.channel_id
    if not channel_id.isdigit():  # §5: a long, sent as a string
        raise invalid("channel_id")
    events = item.get("events", current.events if current else None)
    if not isinstance(events, list) or not events:
        raise missing("events")
    for event in events:
        module, _, operation = str(event).partition(".")
        if module not in MODULE_NAMES.values() or operation not in OPERATIONS:
            raise invalid("events", f"invalid event {event!r}")
    related = item.get("notify_on_related_action",
                       current.notify_on_related_action if current else True)
    if not isinstance(related, bool):
        raise invalid("notify_on_related_action", expected_data_type="boolean")
    token = item.get("token", current.token if current else None)
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise invalid("token", f"the token must be at most {MAX_TOKEN} characters")  # §5
    url = item.get("notify_url", current.notify_url if current else None)
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise missing("notify_url") if url is None else invalid("notify_url")
    return Channel(channel_id, [str(e) for e in events], token, url,
                   _expiry(item.get("channel_expiry")), related)


def _expiry(raw: Any) -> float:
    """§5: at most a week ahead; omitted or further away -> 1 hour."""
    now = time.time()
    if raw is None:
        return now + DEFAULT_EXPIRY
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise invalid("channel_expiry") from None
    if moment.tzinfo is None:
        raise invalid("channel_expiry")
    at = moment.timestamp()
    if at <= now:
        raise invalid("channel_expiry", "the channel_expiry is in the past")  # guess
    return now + DEFAULT_EXPIRY if at - now > MAX_EXPIRY else at


def _patch(watch: Watch, item: dict[str, Any]) -> Channel:
    current = watch.channels.get(str(item.get("channel_id", "")))
    if current is None or current.expires_at <= time.time():
        raise invalid("channel_id", "the channel_id given seems to be invalid")  # guess
    if item.get("_delete_events"):  # §5: PATCH with _delete_events disables events
        gone = set(item.get("events") or [])
        current.events = [e for e in current.events if e not in gone]
        if not current.events:
            del watch.channels[current.channel_id]
        return current
    updated = _channel(item, current)
    watch.channels[updated.channel_id] = updated
    return updated


def _answer(state: ZohoState, c: Channel, message: str) -> dict[str, Any]:
    """One channel's result (crm-oas createNotifications example response-201-sample):
    details.events[] per module of the channel."""
    return {
        "code": "SUCCESS", "status": "success", "message": message,
        "details": {"events": [
            {"channel_expiry": state.wire.dt_epoch(c.expires_at),
             "resource_uri": f"https://www.zohoapis.com/crm/v8/{module}",
             "resource_id": _module_id(module), "resource_name": module,
             "channel_id": c.channel_id}
            for module in _modules(c)]}}


def _modules(channel: Channel) -> list[str]:
    return list(dict.fromkeys(e.partition(".")[0] for e in channel.events))


def _module_id(module: str) -> str:
    return "4970762000000000131" if module == "Deals" else "4970762000000000129"  # guess


def _list(watch: Watch, state: ZohoState) -> Response:
    live = watch.live()
    if not live:
        return empty(204)  # guess: no channels, no content (as for empty lists, §2)
    return json_response({"watch": [
        {"channel_id": c.channel_id, "events": c.events, "token": c.token,
         "notify_url": c.notify_url, "channel_expiry": state.wire.dt_epoch(c.expires_at),
         "notify_on_related_action": c.notify_on_related_action,
         "resource_name": c.events[0].partition(".")[0]} for c in live]})


def _unsubscribe(watch: Watch, request: Request) -> Response:
    raw = request.query_params.get("channel_ids")
    if not raw:
        raise missing("channel_ids")
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    removed = [watch.channels.pop(i) for i in ids if i in watch.channels]
    # crm-oas disableNotifications example response-200-sample: one element per channel
    # and module.
    return json_response({"watch": [{
        "code": "SUCCESS",
        "details": {"resource_uri": f"https://www.zohoapis.com/crm/v8/{module}",
                    "resource_id": _module_id(module), "channel_id": c.channel_id},
        "message": "Successfully un-subscribed from actions-watch", "status": "success"}
        for c in removed for module in _modules(c)]})


def attach(state: ZohoState) -> Watch:
    """A Watch fed by the org's data changes (re-attached when the sandbox resets)."""
    def parents(entity: str, ids: list[str]) -> list[str]:
        deals = state.company.deals if entity == "deals" else {}
        return sorted({d.account_id for i in ids if (d := deals.get(i)) and d.account_id})

    watch = Watch(clock=lambda: state.company.latest, parents=parents)
    state.company.listeners.append(watch.on_change)
    return watch
