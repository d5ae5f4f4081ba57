"""Simulated chat robots: one ASGI app answering like WeCom, DingTalk, Feishu/Lark and
Slack webhooks (docs/vendors/chat.md §8). `crmsync digest sandbox` serves it; tests send
real HTTP to it.

Each platform's route checks the robot's credential (WeCom key, DingTalk access_token,
Feishu hook id, Slack path), verifies signatures with the documented algorithms and
clock windows (DingTalk in the query, Feishu in the body), checks keywords, message
shapes and sizes, enforces the rate limits, and answers in the platform's own envelope
(HTTP 200 with errcode or code; Slack's plain text). Accepted messages are recorded in
`ChatSandbox.received`; GET /_sandbox/received lists them.
"""

import base64
import hashlib
import hmac
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from core.digests.render import json_answer

WECOM_TYPES = ("text", "markdown", "markdown_v2", "image", "news", "file", "voice",
               "template_card")  # §3.1
WECOM_BYTES = {"text": 2048, "markdown": 4096, "markdown_v2": 4096}  # §4
DINGTALK_TYPES = ("text", "link", "markdown", "actionCard", "feedCard")  # §3.2
DINGTALK_MAX_BODY = 20000  # observed, not documented (§4)
FEISHU_TYPES = ("text", "post", "image", "share_chat", "interactive")  # §3.3
FEISHU_MAX_BODY = 20 * 1024  # §4
WINDOW = 3600  # DingTalk (ms) and Feishu (s) accept a timestamp within an hour (§2)
SLACK_MAX_BLOCKS, SLACK_MAX_SECTION = 50, 3000  # §4


@dataclass
class Robot:
    """A robot in a group: its signing secret (None: signing off) and keywords (a message
    must contain one when any is set)."""

    secret: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass
class ChatSandbox:
    wecom: dict[str, Robot] = field(default_factory=dict)  # key -> robot
    dingtalk: dict[str, Robot] = field(default_factory=dict)  # access_token -> robot
    feishu: dict[str, Robot] = field(default_factory=dict)  # hook id -> robot
    slack: dict[str, Robot] = field(default_factory=dict)  # "T.../B.../secret" -> robot
    clock: Callable[[], float] = time.time
    received: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    blocked: dict[str, float] = field(default_factory=dict)

    def within(self, key: str, limit: int, window: float) -> bool:
        """Count a call of `key`; False when it is over `limit` per `window` seconds."""
        now, calls = self.clock(), self.calls[key]
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) >= limit:
            return False
        calls.append(now)
        return True

    def record(self, platform: str, robot: str, body: dict[str, Any]) -> None:
        self.received.append({"platform": platform, "robot": robot, "body": body})


SANDBOX_ROBOTS: dict[str, tuple[str, str | None]] = {
    "wecom": ("/cgi-bin/webhook/send?key=sandbox-key", None),
    "dingtalk": ("/robot/send?access_token=sandbox-token", "SECsandbox"),
    "feishu": ("/open-apis/bot/v2/hook/sandbox-hook", "sandbox-secret"),
    "slack": ("/services/T0SANDBOX/B0SANDBOX/sandbox", None),
}
"""The robot of each platform `crmsync digest sandbox` and the demo serve: its webhook's
path and query (after the sandbox's base URL), and its signing secret (None: unsigned).
DingTalk and Feishu require the keyword crmsync (in every digest's title)."""


def sandbox_robots() -> ChatSandbox:
    """A sandbox with the SANDBOX_ROBOTS, one per platform."""
    return ChatSandbox(wecom={"sandbox-key": Robot()},
                       dingtalk={"sandbox-token": Robot("SECsandbox", ("crmsync",))},
                       feishu={"sandbox-hook": Robot("sandbox-secret", ("crmsync",))},
                       slack={"T0SANDBOX/B0SANDBOX/sandbox": Robot()})


def create_app(sandbox: ChatSandbox) -> FastAPI:
    app = FastAPI(title="crmsync chat robot sandbox", docs_url=None, redoc_url=None)

    @app.post("/cgi-bin/webhook/send")
    async def wecom(request: Request) -> Response:
        return _wecom(sandbox, request.query_params.get("key", ""), await request.body())

    @app.post("/robot/send")
    async def dingtalk(request: Request) -> Response:
        q = request.query_params
        return _dingtalk(sandbox, q.get("access_token", ""), q.get("timestamp"), q.get("sign"),
                         await request.body())

    @app.post("/open-apis/bot/v2/hook/{hook}")
    async def feishu(hook: str, request: Request) -> Response:
        return _feishu(sandbox, hook, await request.body())

    @app.post("/services/{team}/{bot}/{secret}")
    async def slack(team: str, bot: str, secret: str, request: Request) -> Response:
        return _slack(sandbox, f"{team}/{bot}/{secret}", await request.body())

    @app.get("/_sandbox/received")
    def received() -> list[dict[str, Any]]:
        return sandbox.received

    return app


def _texts(value: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every string in a message (not under the keys in `skip`), for keyword checks."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in skip for t in _texts(v, skip)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v, skip)]
    return []


def _has_keyword(robot: Robot, texts: list[str]) -> bool:
    return not robot.keywords or any(k in t for k in robot.keywords for t in texts)


# -- WeCom (§1, §3.1, §6): HTTP 200 with errcode -------------------------------------------


def _wecom_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": f"{message}, hint: [sandbox], from ip: "
                         "127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/"
                         f"query?e={code}"})


def _wecom(sandbox: ChatSandbox, key: str, raw: bytes) -> Response:
    if key not in sandbox.wecom:
        return _wecom_error(93000, "invalid webhook url")
    body = json_answer(raw)
    kind = body.get("msgtype") if body else None
    if body is None or kind not in WECOM_TYPES or not isinstance(body.get(kind), dict):
        return _wecom_error(40058, "invalid parameter: msgtype and its object")
    content = body[kind].get("content")
    if kind in WECOM_BYTES:
        if not isinstance(content, str) or not content:
            return _wecom_error(40058, f"{kind}.content missing")
        if len(content.encode()) > WECOM_BYTES[kind]:
            return _wecom_error(40058, f"{kind}.content exceed max length "
                                f"{WECOM_BYTES[kind]}")
    if not sandbox.within(f"wecom:{key}", 20, 60.0):  # 20/min; the code is unverified (§5)
        return _wecom_error(45009, "api freq out of limit")
    sandbox.record("wecom", key, body)
    return JSONResponse({"errcode": 0, "errmsg": "ok"})


# -- DingTalk (§1, §2.1, §6): HTTP 200 with errcode ----------------------------------------


def _ding(code: int, message: str) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": message})


def _dingtalk(sandbox: ChatSandbox, token: str, timestamp: str | None, sign: str | None,
              raw: bytes) -> Response:
    robot = sandbox.dingtalk.get(token)
    if robot is None:  # an observed answer; no official code (§6)
        return _ding(300001, "token is not exist")
    if sandbox.blocked.get(token, 0.0) > sandbox.clock():
        return _ding(130101, "send too fast, exceed 20 times per minute")
    if robot.secret is not None:
        now_ms = int(sandbox.clock() * 1000)
        if timestamp is None or not timestamp.isdigit() \
                or abs(now_ms - int(timestamp)) > WINDOW * 1000:
            return _ding(310000, "invalid timestamp")
        # the query parser URL-decoded `sign` once (§2.1)
        expected = base64.b64encode(hmac.new(
            robot.secret.encode(), f"{timestamp}\n{robot.secret}".encode(),
            hashlib.sha256).digest()).decode()
        if sign is None or not hmac.compare_digest(sign, expected):
            return _ding(310000, "sign not match")
    if len(raw) > DINGTALK_MAX_BODY:
        # the observed message (§4); the errcode is a guess
        return _ding(460101, "message too long, body 大小不合法, 请保持大小在 20000bytes 以内")
    body = json_answer(raw)
    kind = body.get("msgtype") if body else None
    if body is None or kind not in DINGTALK_TYPES or not isinstance(body.get(kind), dict):
        return _ding(40035, "缺少参数 json")  # guess: DingTalk's missing-parameter code
    if kind == "markdown" and not (body[kind].get("title") and body[kind].get("text")):
        return _ding(40035, "缺少参数 markdown.title or markdown.text")  # §3.2
    if not _has_keyword(robot, _texts(body[kind])):
        return _ding(310000, "keywords not in content")
    if not sandbox.within(f"dingtalk:{token}", 20, 60.0):  # then a 10-minute block (§5)
        sandbox.blocked[token] = sandbox.clock() + 600
        return _ding(130101, "send too fast, exceed 20 times per minute")
    sandbox.record("dingtalk", token, body)
    return _ding(0, "ok")


# -- Feishu / Lark (§1, §2.2, §6): code in the body ----------------------------------------


def _fei(code: int, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"code": code, "data": {}, "msg": message}, status_code=status)


def _feishu(sandbox: ChatSandbox, hook: str, raw: bytes) -> Response:
    robot = sandbox.feishu.get(hook)
    if robot is None:  # the observed message; the code is unverified (§6)
        return _fei(19001, "param invalid: incoming webhook access token invalid")
    body = json_answer(raw) if len(raw) <= FEISHU_MAX_BODY else None
    if body is None:
        return _fei(9499, "Bad Request", 400)
    if robot.secret is not None:
        stamp, sign = str(body.get("timestamp", "")), body.get("sign")
        fresh = stamp.isdigit() and abs(sandbox.clock() - int(stamp)) <= WINDOW
        # key = "timestamp\nsecret", message empty (§2.2)
        expected = base64.b64encode(hmac.new(f"{stamp}\n{robot.secret}".encode(), b"",
                                             hashlib.sha256).digest()).decode()
        if not fresh or not isinstance(sign, str) or not hmac.compare_digest(sign, expected):
            return _fei(19021, "sign match fail or timestamp is not within one hour "
                        "from current time")
    problem = _feishu_shape(body)
    if problem:
        return _fei(9499, f"Bad Request: {problem}", 400)
    if not _has_keyword(robot, _texts({k: v for k, v in body.items()
                                       if k not in ("timestamp", "sign")},
                                      skip=frozenset({"href", "url"}))):
        return _fei(19024, "Key Words Not Found")
    if not (sandbox.within(f"feishu-s:{hook}", 5, 1.0)
            and sandbox.within(f"feishu-m:{hook}", 100, 60.0)):  # §5
        return _fei(11232, "frequency limited psm[lark.oapi.app_platform_runtime]")
    sandbox.record("feishu", hook, body)
    return JSONResponse({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {},
                         "msg": "success"})


def _feishu_shape(body: dict[str, Any]) -> str | None:
    kind = body.get("msg_type")
    if kind not in FEISHU_TYPES:
        return "msg_type"
    if kind == "interactive":  # the card is top-level `card`, not `content` (§3.3)
        card = body.get("card")
        if not isinstance(card, dict):
            return "card"
        elements = (card.get("body") or {}).get("elements") or card.get("elements") or []
        tables = [e for e in elements if isinstance(e, dict) and e.get("tag") == "table"]
        if len(tables) > 5:
            return "at most 5 tables per card"  # §3.3
        for table in tables:
            names = [c.get("name") for c in table.get("columns", [])]
            if not 1 <= int(table.get("page_size", 5)) <= 10 or not 1 <= len(names) <= 50:
                return "table page_size 1-10, columns 1-50"
            if any(set(r) - set(names) for r in table.get("rows", [])):
                return "table rows must use the column names"
        return None
    return None if isinstance(body.get("content"), dict) else "content"


# -- Slack (§1, §4, §6): HTTP status and plain text ----------------------------------------


def _slack(sandbox: ChatSandbox, path: str, raw: bytes) -> Response:
    if path not in sandbox.slack:
        return PlainTextResponse("invalid_token", status_code=403)  # observed (§6)
    body = json_answer(raw)
    if body is None:
        return PlainTextResponse("invalid_payload", status_code=400)
    blocks = body.get("blocks")
    if not body.get("text") and not blocks and not body.get("attachments"):
        return PlainTextResponse("no_text", status_code=400)
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > SLACK_MAX_BLOCKS:
            return PlainTextResponse("invalid_blocks", status_code=400)  # observed (§6)
        for block in blocks:
            text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
            if block.get("type") == "section" and len(text) > SLACK_MAX_SECTION:
                return PlainTextResponse("invalid_blocks", status_code=400)
    if not sandbox.within(f"slack:{path}", 1, 1.0):  # about 1/s (§5)
        return PlainTextResponse("rate_limited", status_code=429, headers={"Retry-After": "1"})
    sandbox.record("slack", path, body)
    return PlainTextResponse("ok")
