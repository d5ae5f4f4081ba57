"""Sales hygiene (docs/evaluation.md#hygiene): open deals that break a rule of good CRM
keeping (not updated for N days, a close date in the past, no amount...), listed per rep
and counted.

The rules are data (RULES): a key, and for some a threshold with its default and bounds.
Admins switch rules off or set another threshold (set_rule); the settings live in the
hygiene_rule table, so a change applies to the next request without a restart. Only live
open deals are checked; every rule is one SQL condition over the deal, its stage and its
owner's CRM user, the same on SQLite and PostgreSQL. "Today" is the date in
CRMSYNC_TIMEZONE (core.metrics.periods.today).

Every function takes the caller's session and never commits.
"""

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, case, false, func, literal, or_, select, tuple_
from sqlmodel import Session

from core.columns import Percent
from core.config import Settings
from core.metrics.definitions import team_order
from core.metrics.periods import today as local_today
from core.models import Deal, HygieneRule, Stage, User, live_open, table_of
from core.people import labels, team_members, teams
from core.queries import Listing
from core.types import utcnow

DEAL, STAGE, USER, RULE = (table_of(m) for m in (Deal, Stage, User, HygieneRule))


@dataclass(frozen=True)
class Check:
    """What a rule's condition depends on: its threshold, today and the store's zone."""

    threshold: int | None
    today: date
    zone: str


Condition = Callable[[Check], ColumnElement[bool]]
"""A rule's SQL condition over DEAL and STAGE (as _joined joins them)."""


def _blank(column: Any) -> ColumnElement[bool]:
    return or_(column.is_(None), func.trim(column) == "")


def _stale(check: Check) -> ColumnElement[bool]:
    """Modified before the start (in the store's zone) of the day N days before today."""
    day = check.today - timedelta(days=check.threshold or 0)
    return DEAL.c.remote_modified_at < datetime.combine(day, time(0), ZoneInfo(check.zone))


def _inactive_owner(_check: Check) -> ColumnElement[bool]:
    """The owner is one of the few inactive or removed CRM users: a lookup in their small
    set, not a join of every deal to its owner (docs/benchmarks.md, Dashboard pages)."""
    inactive = select(USER.c.connection_id, USER.c.remote_id).where(
        or_(USER.c.active.is_(False), USER.c.deleted_at.is_not(None)))
    return tuple_(DEAL.c.connection_id, DEAL.c.owner_remote_id).in_(inactive)


def _probability_mismatch(check: Check) -> ColumnElement[bool]:
    tolerance = Decimal(check.threshold or 0)
    gap = DEAL.c.probability - STAGE.c.probability
    return and_(DEAL.c.probability.is_not(None), STAGE.c.probability.is_not(None),
                or_(gap > literal(tolerance, Percent), gap < literal(-tolerance, Percent)))


@dataclass(frozen=True)
class RuleSpec:
    """A rule as crmsync defines it: its `condition`, and the `default` threshold (None:
    the rule takes none) in `unit`, from `minimum` to `maximum`."""

    key: str
    description: str
    condition: Condition
    default: int | None = None
    unit: str | None = None
    minimum: int = 0
    maximum: int = 0


RULES: dict[str, RuleSpec] = {spec.key: spec for spec in (
    RuleSpec("stale", "No update in the CRM for more than N days", _stale, 30, "days", 1, 3650),
    RuleSpec("past_close", "Close date in the past while the deal is open",
             lambda c: DEAL.c.close_date < c.today),
    RuleSpec("no_amount", "No amount, or an amount of 0",
             lambda _: or_(DEAL.c.amount.is_(None), DEAL.c.amount == 0)),
    RuleSpec("no_close_date", "No close date", lambda _: DEAL.c.close_date.is_(None)),
    RuleSpec("no_account", "No account (neither an account id nor a name)",
             lambda _: and_(_blank(DEAL.c.account_remote_id), _blank(DEAL.c.account_name))),
    RuleSpec("no_owner", "No owner (neither an owner id nor an owner email)",
             lambda _: and_(_blank(DEAL.c.owner_remote_id), _blank(DEAL.c.owner_email))),
    RuleSpec("inactive_owner", "The owner is an inactive (or removed) CRM user",
             _inactive_owner),
    RuleSpec("probability_mismatch", "Probability more than N percentage points away from "
             "its stage's", _probability_mismatch, 10, "points", 0, 100),
)}
SHORT_LABELS: dict[str, dict[str, str]] = {
    "en": {"stale": "Stale", "past_close": "Past close", "no_amount": "No amount",
           "no_close_date": "No close date", "no_account": "No account",
           "no_owner": "No owner", "inactive_owner": "Inactive owner",
           "probability_mismatch": "Probability"},
    "zh": {"stale": "长期未更新", "past_close": "已过成交日期", "no_amount": "缺金额",
           "no_close_date": "缺成交日期", "no_account": "缺客户", "no_owner": "无负责人",
           "inactive_owner": "负责人已停用", "probability_mismatch": "赢率不符"},
}
"""Each rule's short name in English and Chinese: the dashboard (api/web/i18n.py,
hygiene.short.<rule>) and the digests (core.digests.content) both show these."""
TOTAL = "total"
ITEM_COLUMNS = (
    "id", "connection_id", "remote_id", "name", "amount", "currency", "stage", "probability",
    "stage_probability", "close_date", "remote_modified_at", "owner_person_id", "owner_email",
    "owner_name", "account_name", "rules",
)


class HygieneError(ValueError):
    """A rule or a threshold that does not exist; nothing was changed."""


@dataclass(frozen=True)
class RuleState:
    """A rule with its settings: on or off, and the threshold in force."""

    spec: RuleSpec
    enabled: bool
    threshold: int | None

    @property
    def key(self) -> str:
        return self.spec.key

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"key": s.key, "description": s.description, "enabled": self.enabled,
                "threshold": self.threshold, "default_threshold": s.default, "unit": s.unit,
                "minimum": s.minimum if s.unit else None, "maximum": s.maximum if s.unit else None}


# ---- settings ------------------------------------------------------------------------------

def spec_of(key: str) -> RuleSpec:
    """The rule `key`, or HygieneError naming the rules there are."""
    spec = RULES.get(key)
    if spec is None:
        raise HygieneError(f"no hygiene rule {key!r}; the rules are {', '.join(RULES)}")
    return spec


def rules(session: Session) -> list[RuleState]:
    """Every rule, in RULES order, with its settings (the defaults where an admin set none)."""
    stored = {row.key: row for row in session.execute(select(RULE))}
    out = []
    for spec in RULES.values():
        row = stored.get(spec.key)
        threshold = spec.default if row is None or row.threshold is None else int(row.threshold)
        out.append(RuleState(spec, True if row is None else bool(row.enabled), threshold))
    return out


def set_rule(session: Session, key: str, changes: Mapping[str, Any]) -> RuleState:
    """Switch rule `key` on or off (changes["enabled"]) or set its threshold
    (changes["threshold"]; None: back to the default). A key or value that is not valid
    raises HygieneError and changes nothing."""
    spec = spec_of(key)
    unknown = set(changes) - {"enabled", "threshold"}
    if unknown:
        raise HygieneError(f"a hygiene rule has no setting {', '.join(sorted(unknown))}; "
                           "it has enabled and threshold")
    current = next(r for r in rules(session) if r.key == key)
    enabled = changes.get("enabled", current.enabled)
    if not isinstance(enabled, bool):
        raise HygieneError("enabled must be true or false")
    threshold = current.threshold
    if changes.get("threshold") is not None:
        threshold = changes["threshold"]
        if spec.unit is None:
            raise HygieneError(f"rule {key} takes no threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int) \
                or not spec.minimum <= threshold <= spec.maximum:
            raise HygieneError(f"the threshold of {key} must be a whole number of {spec.unit} "
                               f"from {spec.minimum} to {spec.maximum}, not {threshold!r}")
    elif "threshold" in changes:  # None: back to the default
        threshold = spec.default
    stored = None if threshold == spec.default else threshold
    row = session.get(HygieneRule, key) or HygieneRule(key=key)
    row.enabled, row.threshold, row.updated_at = enabled, stored, utcnow()
    session.add(row)
    session.flush()
    return RuleState(spec, enabled, threshold)


# ---- the rules as SQL ----------------------------------------------------------------------

def conditions(states: Collection[RuleState], *, settings: Settings,
               today: date) -> dict[str, ColumnElement[bool]]:
    """rule key -> its SQL condition over DEAL and STAGE (as joined by _joined), for
    the enabled rules of `states`."""
    return {s.key: s.spec.condition(Check(s.threshold, today, settings.timezone))
            for s in states if s.enabled}


def _joined(stmt: Select[Any]) -> Select[Any]:
    """`stmt` over live open deals, with their stage (live). Every column of DEAL the rules
    and the counts read is in the partial index ix_deal_open (core.models.OPEN_COLUMNS),
    so counting reads that index alone."""
    return (stmt.select_from(DEAL)
            .outerjoin(STAGE, and_(STAGE.c.connection_id == DEAL.c.connection_id,
                                   STAGE.c.remote_id == DEAL.c.stage_remote_id,
                                   STAGE.c.deleted_at.is_(None)))
            .where(live_open(DEAL)))


def _scope(people: Collection[int] | None, connection_id: int | None,
           owner_person_id: int | None = None, team: str | None = None
           ) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if people is not None:
        where.append(DEAL.c.owner_person_id.in_(sorted(people)))
    if connection_id is not None:
        where.append(DEAL.c.connection_id == connection_id)
    if owner_person_id is not None:
        where.append(DEAL.c.owner_person_id == owner_person_id)
    if team is not None:
        where.append(DEAL.c.owner_person_id.in_(team_members(team)))
    return where


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


# ---- counts and items ----------------------------------------------------------------------

def hygiene_counts(session: Session, *, settings: Settings,
                   people: Collection[int] | None = None, connection_id: int | None = None,
                   today: date | None = None) -> dict[int | None, dict[str, int]]:
    """Owner person id (None: deals of no owner person) -> {rule key: deals breaking it, ...,
    "total": deals breaking at least one}, for the enabled rules, over the live open deals
    (of `people` only, unless None; of one connection). Owners without an issue are left
    out."""
    built = conditions(rules(session), settings=settings, today=today or local_today(settings))
    if not built:
        return {}
    flags = [func.sum(_flag(c)).label(k) for k, c in built.items()]
    stmt = _joined(select(DEAL.c.owner_person_id, *flags, func.count().label(TOTAL)))
    stmt = stmt.where(or_(*built.values()), *_scope(people, connection_id))
    stmt = stmt.group_by(DEAL.c.owner_person_id)
    out: dict[int | None, dict[str, int]] = {}
    for row in session.execute(stmt):
        owner = row[0]
        out[None if owner is None else int(owner)] = {
            key: int(value or 0) for key, value in zip([*built, TOTAL], row[1:], strict=True)}
    return out


def add_up(counts: Collection[Mapping[str, int]]) -> dict[str, int]:
    """The sum of several owners' counts (a team's, everyone's), key by key."""
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def hygiene_summary(session: Session, *, settings: Settings,
                    people: Collection[int] | None = None, connection_id: int | None = None,
                    team: str | None = None, today: date | None = None) -> dict[str, Any]:
    """hygiene_counts with names: {"today", "rules" (the enabled keys), "data": a row per
    owner with issues (person_id, owner_email, owner_name, team, counts, total; most issues
    first), "teams": their teams' subtotals (team null last), "total"}; `team` limits it
    to that team's people."""
    day = today or local_today(settings)
    if team is not None:
        members = set(session.execute(team_members(team)).scalars())
        people = members if people is None else members & set(people)
    by_owner = hygiene_counts(session, settings=settings, people=people,
                              connection_id=connection_id, today=day)
    names, team_of = labels(session, by_owner), teams(session, by_owner)
    data: list[dict[str, Any]] = []
    for owner, found in by_owner.items():
        email, name = (None, "") if owner is None else names.get(owner, (None, ""))
        data.append({"person_id": owner, "owner_email": email, "owner_name": name or email,
                     "team": None if owner is None else team_of.get(owner),
                     "total": found[TOTAL],
                     "counts": {k: v for k, v in found.items() if k != TOTAL}})
    data.sort(key=lambda r: (-r["total"], r["person_id"] is None,
                             (r["owner_name"] or "").casefold(), r["person_id"] or 0))

    def row(rows: list[dict[str, Any]]) -> dict[str, Any]:
        counts = add_up([r["counts"] for r in rows])
        return {"counts": counts, "total": sum(r["total"] for r in rows)}

    return {"today": day, "rules": [r.key for r in rules(session) if r.enabled], "data": data,
            "teams": [{"team": t, **row([r for r in data if r["team"] == t])}
                      for t in team_order({r["team"] for r in data})],
            "total": row(data)}


def hygiene_items(session: Session, *, settings: Settings,
                  people: Collection[int] | None = None, connection_id: int | None = None,
                  owner_person_id: int | None = None, team: str | None = None,
                  rule: str | None = None, today: date | None = None) -> Listing:
    """The live open deals breaking an enabled rule (`rule`, when given), of `people`
    (unless None), one owner (person), one team's people or one connection, as a Listing
    (core.queries.fetch_page, iter_rows) in deal id order: ITEM_COLUMNS, "rules" the keys of
    every enabled rule each deal breaks. A rule that does not exist raises HygieneError; one that is
    switched off lists nothing."""
    if rule is not None:
        spec_of(rule)
    built = conditions(rules(session), settings=settings, today=today or local_today(settings))
    keys = list(built)
    wanted = [c for k, c in built.items() if rule is None or k == rule]
    columns = [DEAL.c[name] for name in ITEM_COLUMNS[:8]] + [
        STAGE.c.probability.label("stage_probability"),
        *(DEAL.c[name] for name in ITEM_COLUMNS[9:15])]
    stmt = _joined(select(*columns, *(_flag(c) for c in built.values())))
    stmt = stmt.where(or_(*wanted) if wanted else false(),
                      *_scope(people, connection_id, owner_person_id, team))

    def to_row(row: Any) -> dict[str, Any]:
        values = dict(zip(ITEM_COLUMNS[:-1], row[:len(columns)], strict=True))
        values["rules"] = [k for k, flag in zip(keys, row[len(columns):], strict=True) if flag]
        return values

    return Listing(stmt, DEAL.c.id, to_row)


__all__ = ["ITEM_COLUMNS", "RULES", "TOTAL", "Check", "HygieneError", "RuleSpec", "RuleState",
           "add_up", "conditions", "hygiene_counts", "hygiene_items", "hygiene_summary",
           "rules", "set_rule", "spec_of"]
