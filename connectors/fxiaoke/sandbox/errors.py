"""The Fxiaoke sandbox's answers: always HTTP 200, errors as `{"errorCode": n,
"errorMessage": ...}` (docs/vendors/fxiaoke.md §6)."""

import uuid
from typing import Any

from starlette.responses import JSONResponse, Response


class FxError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def json_response(body: dict[str, Any]) -> Response:
    return JSONResponse(body)  # §6: always HTTP 200


def success(**extra: Any) -> Response:
    return json_response({"errorCode": 0, "errorMessage": "OK", "errorDescription": "success",
                          "traceId": f"E-O.sandbox.{uuid.uuid4().hex[:12]}", **extra})


def failure(code: int, message: str) -> Response:
    return json_response({"errorCode": code, "errorMessage": message,
                          "traceId": f"E-O.sandbox.{uuid.uuid4().hex[:12]}"})
