"""A vendor-neutral ASGI harness for sandboxes: latency, concurrency cap, injected faults, stats.

The vendor app supplies the bodies (`ErrorBodies`) and what "expire the tokens"
means; the harness decides when. Paths under the exempt prefixes (the control
API) pass straight through, uncounted.
"""

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["429", "500", "timeout", "truncated", "expire_token"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class ErrorBodies(Protocol):
    """How the vendor words the errors the harness serves: status and JSON body (an object,
    or e.g. an array for vendors whose errors are arrays)."""

    def too_many_requests(self) -> tuple[int, Any]: ...

    def internal_error(self) -> tuple[int, Any]: ...

    def expire_tokens(self) -> None: ...


@dataclass
class Fault:
    """Serve `kind` on `count` calls whose target contains `path`, after letting `after` by."""

    kind: FaultKind
    count: int = 1
    path: str | None = None
    after: int = 0
    seen: int = 0  # matching calls so far
    fired: int = 0

    @classmethod
    def parse(cls, spec: Any) -> "Fault":
        """Validate a control-API payload; raises ValueError with a readable message."""
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(spec) - {"kind", "count", "path", "after"}
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        kind = str(spec.get("kind"))
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        count, after, path = spec.get("count", 1), spec.get("after", 0), spec.get("path")
        for name, value in (("count", count), ("after", after)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string")
        return cls(kind, count, path, after)  # type: ignore[arg-type]

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "path": self.path,
                "after": self.after, "seen": self.seen, "fired": self.fired}


@dataclass
class Harness:
    """Knobs and counters shared by the middleware and the control API."""

    latency: float = 0.0
    concurrency_limit: int | None = 10
    hang_seconds: float = 30.0
    exempt_prefixes: tuple[str, ...] = ("/_sandbox",)
    uncapped_prefixes: tuple[str, ...] = ()  # counted, but outside the concurrency cap
    faults: list[Fault] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)  # "429", "500", "timeout", ...
    in_flight: int = 0
    max_in_flight: int = 0

    def take_fault(self, target: str) -> Fault | None:
        """Count the call against every matching fault; return the one that fires, if any."""
        if not self.faults:
            return None
        chosen = None
        for fault in self.faults:
            if fault.path is not None and fault.path not in target:
                continue
            fault.seen += 1
            if chosen is None and fault.seen > fault.after and fault.fired < fault.count:
                fault.fired += 1
                chosen = fault
        self.faults = [f for f in self.faults if f.fired < f.count]
        return chosen

    def reset_counters(self) -> None:
        self.calls.clear()
        self.served.clear()
        self.max_in_flight = 0

    def stats(self) -> dict[str, Any]:
        return {
            "total_calls": sum(self.calls.values()),
            "calls": dict(sorted(self.calls.items())),
            "served": dict(self.served),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults": [f.public() for f in self.faults],
        }


class HarnessMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it must add nothing measurable per call."""

    def __init__(self, app: ASGIApp, *, harness: Harness, bodies: ErrorBodies) -> None:
        self.app, self.harness, self.bodies = app, harness, bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        h = self.harness
        if scope["type"] != "http" or path.startswith(h.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        h.calls[path] += 1
        capped = h.concurrency_limit is not None and not path.startswith(h.uncapped_prefixes)
        if capped and h.in_flight >= (h.concurrency_limit or 0):
            h.served["429"] += 1
            await _send_json(send, *self.bodies.too_many_requests())
            return
        h.in_flight += 1
        h.max_in_flight = max(h.max_in_flight, h.in_flight)
        try:
            if h.latency > 0:
                await asyncio.sleep(h.latency)
            query = scope.get("query_string", b"").decode("latin-1")
            fault = h.take_fault(f"{path}?{query}" if query else path)
            await self._serve(fault, scope, receive, send)
        finally:
            h.in_flight -= 1

    async def _serve(self, fault: Fault | None, scope: Scope, receive: Receive,
                     send: Send) -> None:
        if fault is None:
            await self.app(scope, receive, send)
            return
        self.harness.served[fault.kind] += 1
        if fault.kind == "429":
            await _send_json(send, *self.bodies.too_many_requests())
        elif fault.kind == "500":
            await _send_json(send, *self.bodies.internal_error())
        elif fault.kind == "timeout":
            await asyncio.sleep(self.harness.hang_seconds)  # the client gives up first
            await self.app(scope, receive, send)
        elif fault.kind == "expire_token":
            self.bodies.expire_tokens()
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _truncating(send))


def _truncating(send: Send) -> Callable[[Message], Any]:
    """Buffer the response, then send the status and headers with half the body."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        half = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(half)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": half})

    return wrapped


async def _send_json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json;charset=utf-8"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
