"""The Salesforce sandbox's answers: REST errors as an array of {message, errorCode}
with the HTTP status (docs/vendors/salesforce.md §7), OAuth errors as
{error, error_description} (§1), and JSON with the API usage header (§6)."""

from typing import Any

from starlette.responses import JSONResponse, Response

from connectors.salesforce.wire import LIMIT_HEADER


class SfError(Exception):
    """An error answer: HTTP status, errorCode, message (and fields, for writes)."""

    def __init__(self, status: int, code: str, message: str,
                 fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


def usage_headers(usage: tuple[int, int] | None) -> dict[str, str]:
    return {LIMIT_HEADER: f"api-usage={usage[0]}/{usage[1]}"} if usage else {}


def answer(body: Any, status: int = 200, usage: tuple[int, int] | None = None) -> Response:
    if status == 204:
        return Response(status_code=204, headers=usage_headers(usage))
    return JSONResponse(body, status_code=status, headers=usage_headers(usage))


def failure(error: SfError, usage: tuple[int, int] | None = None) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=usage_headers(usage))


def oauth_failure(error: str, description: str, status: int = 400) -> Response:
    """§1: token errors are {error, error_description}, HTTP 400 (401 for a bad client)."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
