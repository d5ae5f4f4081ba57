"""The HubSpot sandbox's error envelope and JSON answers (docs/vendors/hubspot.md §7)."""

import json
import uuid
from typing import Any

from starlette.responses import Response


class HubSpotError(Exception):
    """§7: `{"status":"error","message","correlationId","category",...}`."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.category, self.message, self.extra = status, category, message, extra

    def body(self) -> dict[str, Any]:
        return {"status": "error", "message": self.message, "correlationId": str(uuid.uuid4()),
                "category": self.category, **self.extra}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return json_response(self.body(), self.status, headers)


def validation(message: str, **extra: Any) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, **extra)


def not_found(what: str = "resource") -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", f"{what} not found")


def rate_limited(policy: str, message: str) -> dict[str, Any]:
    """§7: the 429 body, with `errorType` and `policyName` instead of a category."""
    return {"status": "error", "message": message, "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()), "policyName": policy,
            "requestId": str(uuid.uuid4())}


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(body).encode(), status, headers,
                    media_type="application/json;charset=utf-8")
