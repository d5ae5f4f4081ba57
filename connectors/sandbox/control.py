"""The vendor-neutral control API every sandbox mounts under /_sandbox (no auth).

It edits the synthetic company the way a user of the CRM would, injects faults
and reports counters, so tests, demos and benchmarks can drive a sandbox over HTTP.
"""

import json
import random
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sandbox.dataset import Account, Activity, Company, Deal, Deletion
from connectors.sandbox.faults import Fault, Harness

PREFIX = "/_sandbox"
DEAL_KEYS = frozenset({"name", "amount", "currency", "exchange_rate", "stage", "pipeline",
                       "close_date", "probability", "owner_email", "account_id"})
ACCOUNT_KEYS = frozenset({"name", "industry", "owner_email"})
ACTIVITY_KEYS = frozenset({"subject", "owner_email", "start", "duration_seconds", "done",
                           "deal_id", "account_id"})


class SandboxState(Protocol):
    """What a vendor sandbox exposes to the control API."""

    company: Company
    harness: Harness

    def reset(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class BadInput(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[Request], Awaitable[Any]]


def control_routes(state: SandboxState) -> list[Route]:
    """Routes for /_sandbox/...; they read `state.company` on every call (reset swaps it)."""
    api = _ControlAPI(state)
    table: list[tuple[str, str, Handler, int]] = [
        ("/stats", "GET", api.stats, 200),
        ("/faults", "GET", api.list_faults, 200),
        ("/faults", "POST", api.add_faults, 201),
        ("/faults", "DELETE", api.clear_faults, 200),
        ("/deals", "POST", api.add_deal, 201),
        ("/deals/{id}", "GET", api.get_deal, 200),
        ("/deals/{id}", "PATCH", api.edit_deal, 200),
        ("/deals/{id}", "DELETE", api.delete_deal, 200),
        ("/accounts", "POST", api.add_account, 201),
        ("/accounts/{id}", "GET", api.get_account, 200),
        ("/accounts/{id}", "PATCH", api.edit_account, 200),
        ("/accounts/{id}", "DELETE", api.delete_account, 200),
        ("/activities", "POST", api.add_activity, 201),
        ("/activities/{id}", "GET", api.get_activity, 200),
        ("/activities/{id}", "PATCH", api.edit_activity, 200),
        ("/activities/{id}", "DELETE", api.delete_activity, 200),
        ("/mutate", "POST", api.mutate, 200),
        ("/reset", "POST", api.reset, 200),
    ]
    return [Route(PREFIX + path, _guarded(handler, status), methods=[method])
            for path, method, handler, status in table]


def _guarded(handler: Handler, status: int) -> Callable[[Request], Awaitable[Response]]:
    """JSON in, JSON out; bad input is a 4xx with a message and changes nothing."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request), status_code=status)
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0])}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return endpoint


class _ControlAPI:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def stats(self, _: Request) -> dict[str, Any]:
        return self.state.stats()

    async def list_faults(self, _: Request) -> dict[str, Any]:
        return {"faults": [f.public() for f in self.state.harness.faults]}

    async def add_faults(self, request: Request) -> dict[str, Any]:
        body = await _json(request)
        faults = [Fault.parse(spec) for spec in (body if isinstance(body, list) else [body])]
        self.state.harness.faults.extend(faults)
        return await self.list_faults(request)

    async def clear_faults(self, _: Request) -> dict[str, Any]:
        cleared = len(self.state.harness.faults)
        self.state.harness.faults.clear()
        return {"cleared": cleared}

    async def add_deal(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        changes = _deal_changes(company, await _object(request, DEAL_KEYS))
        if "name" not in changes or "amount" not in changes:
            raise BadInput(400, "name and amount are required")
        return deal_json(company, company.add_deal(**changes))

    async def get_deal(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        return deal_json(company, company.get_deal(request.path_params["id"]))

    async def edit_deal(self, request: Request) -> dict[str, Any]:
        company, deal_id = self.state.company, request.path_params["id"]
        company.get_deal(deal_id)  # 404 before validating the body
        changes = _deal_changes(company, await _object(request, DEAL_KEYS, need_one=True))
        return deal_json(company, company.edit_deal(deal_id, **changes))

    async def delete_deal(self, request: Request) -> dict[str, Any]:
        return deletion_json(self.state.company.delete_deal(request.path_params["id"]))

    async def add_account(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        changes = _account_changes(company, await _object(request, ACCOUNT_KEYS))
        if "name" not in changes:
            raise BadInput(400, "name is required")
        return account_json(company, company.add_account(**changes))

    async def get_account(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        return account_json(company, company.get_account(request.path_params["id"]))

    async def edit_account(self, request: Request) -> dict[str, Any]:
        company, account_id = self.state.company, request.path_params["id"]
        company.get_account(account_id)
        changes = _account_changes(company, await _object(request, ACCOUNT_KEYS, need_one=True))
        return account_json(company, company.edit_account(account_id, **changes))

    async def delete_account(self, request: Request) -> dict[str, Any]:
        return deletion_json(self.state.company.delete_account(request.path_params["id"]))

    async def add_activity(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        body = await _object(request, ACTIVITY_KEYS | {"kind"})
        changes = _activity_changes(company, {k: v for k, v in body.items() if k != "kind"})
        if "subject" not in changes or "kind" not in body:
            raise BadInput(400, "kind and subject are required")
        return activity_json(company, company.add_activity(kind=body["kind"], **changes))

    async def get_activity(self, request: Request) -> dict[str, Any]:
        company = self.state.company
        return activity_json(company, company.get_activity(request.path_params["id"]))

    async def edit_activity(self, request: Request) -> dict[str, Any]:
        company, activity_id = self.state.company, request.path_params["id"]
        company.get_activity(activity_id)
        changes = _activity_changes(company,
                                    await _object(request, ACTIVITY_KEYS, need_one=True))
        return activity_json(company, company.edit_activity(activity_id, **changes))

    async def delete_activity(self, request: Request) -> dict[str, Any]:
        return deletion_json(self.state.company.delete_activity(request.path_params["id"]))

    async def mutate(self, request: Request) -> dict[str, Any]:
        body = await _object(request, frozenset({"fraction", "seed"}))
        fraction, seed = body.get("fraction", 0.01), body.get("seed", 0)
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            raise BadInput(400, "fraction must be a number in (0, 1]")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise BadInput(400, "seed must be an integer")
        result = self.state.company.mutate(float(fraction), random.Random(seed))
        return {"edited": result.edited, "added": result.added, "deleted": result.deleted}

    async def reset(self, _: Request) -> dict[str, Any]:
        self.state.reset()
        return {"deals": len(self.state.company.deals),
                "accounts": len(self.state.company.accounts)}


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise BadInput(400, "the body is not valid JSON") from None


async def _object(request: Request, allowed: frozenset[str], *,
                  need_one: bool = False) -> dict[str, Any]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise BadInput(400, "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise BadInput(400, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    if need_one and not body:
        raise BadInput(400, f"nothing to change; allowed keys: {sorted(allowed)}")
    return body


def _owner_id(company: Company, email: Any) -> str:
    rep = company.rep_by_email.get(str(email).strip().lower())
    if rep is None:
        raise BadInput(400, f"no rep with email {email!r}")
    return rep.id


def _deal_changes(company: Company, body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {k: body[k] for k in ("name", "amount", "currency",
                                                     "exchange_rate") if k in body}
    if "stage" in body:
        changes["stage_id"] = company.stage_named(str(body["stage"]), body.get("pipeline")).id
    elif "pipeline" in body:
        raise BadInput(400, "pipeline is only used together with stage")
    if "close_date" in body:
        try:
            changes["close_date"] = date.fromisoformat(str(body["close_date"]))
        except ValueError:
            raise BadInput(400, "close_date must be YYYY-MM-DD") from None
    if "probability" in body:
        if not isinstance(body["probability"], int) or isinstance(body["probability"], bool):
            raise BadInput(400, "probability must be an integer 0..100")
        changes["probability"] = body["probability"]
    if "owner_email" in body:
        changes["owner_id"] = _owner_id(company, body["owner_email"])
    if "account_id" in body:
        if body["account_id"] is not None and str(body["account_id"]) not in company.accounts:
            raise BadInput(400, f"no account with id {body['account_id']!r}")
        changes["account_id"] = None if body["account_id"] is None else str(body["account_id"])
    return changes


def _account_changes(company: Company, body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {k: body[k] for k in ("name", "industry") if k in body}
    if "owner_email" in body:
        changes["owner_id"] = _owner_id(company, body["owner_email"])
    return changes


def _activity_changes(company: Company, body: dict[str, Any]) -> dict[str, Any]:
    """The control API's activity keys as Company.add/edit_activity arguments (which check
    the rest: a bad change changes nothing)."""
    changes: dict[str, Any] = {k: body[k] for k in ("subject", "duration_seconds", "done",
                                                    "deal_id", "account_id") if k in body}
    if "owner_email" in body:
        changes["owner_id"] = _owner_id(company, body["owner_email"])
    if "start" in body:
        try:
            changes["start"] = datetime.fromisoformat(str(body["start"]))
        except ValueError:
            raise BadInput(400, "start must be an ISO-8601 time with an offset") from None
    return changes


def activity_json(company: Company, activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.id, "kind": activity.kind, "subject": activity.subject,
        "owner_email": company.rep_by_id[activity.owner_id].email,
        "start": activity.start.isoformat(), "duration_seconds": activity.duration_seconds,
        "done": activity.done,
        "completed_at": activity.completed_at.isoformat() if activity.completed_at else None,
        "deal_id": activity.deal_id, "account_id": activity.account_id,
        "created_at": activity.created_at.isoformat(),
        "modified_at": activity.modified_at.isoformat(),
    }


def deal_json(company: Company, deal: Deal) -> dict[str, Any]:
    stage = company.stage_by_id[deal.stage_id]
    owner = company.rep_by_id[deal.owner_id]
    return {
        "id": deal.id, "name": deal.name, "amount": float(deal.amount),
        "currency": deal.currency, "exchange_rate": float(deal.exchange_rate),
        "stage": stage.name, "pipeline": stage.pipeline, "category": stage.category,
        "probability": deal.probability, "close_date": deal.close_date.isoformat(),
        "owner_email": owner.email, "account_id": deal.account_id,
        "created_at": deal.created_at.isoformat(), "modified_at": deal.modified_at.isoformat(),
        "history": [{"stage": company.stage_by_id[m.stage_id].name,
                     "changed_at": m.changed_at.isoformat()} for m in deal.history],
    }


def account_json(company: Company, account: Account) -> dict[str, Any]:
    return {
        "id": account.id, "name": account.name, "industry": account.industry,
        "owner_email": company.rep_by_id[account.owner_id].email,
        "created_at": account.created_at.isoformat(),
        "modified_at": account.modified_at.isoformat(),
    }


def deletion_json(deletion: Deletion) -> dict[str, Any]:
    return {"entity": deletion.entity, "id": deletion.id, "display_name": deletion.display_name,
            "deleted_at": deletion.deleted_at.isoformat(), "permanent": deletion.permanent}
