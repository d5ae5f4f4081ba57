"""Scorecards (docs/evaluation.md, "Scorecards"): per rep for a period, the summary's
bookings, goal, attainment, win rate, cycle and average deal, the pipeline coverage of the
next period, activities and hygiene, each beside the previous period's value and the
change, with the rep's rank in their team; and the same figures per team and in total.

The summary figures are core.metrics.definitions.summaries() (owner and team rows from one
set of queries per period); team and total rows are computed from the team's exact
ingredients there, never summed or averaged from the reps' ratios. Coverage reads the
deals as of the period's last day (core.history.deals_as_of, grouped in SQL by
core.metrics.evaluation.as_of_sums) and the next period's goals (core.goals).
"""

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core import history
from core.activities import activity_counts
from core.config import Settings
from core.goals.targets import GoalTargets, attainment, goal_targets
from core.hygiene import hygiene_counts
from core.metrics.aggregates import Amounts, round_half_up
from core.metrics.currency import Converter, converter
from core.metrics.definitions import GroupBy, summaries, team_order, validate_range
from core.metrics.evaluation import OPEN, EvalGroupBy, as_of_sums
from core.metrics.periods import adjacent
from core.people import PERSON, team_members, teams

SUMMARY_FIGURES = ("bookings", "goal", "attainment", "win_rate", "sales_cycle_days",
                   "avg_deal_size")
COVERAGE_FIGURES = ("next_open_pipeline", "next_goal", "pipeline_coverage")
COUNT_FIGURES = ("activities", "hygiene")
FIGURES = (*SUMMARY_FIGURES, *COVERAGE_FIGURES, *COUNT_FIGURES)
"""A scorecard's figures, in column order; each is {"value","previous","change"}."""
Counts = dict[int | None, dict[str, int]]  # owner person -> {kind: count, ..., "total": n}


class Coverage:
    """The open pipeline, as of one day, of the deals closing in the period after it, by
    owner person (exact, per currency), and that period's goals."""

    def __init__(self, session: Session, settings: Settings, *, as_of: date,
                 period: tuple[date, date], connection_id: int | None,
                 people: Collection[int] | None) -> None:
        deals = history.deals_as_of(history.end_of_day(as_of, settings.timezone))
        self.pipeline: dict[Any, Amounts] = defaultdict(list)
        for row in as_of_sums(session, deals, start=period[0], end=period[1],
                              group_by=EvalGroupBy.OWNER, connection_id=connection_id,
                              people_=people, statuses=(OPEN,)):
            self.pipeline[row.key].append((row.currency, row.amount))
        self.goals: GoalTargets = goal_targets(session, start=period[0], end=period[1],
                                               people=people)

    def figures(self, conv: Converter, keys: Iterable[Any],
                goal: Decimal | None) -> dict[str, Any]:
        """The open pipeline of `keys` (owner persons; None: deals of no owner), `goal`
        and their ratio (attainment's rounding: 4 places)."""
        amount = conv.total(a for key in keys for a in self.pipeline.get(key, []))
        return {"next_open_pipeline": round_half_up(amount, 2),
                "next_goal": None if goal is None else round_half_up(goal, 2),
                "pipeline_coverage": attainment(amount, goal)}


def _counts(counts: Counts, keys: Iterable[Any]) -> tuple[int, dict[str, int]]:
    """The summed counts of `keys`: the total, and each kind's that is not 0."""
    kinds: dict[str, int] = defaultdict(int)
    for key in keys:
        for kind, n in counts.get(key, {}).items():
            kinds[kind] += n
    total = kinds.pop("total", 0)
    return total, {kind: n for kind, n in sorted(kinds.items()) if n}


def _change(value: Any, previous: Any) -> Any:
    return None if value is None or previous is None else value - previous


def _figures(now: dict[str, Any], before: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"value": now.get(name), "previous": before.get(name),
                   "change": _change(now.get(name), before.get(name))} for name in FIGURES}


def _ranks(bookings: dict[Any, Decimal]) -> dict[Any, int]:
    """Competition ranking by bookings, highest first: equal bookings share a rank, and
    the next rank skips as many (1, 2, 2, 4)."""
    return {key: 1 + sum(1 for other in bookings.values() if other > value)
            for key, value in bookings.items()}


class NoOneToShow(LookupError):
    """The team or rep asked for has nobody the caller may see."""


def _shown_people(session: Session, people: Collection[int] | None, person_id: int | None,
                  team: str | None) -> frozenset[int] | None:
    """The people whose numbers are computed: those of `team` or of `person_id`'s team
    (ranks are within the team), within `people` (None: everyone)."""
    if person_id is not None:
        if people is not None and person_id not in people:
            raise NoOneToShow(f"person {person_id} does not exist")
        found = session.execute(select(PERSON.c.team).where(PERSON.c.id == person_id)).first()
        if found is None:
            raise NoOneToShow(f"person {person_id} does not exist")
        if team is not None and found.team != team:
            raise NoOneToShow(f"person {person_id} is not in team {team}")
        team = found.team
        members = set(session.execute(team_members(team)).scalars())
    elif team is not None:
        members = set(session.execute(team_members(team)).scalars())
    else:
        return None if people is None else frozenset(people)
    shown = frozenset(members if people is None else members & set(people))
    if not shown:
        raise NoOneToShow(f"team {team} does not exist")
    return shown


def scorecards(session: Session, *, start: date, end: date, settings: Settings,
               people: Collection[int] | None = None, connection_id: int | None = None,
               person_id: int | None = None, team: str | None = None,
               today: date | None = None) -> dict[str, Any]:
    """Scorecards of the reps (and their teams) for [start, end] against the period before
    it (core.metrics.periods.adjacent: same number of months, or of days for other ranges):

    {"start","end","previous_start","previous_end","next_start","next_end","currency",
     "data":[{"person_id","owner_email","owner_name","team","rank","previous_rank",
              <figure>: {"value","previous","change"}..., "activity_types","hygiene_rules"}],
     "teams":[{"team","reps", <figure>..., "activity_types","hygiene_rules"}],
     "total":{<figure>..., "activity_types","hygiene_rules"}}

    A rep's row exists when the summary of either period has the person (deals, accounts,
    a goal or an active CRM user); deals of no owner are no rep's (they count in team null
    and the total). Activities are those that count in each period
    (core.activities.activity_counts); hygiene is today's open deals breaking a rule
    (core.hygiene.hygiene_counts; `today` for another day), so it has no previous value.
    `people` (not None) limits everything to those people, as in
    summary(). `team` keeps that team's people; `person_id` that rep's card alone, ranked
    in their team (teams and total: of that team), both within `people`.
    Raises ValueError for bad parameters, CurrencyError for a missing rate, NoOneToShow
    when the team or person has nobody within `people`.
    """
    validate_range(start, end)
    people = _shown_people(session, people, person_id, team)
    previous, following = adjacent(start, end, -1), adjacent(start, end, 1)
    conv = converter(session, settings)
    answers = [summaries(session, start=first, end=last, group_bys=(GroupBy.OWNER, GroupBy.TEAM),
                         connection_id=connection_id, settings=settings, people=people)
               for first, last in ((start, end), previous)]
    coverage = [Coverage(session, settings, as_of=as_of, period=period,
                         connection_id=connection_id, people=people)
                for as_of, period in ((end, following), (previous[1], (start, end)))]
    counted = [activity_counts(session, start=first, end=last, people=people,
                               connection_id=connection_id)
               for first, last in ((start, end), previous)]
    hygiene = hygiene_counts(session, settings=settings, people=people,
                             connection_id=connection_id, today=today)

    owner_rows: list[dict[int, dict[str, Any]]] = [
        {row["person_id"]: row for row in answer[GroupBy.OWNER]["data"]
         if row["person_id"] is not None} for answer in answers]
    order = [*owner_rows[0], *(p for p in owner_rows[1] if p not in owner_rows[0])]
    # everyone with a number: the reps, and people with only a next goal, pipeline or counts
    everyone = {None, *order, *(k for c in coverage for k in (*c.pipeline, *c.goals.by_owner)),
                *(k for c in (*counted, hygiene) for k in c)}
    team_of = teams(session, everyone)

    def values(period: int, summary_row: dict[str, Any] | None, keys: Collection[Any],
               goal: Decimal | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """A period's figures of `keys` (from `summary_row`), and the counts by kind."""
        row = {name: (summary_row or {}).get(name) for name in SUMMARY_FIGURES}
        if summary_row is None:  # no row that period: nothing booked, no goal
            row["bookings"] = Decimal("0.00")
        row |= coverage[period].figures(conv, keys, goal)
        row["activities"], kinds = _counts(counted[period], keys)
        extra = {"activity_types": kinds} if period == 0 else {}
        if period == 0:
            row["hygiene"], extra["hygiene_rules"] = _counts(hygiene, keys)
        return row, extra

    data = []
    for person in order:
        rows = [owner_rows[i].get(person) for i in (0, 1)]
        (now, extra), (before, _) = (
            values(i, rows[i], [person], coverage[i].goals.by_owner.get(person))
            for i in (0, 1))
        data.append({**{k: (rows[0] or rows[1] or {})[k]
                        for k in ("person_id", "owner_email", "owner_name")},
                     "team": team_of.get(person), "_bookings": (now["bookings"],
                                                                before["bookings"]),
                     **_figures(now, before), **extra})
    for team in {row["team"] for row in data}:
        team_reps = [row for row in data if row["team"] == team]
        for i, name in enumerate(("rank", "previous_rank")):
            ranks = _ranks({row["person_id"]: row["_bookings"][i] for row in team_reps})
            for row in team_reps:
                row[name] = ranks[row["person_id"]]
    position = {person: i for i, person in enumerate(order)}
    teams_order = team_order({row["team"] for row in data})
    data.sort(key=lambda r: (teams_order.index(r["team"]), r["rank"], position[r["person_id"]]))
    for row in data:
        del row["_bookings"]

    team_rows = [{row["team"]: row for row in answer[GroupBy.TEAM]["data"]}
                 for answer in answers]
    team_list = []
    for team in team_order(set(team_rows[0]) | set(team_rows[1])):
        members = [p for p in everyone if team_of.get(p) == team]  # None: team null
        now, extra = values(0, team_rows[0].get(team), members,
                            coverage[0].goals.of(m for m in members if m is not None))
        before, _ = values(1, team_rows[1].get(team), members,
                           coverage[1].goals.of(m for m in members if m is not None))
        team_list.append({"team": team, "reps": sum(1 for r in data if r["team"] == team),
                          **_figures(now, before), **extra})
    now, extra = values(0, answers[0][GroupBy.OWNER]["total"], everyone,
                        coverage[0].goals.total())
    before, _ = values(1, answers[1][GroupBy.OWNER]["total"], everyone,
                       coverage[1].goals.total())
    if person_id is not None:
        data = [row for row in data if row["person_id"] == person_id]
    return {"start": start, "end": end, "previous_start": previous[0],
            "previous_end": previous[1], "next_start": following[0],
            "next_end": following[1], "currency": conv.reporting, "data": data,
            "teams": team_list, "total": {**_figures(now, before), **extra}}


__all__ = ["FIGURES", "Counts", "NoOneToShow", "scorecards"]
