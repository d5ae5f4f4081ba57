"""The Pipedrive sandbox's webhooks (docs/vendors/pipedrive.md §5): created, listed and
deleted through the API, and fired on every change of a deal or an organization as a v2
payload with the webhook's HTTP Basic credentials, by a background thread that retries
after 3, 30 and 150 seconds."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from connectors.pipedrive.sandbox.errors import bad_request, json_object, not_found, ok
from connectors.pipedrive.sandbox.state import PipedriveState, Webhook, state_of
from connectors.pipedrive.wire import WEBHOOK_ACTIONS, basic_header, v1_time
from connectors.sandbox import outbox
from connectors.sandbox.dataset import Entity, Operation

OBJECTS = {"deals": "deal", "accounts": "organization"}
EVENT_OBJECTS = ("deal", "organization", "person", "stage", "pipeline", "user", "activity",
                 "product", "note", "*")
ACTION = {"insert": "create", "update": "change", "delete": "delete"}
MAX_WEBHOOKS = 40  # §5: per user
TIMEOUT = 10.0  # §5


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    auth: str | None
    payload: dict[str, Any]
    delays: tuple[float, ...]


class Outbox(outbox.Outbox[Delivery]):
    """Deliveries waiting to be sent, in order (connectors.sandbox.outbox); each one
    delivered or given up is appended to `log`."""

    def __init__(self, log: list[dict[str, Any]]) -> None:
        super().__init__(name="pipedrive-webhooks", timeout=TIMEOUT)
        self.log = log

    def deliver(self, client: httpx.Client, job: Delivery) -> None:
        meta = job.payload["meta"]
        entry = {"id": meta["id"], "action": meta["action"], "entity": meta["entity"],
                 "entity_id": meta["entity_id"], "url": job.url, "attempts": 0,
                 "status": "failed", "http_status": None}
        self.log.append(entry)
        for attempt, delay in enumerate((0.0, *job.delays)):
            time.sleep(delay)
            meta["attempt"] = attempt + 1
            entry["attempts"] = attempt + 1
            headers = {"Authorization": job.auth} if job.auth else {}
            try:
                response = client.post(job.url, json=job.payload, headers=headers)
            except httpx.HTTPError:
                continue
            entry["http_status"] = response.status_code
            if 200 <= response.status_code < 300:  # §5: any 2xx is delivered
                entry["status"] = "delivered"
                return


def attach(state: PipedriveState) -> Outbox:
    """Fire the company's changes at the matching webhooks."""
    outbox = Outbox(state.deliveries)

    def listener(entity: Entity, operation: Operation, ids: list[str]) -> None:
        action, kind = ACTION[operation], OBJECTS[entity]
        hooks = [h for h in state.webhooks.values()
                 if h.event_action in (action, "*") and h.event_object in (kind, "*")]
        for record_id in ids if hooks else ():
            data, previous = _states(state, entity, operation, record_id)
            for hook in hooks:
                outbox.put(Delivery(hook.subscription_url, _auth(hook),
                                    _payload(state, hook, action, kind, record_id, data,
                                             previous), state.webhook_retry_delays))

    state.company.listeners.append(listener)
    return outbox


def _auth(hook: Webhook) -> str | None:
    if hook.http_auth_user is None or hook.http_auth_password is None:
        return None
    return basic_header(hook.http_auth_user, hook.http_auth_password)


def _states(state: PipedriveState, entity: Entity, operation: Operation, record_id: str
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(data, previous): §5 delete events carry data null and previous the last state."""
    company = state.company
    if entity == "deals":
        if operation == "delete":
            last = state.live.get(record_id)
            return None, state.wire.deal(last) if last else {"id": int(record_id)}
        return state.wire.deal(company.deals[record_id]), {} if operation == "update" else None
    if operation == "delete":
        return None, {"id": int(record_id)}
    return state.wire.organization(company.accounts[record_id]), \
        {} if operation == "update" else None


def _payload(state: PipedriveState, hook: Webhook, action: str, kind: str, record_id: str,
             data: dict[str, Any] | None, previous: dict[str, Any] | None) -> dict[str, Any]:
    """§5: the v2 payload."""
    manager = state.company.manager.id
    return {"meta": {"action": action, "entity": kind, "entity_id": record_id,
                     "id": str(uuid.uuid4()), "company_id": "1", "correlation_id":
                     str(uuid.uuid4()), "is_bulk_edit": False,
                     "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                     "type": "general", "user_id": manager, "version": "2.0",
                     "webhook_id": str(hook.id), "webhook_owner_id": str(hook.user_id),
                     "change_source": "app", "permitted_user_ids": [manager], "attempt": 1,
                     "host": "sandbox.pipedrive.com"},
            "data": data, "previous": previous}


# ---- the /v1/webhooks API --------------------------------------------------------------------
async def add_webhook(request: Request) -> Response:
    """§5: POST /v1/webhooks."""
    state = state_of(request)
    body = await json_object(request)
    url = body.get("subscription_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise bad_request("subscription_url must be a full URL")
    action, kind = body.get("event_action"), body.get("event_object")
    if action not in (*WEBHOOK_ACTIONS, "*"):
        raise bad_request("event_action must be one of create, change, delete, *")
    if kind not in EVENT_OBJECTS:
        raise bad_request(f"event_object must be one of {', '.join(EVENT_OBJECTS)}")
    user, password = body.get("http_auth_user"), body.get("http_auth_password")
    if (user is None) != (password is None):
        raise bad_request("give both http_auth_user and http_auth_password, or neither")
    if len(state.webhooks) >= MAX_WEBHOOKS:
        raise bad_request(f"Maximum number of webhooks ({MAX_WEBHOOKS}) reached")
    hook = state.add_webhook(
        subscription_url=url, event_action=action, event_object=kind,
        name=str(body.get("name") or ""), http_auth_user=user, http_auth_password=password,
        version=str(body.get("version") or "2.0"),  # §5: v2 is the default
        user_id=int(body.get("user_id") or state.company.manager.id),
        add_time=v1_time(state.company.clock()))
    return ok(hook.public(), status=201)


async def list_webhooks(request: Request) -> Response:
    state = state_of(request)
    return ok([h.public() for h in state.webhooks.values()])


async def delete_webhook(request: Request) -> Response:
    state = state_of(request)
    raw = request.path_params["webhook_id"]
    hook = state.webhooks.pop(int(raw), None) if raw.isdigit() else None
    if hook is None:
        raise not_found("Webhook not found")
    return ok({"id": hook.id})
