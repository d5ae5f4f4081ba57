"""WeCom (企业微信) group robots (docs/vendors/chat.md).

POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<KEY>; the key is the only
secret, there is no signature (§1; https://developer.work.weixin.qq.com/document/path/91770).
The digest is a `markdown_v2` message (tables; clients older than 4.1.36 show it as plain
text, §3.1) whose content is at most 4096 UTF-8 bytes (§4). Errors come as HTTP 200 with
`errcode` (§6): -1 busy (retry), 45009 rate limited (wait the minute; its use for robots is
unverified, §5), 93000 bad key or robot removed, 40058 bad parameter or too long.
20 messages a minute per robot (§5).
"""

from collections.abc import Mapping
from datetime import datetime

from core.digests.content import Digest, Row
from core.digests.render import (
    Body,
    Outcome,
    bullets,
    check_webhook,
    errcode_outcome,
    figures,
    fit,
    more,
    ranked,
)

NAME = "wecom"
TITLE = "WeCom"
HOSTS = ("qyapi.weixin.qq.com",)
RATE = (20, 60.0)
SIGNED = False
MAX_CONTENT_BYTES = 4096
RETRY: dict[int, float | None] = {-1: 5.0, 45009: 60.0}
"""Seconds to wait after errcodes worth retrying: system busy; over the limit (§6, §7)."""


def check_url(url: str) -> None:
    check_webhook(url, path="/cgi-bin/webhook/send", query="key")


def message(digest: Digest) -> Body:
    def build(shown: int) -> Body:
        return {"msgtype": "markdown_v2", "markdown_v2": {"content": _content(digest, shown)}}
    return fit(build, digest.longest, lambda b: len(b["markdown_v2"]["content"].encode()),
               MAX_CONTENT_BYTES)


def _content(digest: Digest, shown: int) -> str:
    parts = [f"## {digest.title}", digest.subtitle]
    if "leaderboard" in digest.sections:
        if not digest.reps:
            parts.append(digest.label("empty"))
        else:
            parts += [f"### {digest.label('leaderboard')}",
                      _table(("#", *digest.columns), ranked(digest.reps[:shown]))]
            parts += filter(None, [more(digest, shown, len(digest.reps))])
        if digest.teams:
            parts.append(_table((digest.label("team"), *digest.columns[1:]),
                                [("", r) for r in digest.teams], ranks=False))
    if digest.total is not None:
        t = digest.total
        parts.append(f"**{t.label}**: {figures(t)}")
    for lines in digest.lists:
        parts += [f"### {lines.title}",
                  bullets(digest, lines, shown)]
    return "\n\n".join(parts)


def _table(head: tuple[str, ...], rows: list[tuple[str, Row]], ranks: bool = True) -> str:
    """A markdown_v2 table (§3.1); `|` in a name would split a cell, so it is replaced."""
    aligns = ([":-:"] if ranks else []) + [":--"] + ["--:"] * 3
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(aligns) + " |"]
    for rank, r in rows:
        values = ([rank] if ranks else []) + [r.label.replace("|", "/"), r.bookings,
                                              r.deals_won, r.attainment]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def request(url: str, secret: str | None, body: Body, now: datetime,
            idempotency: str) -> tuple[str, Body]:
    """Unsigned: the key in the URL is the credential (§1)."""
    return url, body


def outcome(status: int, headers: Mapping[str, str], text: str) -> Outcome:
    return errcode_outcome(TITLE, status, text, RETRY)[0]
