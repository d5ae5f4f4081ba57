"""Acme's error envelope, {"error": {"code", "message"}}, and its JSON answers."""

from typing import Any

from starlette.responses import JSONResponse


class AcmeError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status)


def bad_request(message: str) -> AcmeError:
    return AcmeError(400, "bad_request", message)
