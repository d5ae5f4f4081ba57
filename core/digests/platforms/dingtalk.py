"""DingTalk (钉钉) custom robots (docs/vendors/chat.md).

POST https://oapi.dingtalk.com/robot/send?access_token=<T> (international: oapi.dingtalk.io)
(§1; https://help.dingtalk.io/open/development/custom-robots-send-group-messages). With
加签 on, `&timestamp=<ms>&sign=<urlencoded base64(HmacSHA256(key=secret,
msg="<ms>\\n<secret>"))>` is added; the timestamp must be within an hour of DingTalk's clock
(§2.1; https://help.dingtalk.io/open/dingstart/customize-robot-security-settings). The
digest is a `markdown` message (title and text; no tables in DingTalk's markdown, so ranked
lines, §3.2); bodies stay under 20,000 bytes (an observed limit, unverified officially, §4).
`msgUuid` makes a retry after a timeout idempotent (§3.2). Errors: HTTP 200 with `errcode`;
310000 is keyword, signature, timestamp or IP (§6); 130101 (and 410100, unverified) rate
limited: 20 a minute, then blocked for 10 minutes (§5).
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote

from core.digests.content import Digest
from core.digests.render import (
    Body,
    Outcome,
    bullets,
    check_webhook,
    encoded,
    errcode_outcome,
    figures,
    fit,
    line,
    more,
    ranked,
)

NAME = "dingtalk"
TITLE = "DingTalk"
HOSTS = ("oapi.dingtalk.com", "oapi.dingtalk.io")
RATE = (20, 60.0)
SIGNED = True
MAX_BODY_BYTES = 20000
MARGIN = 200  # room for msgUuid, added when sending
BLOCKED_SECONDS = 600.0  # the 10-minute block after the per-minute limit (§5)
RETRY: dict[int, float | None] = {130101: BLOCKED_SECONDS, 410100: BLOCKED_SECONDS,
                                  -1: None}  # rate limited (§5); system busy (§7)


def check_url(url: str) -> None:
    check_webhook(url, path="/robot/send", query="access_token")


def signature(secret: str, timestamp_ms: int) -> str:
    """base64(HmacSHA256(key=secret, msg=f"{timestamp}\\n{secret}")) (§2.1), before URL
    encoding; the worked value of §2.1: S=SEC0123456789abcdef, T=1700000000002 ->
    VGvd0brDJp/nMZtR+XnA3yBIlhowT+TwkRPua0q1/jg=."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def message(digest: Digest) -> Body:
    def build(shown: int) -> Body:
        return {"msgtype": "markdown",
                "markdown": {"title": digest.title, "text": _text(digest, shown)}}
    return fit(build, digest.longest, lambda b: len(encoded(b)), MAX_BODY_BYTES - MARGIN)


def _text(digest: Digest, shown: int) -> str:
    parts = [f"#### {digest.title}", digest.subtitle]
    if "leaderboard" in digest.sections:
        parts.append(f"**{digest.label('leaderboard')}** "
                     f"({' · '.join(digest.columns[1:])})")
        if not digest.reps:
            parts.append(digest.label("empty"))
        else:
            parts.append("\n".join(line(rank, r) for rank, r in ranked(digest.reps[:shown])))
            parts += filter(None, [more(digest, shown, len(digest.reps))])
        if digest.teams:
            parts.append("\n".join(f"- {r.label}  {figures(r)}" for r in digest.teams))
    if digest.total is not None:
        t = digest.total
        parts.append(f"**{t.label}**: {figures(t)}")
    for lines in digest.lists:
        parts += [f"**{lines.title}**",
                  bullets(digest, lines, shown)]
    return "\n\n".join(parts)


def request(url: str, secret: str | None, body: Body, now: datetime,
            idempotency: str) -> tuple[str, Body]:
    """The signed URL (with a secret) and the body with its msgUuid (§2.1, §3.2)."""
    body = {**body, "msgUuid": idempotency}
    if not secret:
        return url, body
    timestamp = int(now.timestamp() * 1000)
    sign = quote(signature(secret, timestamp), safe="")
    return f"{url}&timestamp={timestamp}&sign={sign}", body


def outcome(status: int, headers: Mapping[str, str], text: str) -> Outcome:
    result, message = errcode_outcome(TITLE, status, text, RETRY)
    if not result.retry and result.error and "invalid timestamp" in message:
        return replace(result, error=result.error + " (check this server's clock: DingTalk "
                       "allows an hour of difference)")
    return result
