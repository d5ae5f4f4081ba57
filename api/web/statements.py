"""The statements page: a rep's own commission statements line by line; a manager's (or an
admin's) team with totals and the CSV and xlsx exports; the plans in readable form. Every
figure comes from core.incentives, the functions the API's /statements route calls,
limited to the people the signed-in user may see."""

from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from api.web import guard
from api.web.i18n import text
from api.web.render import PageRoute, language, render
from core.accounts import Role, Viewer
from core.config import Settings
from core.incentives import periods, statements, whatif
from core.incentives.calendar import Period, PeriodInvalid, parse_period, period_of
from core.metrics.currency import CurrencyError
from core.metrics.periods import today

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_ID = 2**31 - 1


def _shown(data: list[dict[str, Any]], viewer: Viewer, person: int | None) -> list[dict[str, Any]]:
    """The statements shown line by line: a rep's own, or the chosen person's."""
    if viewer.role == Role.REP:
        return data
    return [s for s in data if person is not None and s["person_id"] == person]


def _totals(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earned and payout summed per payout currency."""
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"earned": Decimal(0),
                                                              "payout": Decimal(0)})
    for item in data:
        for key in ("earned", "payout"):
            sums[item["currency"]][key] += item[key]
    return [{"currency": code, **values} for code, values in sorted(sums.items())]


def _plans(session: Session, data: list[dict[str, Any]]) -> list[statements.StoredPlan]:
    """The plan versions the shown statements used."""
    wanted = sorted({(s["plan_key"], s["plan_version"]) for s in data})
    return [statements.get_plan(session, key, version) for key, version in wanted]


def _hints(session: Session, settings: Settings, period: Period,
           shown: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Open deals closing in the period and what winning each adds, per shown statement
    of an open period."""
    out = {}
    for item in shown:
        if not item["locked"]:
            stored = statements.get_plan(session, item["plan_key"], item["plan_version"])
            out[(item["plan_key"], item["person_id"])] = whatif.open_deals(
                session, settings, stored, item["person_id"], period)
    return out


def _read(session: Session, settings: Settings, period: Period,
          viewer: Viewer) -> list[dict[str, Any]]:
    if not periods.is_locked(session, period.label):
        periods.record_adjustments(session, settings, today=today(settings))
        session.commit()
    return statements.statements(session, settings, period, people=viewer.people)


@router.get("/statements")
def statements_page(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query(max_length=20)] = "",
    person: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    viewer, lang = signed.viewer, language(request)
    label = period.strip() or period_of("quarter", today(settings),
                                        settings.fiscal_year_start_month).label
    chosen = int(person) if person.isdigit() and 1 <= int(person) <= MAX_ID else None
    page: dict[str, Any] = {"label": label, "period": None, "data": [], "shown": [],
                            "totals": [], "plans": [], "error": "", "chosen": chosen,
                            "exports": {}, "hints": {}}
    status = 200
    try:
        the_period = parse_period(label, settings.fiscal_year_start_month)
        data = _read(session, settings, the_period, viewer)
    except PeriodInvalid:
        page["error"], status = text(lang, "stmt.bad_period"), 400
    except CurrencyError as exc:
        session.rollback()
        page["error"], status = text(lang, "error.missing_rate", detail=str(exc)), 422
    else:
        shown = _shown(data, viewer, chosen)
        query = {"period": the_period.label}
        page.update(period=the_period, data=data, shown=shown, totals=_totals(data),
                    hints=_hints(session, settings, the_period, shown),
                    plans=_plans(session, shown or data),
                    exports={fmt: "/api/v1/statements?" + urlencode({**query, "format": fmt})
                             for fmt in ("csv", "xlsx")},
                    link="/statements?" + urlencode(query))
    return render(request, "statements.html", status=status, signed=signed, nav="statements",
                  **page)


__all__ = ["router"]
