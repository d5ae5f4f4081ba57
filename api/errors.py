"""Every error is JSON: {"error": {"code": "...", "message": "..."}}; never a stack trace.

Validation messages name the field and what is allowed; they never repeat the
value that was sent (it may be a secret).
"""

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import Answer

log = logging.getLogger("crmsync.api")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code."""

    def __init__(
        self, status_code: int, message: str, *, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.code = code or CODES.get(status_code, "error")


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 about one query parameter, shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", field),
                                    "msg": message}])


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class FieldError(Answer):
    field: str
    message: str
    line: int | None = Field(None, description=(
        "Where the sent document has a position for it (a commission plan's line)."))


class RowError(FieldError):
    line: int = Field(description="The line of the file (the header is line 1).")


class ErrorInfo(Answer):
    code: str = Field(description="Machine-readable: validation_error, not_found, ...")
    message: str
    details: list[FieldError] = Field(default_factory=list, description=(
        "validation_error: each field and what is wrong with it."))
    rows: list[RowError] = Field(default_factory=list, description=(
        "A goal import's bad rows."))


class ErrorBody(Answer):
    error: ErrorInfo


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (("4XX", "The request cannot be served (the error says why)."),
                                ("5XX", "The service failed or is unavailable."))}
"""Every route's error answers, for the OpenAPI."""


def describe_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Readable (field, message) pairs of pydantic errors, without the input values."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "body"
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:] if err.get("type") != "json_invalid" else []
        field = ".".join(loc) or "body"
        message = str(err.get("msg", "invalid"))
        kind = err.get("type")
        if kind == "json_invalid":
            message = f"is not valid JSON ({err.get('ctx', {}).get('error', 'malformed')})"
        elif kind == "extra_forbidden":
            message = f"is not a known {'parameter' if where == 'query' else 'field'}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind in ("enum", "literal_error"):  # pydantic quotes the allowed values
            allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            message = f"must be one of {', '.join(allowed)}"
        elif kind == "missing":
            message = "is required"
        elif kind == "model_attributes_type" and field == "body":
            message = "must be a JSON object"
        details.append({"field": field, "message": message})
    return details


def validation_response(details: list[dict[str, str]]) -> JSONResponse:
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return JSONResponse(error_body("validation_error", message, details=details), 422)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(describe_errors(exc.errors()))


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)


# PostgreSQL SQLSTATEs of a value the database cannot take (out of range, not storable):
# always the request's data, so a 422, not a 500.
UNSTORABLE = {"22003", "22008", "22007", "22P05", "22021", "22001"}


def unstorable(exc: BaseException) -> bool:
    """Whether an error means "this input value cannot be stored or compared" (an integer
    or date out of range, a NUL character in text), in PostgreSQL, SQLite or Python."""
    if isinstance(exc, OverflowError):  # SQLite's integer binding, date arithmetic
        return True
    if not isinstance(exc, DataError):
        return False
    orig = exc.orig
    return getattr(orig, "sqlstate", None) in UNSTORABLE or "NUL (0x00)" in str(orig)


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    if not unstorable(exc):
        raise exc
    log.warning("refused a value the database cannot store on %s %s", request.method,
                request.url.path)
    return JSONResponse(error_body(
        "validation_error", "a parameter or field holds a value out of the range the "
        "database stores (an id, a number or a date too large or too small) or a NUL "
        "character", details=[]), 422)


class StartTracking:
    """An ASGI send that remembers whether the response has started (after that, an
    error can no longer be answered with a clean JSON response)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class CatchAllMiddleware:
    """Turns an unhandled exception into a 500 JSON error (logged once, without a trace
    in the response). Outermost layer inside Starlette's own error middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracking = StartTracking(send)
        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            log.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"),
                      scope.get("path"), exc_info=_safe(exc))
            if tracking.started:  # too late for a clean error: the server closes the connection
                raise
            body = json.dumps(error_body("internal_error", "internal server error")).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def _safe(exc: Exception) -> Exception | bool:
    """The exception for the log, unless its text may carry input values (pydantic)."""
    return False if isinstance(exc, ValidationError) else exc


def install(app: FastAPI) -> None:
    """JSON errors and the catch-all 500 (api.app adds the body limits outside it)."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(OverflowError, _on_data_error)
    app.add_middleware(CatchAllMiddleware)
