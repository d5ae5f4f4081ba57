"""The common start of the pages that show a slice of people for a period (Trends,
Pipeline, Funnel, Scorecards): the signed-in user and the `show` choice
(api.web.focus.signed_focus: a slice outside the user's scope is not found), the
language and the period
(api.web.leaderboard.choose_period), and the context their forms need."""

from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from api.web.focus import Focus, choices, label, signed_focus
from api.web.i18n import Formats, text
from api.web.leaderboard import PERIOD_CHOICES, Period, choose_period
from api.web.render import language
from core.accounts import SignedIn
from core.config import Settings


@dataclass(frozen=True)
class Sliced:
    """A page's start: who asks, in which language, for whom and which period; `page`
    holds the template's form context (form, choices, period, focus, who, options, and
    error: the bad dates' message when `period` is None)."""

    signed: SignedIn
    lang: str
    fmt: Formats
    focus: Focus
    period: Period | None
    page: dict[str, Any]


def start(request: Request, session: Session, settings: Settings, *, period: str,
          start: str, end: str, show: str, default: str) -> Sliced | Response:
    """The page's start, or the answer instead of the page: the sign-in page for a
    visitor, 404 for a slice the user may not see."""
    found = signed_focus(request, session, show)
    if isinstance(found, Response):
        return found
    signed, focus = found
    lang = language(request)
    chosen = choose_period(period or default, start, end, settings)
    form = {"period": period or default, "start": start, "end": end,
            "show": focus.choice.value}
    if chosen is not None:
        form.update(start=chosen.start.isoformat(), end=chosen.end.isoformat())
    page: dict[str, Any] = {"form": form, "choices": PERIOD_CHOICES, "period": chosen,
                            "focus": focus, "who": label(lang, focus),
                            "options": choices(session, signed.viewer),
                            "error": "" if chosen else text(lang, "error.bad_dates")}
    return Sliced(signed, lang, Formats(lang), focus, chosen, page)


__all__ = ["Sliced", "start"]
