"""What every platform's rendering shares: the leaderboard as ranked lines or a table,
cut to the platform's size limit with a closing "and N more" line (never refused for
size), and the outcome of a send."""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.digests.content import Digest, Lines, Row

Body = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a platform's answer means: delivered, worth retrying (after `wait` seconds
    when the platform says how long) or a permanent `error` to show the admin."""

    ok: bool
    retry: bool = False
    wait: float | None = None
    error: str | None = None


OK = Outcome(ok=True)


def encoded(body: Body) -> bytes:
    """The JSON bytes sent (UTF-8, not \\u-escaped: CJK text stays a third of the size)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def fit(build: Callable[[int], Body], rows: int, size: Callable[[Body], int],
        limit: int) -> Body:
    """build(n) with the largest n <= rows whose size is within `limit` (build(0) at
    least: the title and totals always go)."""
    low, high = 0, rows
    if size(build(high)) <= limit:
        return build(high)
    while low < high:  # the size grows with n: the largest n that fits
        middle = (low + high + 1) // 2
        if size(build(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return build(low)


def more(digest: Digest, shown: int, total: int) -> str | None:
    """The "and N more" line when rows were cut, else None."""
    return digest.label("more", n=total - shown) if shown < total else None


def shown_lines(digest: Digest, lines: Lines, shown: int) -> list[str]:
    """The first `shown` lines of a list, then "and N more" if some were cut; or the
    list's empty text."""
    if not lines.lines:
        return [lines.empty]
    kept = lines.lines[:shown]
    cut = more(digest, len(kept), len(lines.lines) if lines.total is None else lines.total)
    return kept + ([cut] if cut else [])


def ranked(rows: list[Row]) -> list[tuple[str, Row]]:
    """(rank, row) in order: 1, 2, 3..."""
    return [(str(i), row) for i, row in enumerate(rows, start=1)]


def cells(row: Row) -> tuple[str, str, str, str]:
    return (row.label, row.bookings, row.deals_won, row.attainment)


def line(rank: str, row: Row) -> str:
    """A leaderboard line for platforms without tables: `1. Li Na 128,000.00 · 3 · 85.0%`."""
    return f"{rank}. {row.label}  {figures(row)}"


def figures(row: Row) -> str:
    """A row's figures on one line: `128,000.00 · 3 · 85.0%`."""
    return f"{row.bookings} · {row.deals_won} · {row.attainment}"


def bullets(digest: Digest, lines: Lines, shown: int, mark: str = "-") -> str:
    """A list's shown lines (shown_lines) as a markdown list."""
    return "\n".join(f"{mark} {x}" for x in shown_lines(digest, lines, shown))


def monospace(digest: Digest, rows: list[tuple[str, Row]]) -> str:
    """A fixed-width table (Slack's safe fallback for tables, docs/vendors/chat.md §3.4)."""
    head = ("#", *digest.columns)
    body = [(rank, *cells(row)) for rank, row in rows]
    widths = [max(_width(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(_pad(value, widths[i], right=i > 1)
                               for i, value in enumerate(r)).rstrip() for r in [head, *body])


def _width(text: str) -> int:
    """Display columns: CJK characters take two."""
    return sum(2 if ord(c) >= 0x1100 else 1 for c in text)


def _pad(text: str, width: int, *, right: bool) -> str:
    space = " " * (width - _width(text))
    return space + text if right else text + space


def json_answer(text: str | bytes) -> dict[str, Any] | None:
    """A JSON object answer, or None (an HTML error page, a truncated body)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_webhook(url: str, *, path: str, query: str | None = None,
                  segments: int = 0) -> None:
    """ValueError unless `url` is an http(s) URL whose path is `path` (followed by
    `segments` non-empty path segments) and, with `query`, carries that parameter."""
    parsed = urlsplit(url)
    rest = parsed.path.removeprefix(path)
    ok = parsed.scheme in ("https", "http") and bool(parsed.hostname) \
        and parsed.path.startswith(path)
    if segments:
        parts = rest.strip("/").split("/")
        ok = ok and rest.startswith("/") and len(parts) == segments and all(parts)
    else:
        ok = ok and rest == ""
    if query is not None:
        ok = ok and bool(parse_qs(parsed.query).get(query, [""])[0])
    if not ok:
        shape = path + "/<id>" * segments + (f"?{query}=<...>" if query else "")
        raise ValueError(f"the webhook URL must look like https://<host>{shape}")


def errcode_outcome(platform: str, status: int, text: str,
                    retry: Mapping[int, float | None]) -> tuple[Outcome, str]:
    """The answer of a platform that says HTTP 200 with {"errcode", "errmsg"} (WeCom,
    DingTalk): delivered, a retry after retry[errcode] seconds (None: back-off), or a
    permanent error; and the errmsg."""
    answer = json_answer(text)
    if status != 200 or answer is None:
        return status_error(platform, status, text), ""
    code, message = answer.get("errcode"), str(answer.get("errmsg", ""))
    if code == 0:
        return OK, message
    error = f"{platform} errcode {code}: {message[:200]}"
    if isinstance(code, int) and code in retry:
        return Outcome(ok=False, retry=True, wait=retry[code], error=error), message
    return Outcome(ok=False, error=error), message


def status_error(platform: str, status: int, detail: str) -> Outcome:
    """An HTTP-level failure: 5xx and 429 are worth retrying, the rest is permanent."""
    transient = status >= 500 or status == 429
    return Outcome(ok=False, retry=transient,
                   error=f"{platform} answered HTTP {status}: {detail[:200]}")
