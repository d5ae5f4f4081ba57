"""Pushing goals into the CRMs: what to send to a connection, and what came of it.

plan_push() decides, per connection, which goals to send (new or changed since the last
successful push, by content hash), which to skip (the owner is not a user of that CRM;
unchanged), and which CRM copies to delete; a connector's push_goals
(connectors.base.GoalPusher) makes the calls; record_push() stores each goal's outcome
(goal_push rows). The worker job (workers.jobs.push_goals) wires the three together.

Every function takes the caller's session and never commits.
"""

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core import people
from core.config import Settings
from core.goals.targets import GOAL, PUSH, USER
from core.metrics.currency import Converter, CurrencyError, converter
from core.models import Connection, Goal, GoalPush
from core.records import GoalDeletion, GoalOut, GoalResult, PushResult
from core.types import GoalMetric, PushStatus, utcnow

CENT = Decimal("0.01")
KEPT = (PushStatus.INSERTED, PushStatus.UPDATED, PushStatus.UNCHANGED)  # the CRM holds the goal


def goal_key(goal_id: int) -> str:
    """The goal's stable key in the CRMs (Zoho: Goal_Key): edits update the same record."""
    return f"crmsync-goal-{goal_id}"


def content_hash(goal: GoalOut) -> str:
    parts = (goal.key, goal.owner_remote_id, goal.owner_name, goal.metric,
             goal.period_start.isoformat(), goal.period_end.isoformat(),
             format(goal.target.normalize(), "f"), goal.currency)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass
class PushPlan:
    """What to do on one connection: send `goals`, delete `deletions`; `decided` needs no call."""

    connection_id: int
    goals: list[GoalOut] = field(default_factory=list)
    deletions: list[GoalDeletion] = field(default_factory=list)
    decided: list[PushResult] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)
    live: list[GoalOut] = field(default_factory=list)  # every goal this CRM should hold


def plan_push(session: Session, connection_id: int, settings: Settings, *,
              persons: Collection[int] | None = None) -> PushPlan:
    """Live goals that are new or changed since their last successful push to this
    connection (or pushed before the connection was edited); goals whose owner is no user
    there are skipped with that reason; copies of deleted goals are to be deleted.
    With `persons` (not None: a manager's teams) only those people's goals, so no
    company-wide ones.

    A bookings target goes out in the connection's home currency (the currency its CRM
    holds amounts in), converted with the FX table when the goal's currency differs."""
    plan = PushPlan(connection_id)
    connection = session.get(Connection, connection_id)
    edited = connection.updated_at if connection else None  # may point at another org now
    home = (connection.home_currency or "").upper() or None if connection else None
    conv = converter(session, settings)
    users: dict[int, tuple[str, str]] = {}  # the goal's person -> its user here (core.people)
    stmt = (select(USER.c.person_id, USER.c.remote_id, USER.c.name, USER.c.active)
            .where(USER.c.connection_id == connection_id, USER.c.deleted_at.is_(None),
                   USER.c.person_id.is_not(None))
            .order_by(USER.c.active, USER.c.id))  # an active user wins over an inactive one
    for person_id, remote_id, name, _active in session.execute(stmt):
        users[int(person_id)] = (str(remote_id), str(name or remote_id))
    owners = people.labels(session, session.scalars(select(GOAL.c.person_id).distinct()))
    pushes = {p.goal_id: p for p in session.execute(
        select(GoalPush).where(PUSH.c.connection_id == connection_id)).scalars()}
    mine = [] if persons is None else [GOAL.c.person_id.in_(sorted(persons))]
    live = session.execute(select(Goal).where(GOAL.c.deleted_at.is_(None), *mine)
                           .order_by(GOAL.c.id)).scalars()
    for goal in live:
        gid = int(goal.id or 0)
        previous = pushes.get(gid)
        email, who = owners.get(goal.person_id or 0, (None, f"person {goal.person_id}"))
        if goal.person_id is not None and goal.person_id not in users:
            if previous is not None and previous.remote_id and previous.status in KEPT:
                # reassigned: its old record goes
                plan.deletions.append(GoalDeletion(gid, goal_key(gid), previous.remote_id))
            else:
                plan.decided.append(PushResult(
                    gid, PushStatus.SKIPPED, previous.remote_id if previous else None,
                    f"{email or who or f'person {goal.person_id}'} is not a user of this "
                    "CRM"))
            continue
        remote_id, name = users.get(goal.person_id or 0, (None, None))
        try:
            target, currency = in_home_currency(conv, goal, home)
        except CurrencyError as exc:
            plan.decided.append(PushResult(gid, PushStatus.ERROR,
                                           previous.remote_id if previous else None, str(exc)))
            continue
        out = GoalOut(gid, goal_key(gid), email, remote_id, name, goal.metric,
                      goal.period_start, goal.period_end, target, currency,
                      previous.remote_id if previous else None)
        plan.live.append(out)
        digest = content_hash(out)
        if previous is not None and previous.pushed_hash == digest and previous.status in KEPT \
                and _after(previous.pushed_at, edited):
            plan.decided.append(PushResult(gid, PushStatus.UNCHANGED, previous.remote_id))
            continue
        plan.goals.append(out)
        plan.hashes[gid] = digest
    gone = (select(GoalPush).join(Goal, GOAL.c.id == PUSH.c.goal_id)
            .where(PUSH.c.connection_id == connection_id, GOAL.c.deleted_at.is_not(None),
                   PUSH.c.remote_id.is_not(None), PUSH.c.status != PushStatus.DELETED, *mine)
            .order_by(PUSH.c.goal_id))
    for push in session.execute(gone).scalars():
        plan.deletions.append(GoalDeletion(push.goal_id, goal_key(push.goal_id),
                                           str(push.remote_id)))
    return plan


def in_home_currency(conv: Converter, goal: Goal,
                     home: str | None) -> tuple[Decimal, str | None]:
    """A goal's target and currency as the connection's CRM holds it: a bookings target
    in the CRM's home currency (rounded half-up to cents), never a number in one currency
    labelled with another; a deals_won target as it is."""
    if goal.metric != GoalMetric.BOOKINGS or goal.currency is None:
        return goal.target, goal.currency
    if home is None:
        raise CurrencyError("the CRM's home currency is not known yet: sync the connection "
                            "first, then push again")
    if goal.currency.upper() == home:
        return goal.target, home
    amount = conv.exchange(goal.target, goal.currency, home)
    return amount.quantize(CENT, rounding=ROUND_HALF_UP), home


def _after(pushed_at: Any, edited: Any) -> bool:
    return pushed_at is not None and (edited is None or pushed_at >= edited)


def failed(plan: PushPlan, message: str) -> list[PushResult]:
    """Every call of the plan failed with `message` (module missing, auth, ...)."""
    ids = [g.goal_id for g in plan.goals] + [d.goal_id for d in plan.deletions]
    return [PushResult(gid, PushStatus.ERROR, None, message) for gid in ids]


def record_push(session: Session, plan: PushPlan,
                results: Sequence[PushResult]) -> list[dict[str, Any]]:
    """Store each goal's outcome on the plan's connection; the per-goal results as dicts."""
    now = utcnow()
    by_goal = {r.goal_id: r for r in results}
    expected = [g.goal_id for g in plan.goals] + [d.goal_id for d in plan.deletions]
    outcome = list(plan.decided)
    outcome += [by_goal.get(gid) or PushResult(gid, PushStatus.ERROR, None, "the CRM returned "
                                               "no result for this goal") for gid in expected]
    out = []
    for result in outcome:
        push = session.get(GoalPush, (result.goal_id, plan.connection_id)) or GoalPush(
            goal_id=result.goal_id, connection_id=plan.connection_id, status=result.status)
        push.status, push.error = result.status, result.error
        if result.status in (PushStatus.INSERTED, PushStatus.UPDATED):
            push.remote_id = result.remote_id or push.remote_id
            push.pushed_hash, push.pushed_at = plan.hashes.get(result.goal_id), now
        elif result.status == PushStatus.DELETED:
            push.pushed_hash, push.pushed_at = None, now
        elif result.status != PushStatus.UNCHANGED:  # skipped, error: send again next time
            push.pushed_hash = None
        session.add(push)
        out.append({"goal_id": result.goal_id, "connection_id": plan.connection_id,
                    "status": result.status, "remote_id": push.remote_id,
                    "error": result.error})
    session.flush()
    return sorted(out, key=lambda r: r["goal_id"])


def held(session: Session, plan: PushPlan) -> tuple[list[GoalOut], list[str]]:
    """The plan's live goals the CRM now holds, and their CRM record ids (for
    connectors.base.GoalResults)."""
    pushes = {p.goal_id: p for p in session.execute(
        select(GoalPush).where(PUSH.c.connection_id == plan.connection_id)).scalars()}
    goals, remote_ids = [], []
    for goal in plan.live:
        push = pushes.get(goal.goal_id)
        if push is not None and push.remote_id and push.status in KEPT:
            goals.append(goal)
            remote_ids.append(push.remote_id)
    return goals, remote_ids


def record_results(session: Session, connection_id: int, goals: Sequence[GoalOut],
                   results: Sequence[GoalResult]) -> None:
    """Store the CRM's own figure of each goal on its goal_push row."""
    now = utcnow()
    currencies = {g.goal_id: g.currency for g in goals}
    for result in results:
        push = session.get(GoalPush, (result.goal_id, connection_id))
        if push is None:
            continue
        push.crm_actual, push.crm_error = result.actual, result.error
        push.crm_currency = currencies.get(result.goal_id)
        push.crm_read_at = now
        session.add(push)
    session.flush()
