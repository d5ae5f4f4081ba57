"""What a digest holds, built from the store, in the channel's language: the period's
leaderboard (reps by bookings, team subtotals and the total, from
core.metrics.definitions.summaries, the leaderboard page's numbers), each rep's scorecard
line (core.metrics.scorecard.scorecards: against the previous period) and the hygiene
items (core.hygiene: open deals breaking a rule today). Platforms render it
(core.digests.platforms)."""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from core.config import Settings
from core.hygiene import SHORT_LABELS, TOTAL, hygiene_counts, hygiene_items
from core.metrics.definitions import GroupBy, sort_rows, summaries
from core.metrics.scorecard import scorecards
from core.people import team_members
from core.queries import fetch_page

SECTIONS = ("leaderboard", "scorecards", "hygiene")
"""The sections a channel may choose, in message order."""
LANGUAGES = ("en", "zh")
BRAND = "crmsync"
"""In every message's title: the keyword to configure on DingTalk and Feishu robots that
require one (docs/digests.md)."""

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "crmsync sales digest", "weekly": "Week", "monthly": "Month",
        "leaderboard": "Leaderboard", "rep": "Rep", "bookings": "Won",
        "deals_won": "Deals", "attainment": "Goal %", "team": "Team", "total": "Total",
        "no_team": "(no team)", "no_owner": "(no owner)", "more": "and {n} more",
        "empty": "No deals in this period.", "everyone": "everyone", "test": "test message",
        "scorecards": "Scorecards (change on the previous period)", "no_cards": "No reps.",
        "card": "{name} ({team} #{rank}): won {bookings} ({change}) · goal {attainment} · "
                "win rate {win_rate} · next-period coverage {coverage} · activities "
                "{activities} · hygiene {hygiene}",
        "hygiene": "Hygiene: {n} open deals need attention", "no_issues": "No issues.",
        "item": "{deal} · {owner} · {rules}", "and": ", ",
    },
    "zh": {
        "title": "crmsync 销售简报", "weekly": "周", "monthly": "月",
        "leaderboard": "排行榜", "rep": "销售", "bookings": "赢单金额",
        "deals_won": "赢单数", "attainment": "目标达成", "team": "团队", "total": "合计",
        "no_team": "(无团队)", "no_owner": "(无负责人)", "more": "另有 {n} 项",
        "empty": "本期没有成交。", "everyone": "全员", "test": "测试消息",
        "scorecards": "个人记分卡（与上期相比）", "no_cards": "没有销售。",
        "card": "{name}（{team} 第 {rank} 名）：赢单 {bookings}（{change}）· 目标达成 "
                "{attainment} · 赢率 {win_rate} · 下期覆盖率 {coverage} · 活动 {activities}"
                " · 待整理 {hygiene}",
        "hygiene": "商机整理：{n} 个进行中的商机需要处理", "no_issues": "没有问题。",
        "item": "{deal} · {owner} · {rules}", "and": "、",
    },
}


@dataclass(frozen=True)
class Row:
    """One line of the leaderboard: a rep, a team or the total, figures as text."""

    label: str
    bookings: str
    deals_won: str
    attainment: str


@dataclass(frozen=True)
class Lines:
    """A section of plain lines after the leaderboard (a line per rep's scorecard, per
    hygiene item): its title, its lines, and what it says when it has none."""

    title: str
    lines: list[str]
    empty: str
    total: int | None = None
    """How many lines there are when `lines` holds only the first ones (None: all)."""


@dataclass
class Digest:
    language: str
    title: str
    subtitle: str  # the period and the scope
    currency: str | None
    reps: list[Row] = field(default_factory=list)
    teams: list[Row] = field(default_factory=list)
    total: Row | None = None
    sections: tuple[str, ...] = SECTIONS
    lists: list[Lines] = field(default_factory=list)

    @property
    def longest(self) -> int:
        """The most lines of a list (the leaderboard's reps included): what a size limit
        cuts (core.digests.render.fit)."""
        return max([len(self.reps), *(len(x.lines) for x in self.lists)])

    def label(self, key: str, **values: Any) -> str:
        return LABELS[self.language][key].format(**values)

    @property
    def columns(self) -> tuple[str, str, str, str]:
        """The leaderboard's headings."""
        return (self.label("rep"), f"{self.label('bookings')} {self.currency or ''}".strip(),
                self.label("deals_won"), self.label("attainment"))


def build_digest(session: Session, settings: Settings, *, language: str, cadence: str,
                 start: date, end: date, team: str | None = None,
                 sections: tuple[str, ...] = SECTIONS, test: bool = False) -> Digest:
    """The digest of `start`..`end` (inclusive) for everyone, or the people of `team`."""
    people = None if team is None else [int(p) for p in session.scalars(team_members(team))]
    found = summaries(session, start=start, end=end, group_bys=[GroupBy.OWNER, GroupBy.TEAM],
                      settings=settings, people=people)
    words = LABELS[language]
    scope = team if team is not None else words["everyone"]
    subtitle = f"{words[cadence]} {start.isoformat()} – {end.isoformat()} · {scope}"
    title = words["title"] + (f" ({words['test']})" if test else "")
    owners = found[GroupBy.OWNER]
    reps = [_row(r.get("owner_name") or words["no_owner"], r)
            for r in sort_rows(owners["data"], "-bookings", GroupBy.OWNER)
            if r["bookings"] or r["deals_won"] or r["goal"] is not None]
    teams = [_row(r["team"] or words["no_team"], r) for r in found[GroupBy.TEAM]["data"]
             if r["bookings"] or r["deals_won"] or r["goal"] is not None]
    digest = Digest(language=language, title=title, subtitle=subtitle,
                    currency=owners["currency"], reps=reps,
                    teams=teams if team is None else [],
                    total=_row(words["total"], owners["total"]), sections=sections)
    if "scorecards" in sections:
        digest.lists.append(_scorecards(session, settings, digest, start, end, people))
    if "hygiene" in sections:
        digest.lists.append(_hygiene(session, settings, digest, people))
    return digest


MAX_ITEMS = 500
"""Hygiene items read for a digest; a platform's size limit shows fewer ("and N more")."""


def _scorecards(session: Session, settings: Settings, digest: Digest, start: date, end: date,
                people: list[int] | None) -> Lines:
    """A line per rep: the scorecard's figures (core.metrics.scorecard), in team order."""
    cards = scorecards(session, start=start, end=end, settings=settings, people=people)
    lines = []
    for row in cards["data"]:
        bookings = row["bookings"]
        change = bookings["change"]
        lines.append(digest.label(
            "card", name=row["owner_name"] or row["owner_email"] or digest.label("no_owner"),
            team=row["team"] or digest.label("no_team"), rank=row["rank"],
            bookings=money(bookings["value"]),
            change="-" if change is None else f"{change:+,.2f}",
            attainment=percent(row["attainment"]["value"]),
            win_rate=percent(row["win_rate"]["value"]),
            coverage=percent(row["pipeline_coverage"]["value"]),
            activities=_count(row["activities"]["value"]),
            hygiene=_count(row["hygiene"]["value"])))
    return Lines(digest.label("scorecards"), lines, digest.label("no_cards"))


def _hygiene(session: Session, settings: Settings, digest: Digest,
             people: list[int] | None) -> Lines:
    """The open deals breaking a hygiene rule today (core.hygiene), the first MAX_ITEMS of
    them, and how many there are."""
    count = sum(c[TOTAL] for c in hygiene_counts(session, settings=settings,
                                                 people=people).values())
    rows, _ = fetch_page(session, hygiene_items(session, settings=settings, people=people),
                         after=None, limit=MAX_ITEMS)
    names = SHORT_LABELS[digest.language]
    lines = [digest.label("item", deal=r["name"] or r["remote_id"],
                          owner=r["owner_name"] or r["owner_email"] or digest.label("no_owner"),
                          rules=digest.label("and").join(names[k] for k in r["rules"]))
             for r in rows]
    return Lines(digest.label("hygiene", n=count), lines, digest.label("no_issues"),
                 total=count)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _row(label: str, row: dict[str, Any]) -> Row:
    return Row(label=label, bookings=money(row["bookings"]), deals_won=str(row["deals_won"]),
               attainment=percent(row["attainment"]))


def money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def percent(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
