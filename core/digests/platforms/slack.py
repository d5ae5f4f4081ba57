"""Slack incoming webhooks (docs/vendors/chat.md).

POST https://hooks.slack.com/services/T.../B.../<secret>: the URL is the credential, no
signature (§1; https://api.slack.com/messaging/webhooks). The digest is `blocks` with
`text` as the notification fallback; a table is a monospace block in a section (the
`table` block over webhooks is unverified) (§3.4); section text at most 3000 characters,
at most 50 blocks (§4); mrkdwn escapes &, < and > (§3.4). Success is HTTP 200 `ok`; errors
are an HTTP status with a plain-text body (invalid_payload, no_text, channel_not_found...)
(§6); 429 with Retry-After past about one message a second (§5).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.digests.content import Digest
from core.digests.render import (
    OK,
    Body,
    Outcome,
    check_webhook,
    figures,
    fit,
    monospace,
    more,
    ranked,
    shown_lines,
)

NAME = "slack"
TITLE = "Slack"
HOSTS = ("hooks.slack.com",)
RATE = (1, 1.0)
SIGNED = False
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150


def check_url(url: str) -> None:
    check_webhook(url, path="/services", segments=3)


def escape(text: str) -> str:
    """mrkdwn's three escapes (§3.4)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(digest: Digest) -> Body:
    def build(shown: int) -> Body:
        return _message(digest, shown)

    def size(body: Body) -> int:
        return max(len(b["text"]["text"]) for b in body["blocks"] if b["type"] == "section")
    return fit(build, digest.longest, size, MAX_SECTION_CHARS)


def _message(digest: Digest, shown: int) -> Body:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": digest.title[:MAX_HEADER_CHARS]}},
        _section(escape(digest.subtitle))]
    if "leaderboard" in digest.sections:
        if not digest.reps:
            board = escape(digest.label("empty"))
        else:
            board = "```\n" + escape(monospace(digest, ranked(digest.reps[:shown]))) + "\n```"
            cut = more(digest, shown, len(digest.reps))
            board += f"\n{escape(cut)}" if cut else ""
        blocks.append(_section(f"*{escape(digest.label('leaderboard'))}*\n{board}"))
        if digest.teams:
            teams = monospace(digest, [("", r) for r in digest.teams])
            blocks.append(_section("```\n" + escape(teams) + "\n```"))
    if digest.total is not None:
        t = digest.total
        blocks.append(_section(f"*{escape(t.label)}*: {escape(figures(t))}"))
    for lines in digest.lists:
        blocks.append(_section(f"*{escape(lines.title)}*\n" + "\n".join(
            f"• {escape(x)}" for x in shown_lines(digest, lines, shown))))
    return {"text": f"{digest.title}: {digest.subtitle}", "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def request(url: str, secret: str | None, body: Body, now: datetime,
            idempotency: str) -> tuple[str, Body]:
    """Unsigned: the URL is the credential (§1)."""
    return url, body


def outcome(status: int, headers: Mapping[str, str], text: str) -> Outcome:
    if status == 200 and text.strip() == "ok":
        return OK
    error = f"{TITLE} HTTP {status}: {text.strip()[:200]}"
    if status == 429:
        wait = headers.get("retry-after") or headers.get("Retry-After")
        return Outcome(ok=False, retry=True, wait=float(wait) if wait and wait.isdigit()
                       else None, error=error)
    return Outcome(ok=False, retry=status >= 500, error=error)
