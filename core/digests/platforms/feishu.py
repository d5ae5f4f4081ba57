"""Feishu / Lark custom bots (docs/vendors/chat.md).

POST https://open.feishu.cn/open-apis/bot/v2/hook/<id> (Lark: open.larksuite.com); with
signing on, `timestamp` (seconds, a string) and `sign` go in the JSON body, where sign is
base64(HmacSHA256(key=f"{timestamp}\\n{secret}", msg=b"")): the key is the string and the
message is empty, unlike DingTalk (§2.2; https://open.feishu.cn/document/client-docs/
bot-v3/add-custom-bot). The digest is an `interactive` card (top-level `card`, JSON 2.0)
with `table` components (at most 5 per card, page_size 1-10) (§3.3); the body is at most
20 KB (§4). Errors are a JSON `code` (sometimes with HTTP 400): 19021 signature or
timestamp, 19022 IP, 19024 keyword, 9499 bad request or "too many request", 11232 rate
limited (100 a minute, 5 a second) (§5, §6).
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.digests.content import Digest, Row
from core.digests.render import (
    OK,
    Body,
    Outcome,
    bullets,
    check_webhook,
    encoded,
    figures,
    fit,
    json_answer,
    more,
    ranked,
    status_error,
)

NAME = "feishu"
TITLE = "Feishu"
HOSTS = ("open.feishu.cn", "open.larksuite.com")
RATE = (5, 1.0)  # and 100 a minute (§5); 5/s is the tighter for a digest fan-out
SIGNED = True
MAX_BODY_BYTES = 20 * 1024
MARGIN = 100  # room for timestamp and sign
PAGE_SIZE = 10


def check_url(url: str) -> None:
    check_webhook(url, path="/open-apis/bot/v2/hook", segments=1)


def signature(secret: str, timestamp: int) -> str:
    """base64(HmacSHA256(key=f"{timestamp}\\n{secret}", msg=b"")) (§2.2); the worked value
    of §2.2: S=demo, T=1599360473 -> l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def message(digest: Digest) -> Body:
    def build(shown: int) -> Body:
        return {"msg_type": "interactive", "card": _card(digest, shown)}
    return fit(build, digest.longest, lambda b: len(encoded(b)), MAX_BODY_BYTES - MARGIN)


def _card(digest: Digest, shown: int) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": digest.subtitle}]
    if "leaderboard" in digest.sections:
        elements.append({"tag": "markdown", "content": f"**{digest.label('leaderboard')}**"})
        if not digest.reps:
            elements.append({"tag": "markdown", "content": digest.label("empty")})
        else:
            elements.append(_table(("#", *digest.columns), ranked(digest.reps[:shown])))
            cut = more(digest, shown, len(digest.reps))
            if cut:
                elements.append({"tag": "markdown", "content": cut})
        if digest.teams:
            elements.append(_table((digest.label("team"), *digest.columns[1:]),
                                   [("", r) for r in digest.teams]))
    if digest.total is not None:
        t = digest.total
        elements.append({"tag": "markdown", "content":
                         f"**{t.label}**: {figures(t)}"})
    for lines in digest.lists:
        elements.append({"tag": "markdown",
                         "content": f"**{lines.title}**\n{bullets(digest, lines, shown)}"})
    return {"schema": "2.0",
            "header": {"title": {"tag": "plain_text", "content": digest.title},
                       "template": "blue"},
            "body": {"elements": elements}}


def _table(head: tuple[str, ...], rows: list[tuple[str, Row]]) -> dict[str, Any]:
    """A card `table` (§3.3): text columns, so the figures keep their exact formatting."""
    names = ["rank", "name", "won", "deals", "goal"][-len(head):]
    data = [dict(zip(names, [rank, r.label, r.bookings, r.deals_won, r.attainment][-len(head):],
                     strict=True)) for rank, r in rows]
    return {"tag": "table", "page_size": PAGE_SIZE,
            "columns": [{"name": n, "display_name": h, "data_type": "text"}
                        for n, h in zip(names, head, strict=True)],
            "rows": data}


def request(url: str, secret: str | None, body: Body, now: datetime,
            idempotency: str) -> tuple[str, Body]:
    """With a secret, `timestamp` and `sign` at the body's top level (§2.2)."""
    if not secret:
        return url, body
    timestamp = int(now.timestamp())
    return url, {"timestamp": str(timestamp), "sign": signature(secret, timestamp), **body}


def outcome(status: int, headers: Mapping[str, str], text: str) -> Outcome:
    answer = json_answer(text)
    if answer is None:
        return status_error(TITLE, status, text)
    code = answer.get("code", answer.get("StatusCode"))
    if code == 0:
        return OK
    msg = str(answer.get("msg", answer.get("StatusMessage", "")))
    error = f"{TITLE} code {code}: {msg[:200]}"
    if code == 11232 or (code == 9499 and "too many" in msg.lower()) or status >= 500:
        return Outcome(ok=False, retry=True, error=error)
    return Outcome(ok=False, error=error)
