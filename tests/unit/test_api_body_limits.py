"""Request body limits (api.limits): 413 before parsing and auth, streamed bodies counted."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api import limits
from api.routes import goals as goal_routes
from core import webhooks
from core.config import Settings
from tests.api_support import add_connection, make_key, running_api

MB = 1024 * 1024


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        yield api


class Raw:
    """One request straight into the ASGI app: what was read of the body, what was sent."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0
        self.status = 0
        self.body = b""

    async def run(self, app: Any, method: str, path: str,
                  headers: dict[str, str]) -> "Raw":
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "server": ("test", 80),
                 "client": ("127.0.0.1", 1),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}

        async def receive() -> dict[str, Any]:
            if self.read < len(self.chunks):
                self.read += 1
                return {"type": "http.request", "body": self.chunks[self.read - 1],
                        "more_body": self.read < len(self.chunks)}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")

        await app(scope, receive, send)
        return self

    def error(self) -> dict[str, str]:
        return dict(json.loads(self.body)["error"])


async def test_a_huge_content_length_is_refused_before_auth_and_before_reading(api):
    raw = await Raw([b"{}"]).run(api.app, "POST", "/api/v1/connections", {
        "content-type": "application/json", "content-length": str(150 * MB)})
    assert raw.status == 413  # not 401: no key was sent, and nothing was parsed
    assert raw.read == 0
    assert raw.error()["code"] == "payload_too_large"
    assert str(MB) in raw.error()["message"]


async def test_a_chunked_body_is_counted_and_refused_once_over_the_cap(api):
    chunks = [b"[" + b"1," * 32767] + [b"1," * 32768] * 200  # ~13 MB, no Content-Length
    raw = await Raw(chunks).run(api.app, "POST", "/api/v1/connections",
                                {"content-type": "application/json"})
    assert raw.status == 413
    assert raw.error()["code"] == "payload_too_large"
    assert raw.read <= MB // 65536 + 1  # reading stopped at the cap, not after 13 MB

    async def stream() -> AsyncIterator[bytes]:  # the same over httpx, with a key
        for chunk in chunks:
            yield chunk

    response = await api.client.post("/api/v1/api-keys", content=stream(),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_goal_import_over_its_cap_is_refused(api):
    writer = make_key(api.engine, "write")
    raw = await Raw([b"x"]).run(api.app, "POST", "/api/v1/goals/import", {
        "content-type": "text/csv", "content-length": str(200 * MB),
        "authorization": f"Bearer {writer}"})
    assert (raw.status, raw.read) == (413, 0)
    line = b"ann@example.com,bookings,2025-04-01,2025-06-30,120000\n"
    big = b"owner_email,metric,period_start,period_end,target\n" + line * (6 * MB // len(line))

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    headers = {"Authorization": f"Bearer {writer}"}
    chunked = await api.client.post("/api/v1/goals/import", content=stream(),
                                    headers={**headers, "Content-Type": "text/csv"})
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "payload_too_large"
    multipart = await api.client.post("/api/v1/goals/import", headers=headers,
                                      files={"file": ("goals.csv", big, "text/csv")})
    assert multipart.status_code == 413
    assert multipart.json()["error"]["code"] == "payload_too_large"


async def test_an_import_between_the_default_cap_and_its_own_is_read(api):
    """A 2 MB CSV is over the 1 MB default but under the import's 5 MB: it is parsed (its
    rows name reps that do not exist, so the answer is the import's own 422)."""
    line = b"nobody@example.com,bookings,2025-04-01,2025-06-30,120000\n"
    body = b"owner_email,metric,period_start,period_end,target\n" + line * (2 * MB // len(line))
    response = await api.client.post("/api/v1/goals/import", content=body,
                                     headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["code"] == "validation_error"
    assert limits.MAX_IMPORT_BYTES == goal_routes.MAX_IMPORT_BYTES


async def test_normal_requests_are_unaffected(api):
    created = await api.client.post("/api/v1/api-keys", json={"name": "x" * 150})
    assert created.status_code == 201, created.text
    small = await api.client.post(
        "/api/v1/goals/import", headers={"Content-Type": "text/csv"},
        content=b"owner_email,metric,period_start,period_end,target\n"
                b",bookings,2025-04-01,2025-06-30,1000\n")
    assert small.status_code == 200, small.text
    assert small.json()["created"] == 1
    listed = await api.get("/api/v1/goals")
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1


async def test_webhooks_keep_their_own_1_mb_limit(api):
    cid = add_connection(api.engine)
    url = f"/api/v1/webhooks/zoho/{cid}"
    api.client.headers.pop("Authorization")
    assert limits.cap_for(url, 10 * MB) == webhooks.MAX_BODY
    body = b"{" + b" " * (webhooks.MAX_BODY - 2) + b"}"  # exactly 1 MB: read, then judged
    response = await api.client.post(url, content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code not in (413, 500), response.text
    over = await api.client.post(url, content=body + b" ",
                                 headers={"Content-Type": "application/json"})
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "payload_too_large"


async def test_the_cap_is_the_setting(api):
    api.app.state.settings = api.app.state.settings.model_copy(update={"max_body_bytes": 100})
    small = await api.client.post("/api/v1/api-keys", json={"name": "x" * 50})
    assert small.status_code == 201
    big = await api.client.post("/api/v1/api-keys", json={"name": "x" * 150})
    assert big.status_code == 413
    assert "100 bytes" in big.json()["error"]["message"]
    assert Settings().max_body_bytes == MB
    assert Settings(max_body_bytes="2048").max_body_bytes == 2048
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(max_body_bytes=0)
