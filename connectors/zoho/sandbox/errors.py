"""The Zoho sandbox's error envelope (docs/vendors/zoho.md §7) and its JSON answers."""

from typing import Any

import orjson
from starlette.responses import Response


class ZohoError(Exception):
    """A Zoho error envelope `{"code","details","message","status":"error"}` (§7)."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "message": self.message,
                "status": "error"}

    def response(self) -> Response:
        return json_response(self.body(), self.status)


def invalid(param: str, message: str = "invalid data", **extra: Any) -> ZohoError:
    # zoho crm-oas v8 record.yaml: INVALID_DATA details carry `param_name`.
    return ZohoError(400, "INVALID_DATA", message, {"param_name": param, **extra})


def missing(param: str) -> ZohoError:
    return ZohoError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                     {"param_name": param})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def empty(status: int) -> Response:
    return Response(None, status)  # §2: 204 and 304 carry an empty body


def not_found() -> ZohoError:
    return ZohoError(404, "INVALID_URL_PATTERN",  # §7: INVALID_URL_PATTERN is a 404
                     "Please check if the URL trying to access is a correct one")
