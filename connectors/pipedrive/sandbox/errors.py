"""The Pipedrive sandbox's error envelope (docs/vendors/pipedrive.md §9) and JSON answers."""

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

# ASCII escapes and no cycle checks: the C encoder's fastest path.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


class PipedriveError(Exception):
    """§9: `{"success": false, "error", "errorCode", "error_info"}` with the HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.message, "errorCode": self.status,
                "error_info": INFO, "data": None, "additional_data": None}

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(body).encode(), status, headers,
                    media_type="application/json")


def ok(data: Any, additional: dict[str, Any] | None = None, status: int = 200,
       related: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    if related is not None:  # v1: the objects the data refers to
        body["related_objects"] = related
    return json_response(body, status)


def not_found(what: str = "Not found") -> PipedriveError:
    return PipedriveError(404, what)


def bad_request(message: str) -> PipedriveError:
    return PipedriveError(400, message)


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is {}); 400 otherwise."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise bad_request("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body
