"""A provider-neutral synthetic company: reps, accounts, stages, deals, activities and
deletions.

`Company` holds the records plus the mutations the sandboxes' control APIs and the tests
use; connectors.sandbox.generator.generate_company() makes one.
Every datetime is timezone-aware UTC with whole seconds; every mutation stamps
`modified_at` with `Company.now()`, which never goes backwards.
"""

import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from connectors.sandbox import vocab
from connectors.sandbox.paging import Key, SortedIndex

Entity = Literal["deals", "accounts", "activities"]
SortField = Literal["id", "created_at", "modified_at"]
Category = Literal["open", "won", "lost"]
Operation = Literal["insert", "update", "delete"]
ActivityKind = Literal["call", "meeting", "task", "note"]
ACTIVITY_KINDS: tuple[ActivityKind, ...] = ("call", "meeting", "task", "note")

ORG_PREFIX = 4_970_762 * 10**12  # ids are 19-digit numbers as strings, so text order = number order
ID_BASE = {"reps": 326_001, "stages": 6_801, "accounts": 1_000_000_000, "deals": 2_000_000_000,
           "activities": 3_000_000_000}
_ONE = Decimal("1")
_CENT = Decimal("0.01")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def from_epoch(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)



@dataclass(slots=True)
class Rep:
    id: str
    first_name: str
    last_name: str
    email: str
    team: str
    role: str
    active: bool
    created_at: datetime
    modified_at: datetime

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(slots=True)
class Account:
    id: str
    name: str
    industry: str | None
    owner_id: str
    created_at: datetime
    modified_at: datetime


@dataclass(slots=True)
class StageDef:
    id: str
    pipeline: str
    name: str
    order: int
    probability: int
    category: Category


class StageMove(NamedTuple):
    stage_id: str
    changed_at: datetime


@dataclass(slots=True)
class Deal:
    id: str
    name: str
    amount: Decimal  # in `currency`, 2 decimals
    currency: str
    exchange_rate: Decimal  # units of `currency` per 1 unit of the home currency
    stage_id: str
    probability: int
    close_date: date
    created_at: datetime
    modified_at: datetime
    owner_id: str
    account_id: str | None
    history: list[StageMove] = field(default_factory=list)


@dataclass(slots=True)
class Activity:
    """A call, meeting, task or note of a rep, the neutral shape every sandbox renders in its
    own wire format (the CRMs that have no such kind leave it out, e.g. Fxiaoke has no
    task object). `start` is when a call or meeting began or is planned, a task's due
    moment (its due date at 00:00 UTC: tasks have dates, not times) or when a note was
    written; `done` a held call or meeting, a completed task (notes are always done);
    `completed_at` when a task was completed."""

    id: str
    kind: ActivityKind
    subject: str
    owner_id: str
    start: datetime
    duration_seconds: int | None  # calls and meetings
    done: bool
    completed_at: datetime | None
    deal_id: str | None
    account_id: str | None
    created_at: datetime
    modified_at: datetime


@dataclass(slots=True)
class Deletion:
    entity: Entity
    id: str
    deleted_at: datetime
    display_name: str | None
    deleted_by: str | None = None  # rep id
    created_by: str | None = None  # rep id
    permanent: bool = False  # False: in the recycle bin
    kind: ActivityKind | None = None  # an activity's kind (sandboxes list them per module)


@dataclass(frozen=True, slots=True)
class MutationResult:
    edited: list[str]
    added: list[str]
    deleted: list[str]


_DEAL_FIELDS = frozenset({"name", "amount", "currency", "exchange_rate", "stage_id",
                          "probability", "close_date", "owner_id", "account_id"})
_ACCOUNT_FIELDS = frozenset({"name", "industry", "owner_id"})
_ACTIVITY_FIELDS = frozenset({"subject", "owner_id", "start", "duration_seconds", "done",
                              "deal_id", "account_id"})
SORT_KEYS: dict[SortField, Callable[[Deal | Account | Activity], Key]] = {
    "id": lambda r: (0, r.id),
    "created_at": lambda r: (epoch_seconds(r.created_at), r.id),
    "modified_at": lambda r: (epoch_seconds(r.modified_at), r.id),
}


@dataclass
class Company:
    """The whole synthetic org; lists and dicts are public, mutations go through methods."""

    name: str = vocab.COMPANY_NAME
    domain: str = vocab.EMAIL_DOMAIN
    home_currency: str = vocab.HOME_CURRENCY
    currencies: dict[str, Decimal] = field(default_factory=lambda: dict(vocab.CURRENCY_RATES))
    reps: list[Rep] = field(default_factory=list)
    stages: list[StageDef] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    deals: dict[str, Deal] = field(default_factory=dict)
    activities: dict[str, Activity] = field(default_factory=dict)
    deletions: list[Deletion] = field(default_factory=list)
    # deleted activities as they were (a CRM that voids records still shows them)
    deleted_activities: dict[str, Activity] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    # Called as listener(entity, operation, ids) after each mutation of deals and accounts:
    # the hook for vendor notifications (Zoho actions/watch, Fxiaoke callbacks). Activity
    # mutations call none (no sandbox sends notifications about activities).
    listeners: list[Callable[[Entity, Operation, list[str]], None]] = field(
        default_factory=list, repr=False)
    generated_with: dict[str, Any] | None = None  # generate_company() kwargs, for resets
    version: int = field(default=0, init=False)  # bumped by every mutation
    rep_by_id: dict[str, Rep] = field(default_factory=dict, init=False, repr=False)
    rep_by_email: dict[str, Rep] = field(default_factory=dict, init=False, repr=False)
    stage_by_id: dict[str, StageDef] = field(default_factory=dict, init=False, repr=False)
    _last: datetime = field(default=datetime.min.replace(tzinfo=UTC), init=False, repr=False)
    _next: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _versions: dict[Entity, int] = field(default_factory=dict, init=False, repr=False)
    _indexes: dict[tuple[Entity, SortField, str | None], tuple[int, SortedIndex[Any]]] = field(
        default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.refresh()

    # ---- lookups -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-derive lookups and the clock floor after the public lists were edited directly."""
        self.rep_by_id = {r.id: r for r in self.reps}
        self.rep_by_email = {r.email: r for r in self.reps}
        self.stage_by_id = {s.id: s for s in self.stages}
        times = [r.modified_at for r in self.reps]
        times += [d.modified_at for d in self.deals.values()]
        times += [a.modified_at for a in self.accounts.values()]
        times += [a.modified_at for a in self.activities.values()]
        times += [d.deleted_at for d in self.deletions]
        self._last = max(times, default=datetime.min.replace(tzinfo=UTC))
        taken = [*self.rep_by_id, *self.stage_by_id, *self.accounts, *self.deals,
                 *self.activities, *(d.id for d in self.deletions)]
        self._next = _next_free(taken)
        self._changed("deals")
        self._changed("accounts")
        self._changed("activities")

    def get_deal(self, deal_id: str) -> Deal:
        """The live deal, or KeyError with a readable message."""
        if deal_id not in self.deals:
            raise KeyError(f"no deal with id {deal_id!r}")
        return self.deals[deal_id]

    def get_account(self, account_id: str) -> Account:
        """The live account, or KeyError with a readable message."""
        if account_id not in self.accounts:
            raise KeyError(f"no account with id {account_id!r}")
        return self.accounts[account_id]

    def get_activity(self, activity_id: str) -> Activity:
        """The live activity, or KeyError with a readable message."""
        if activity_id not in self.activities:
            raise KeyError(f"no activity with id {activity_id!r}")
        return self.activities[activity_id]

    def stage_named(self, name: str, pipeline: str | None = None) -> StageDef:
        for stage in self.stages:
            if stage.name.lower() == name.lower() and pipeline in (None, stage.pipeline):
                return stage
        raise ValueError(f"unknown stage {name!r}")

    def pipelines(self) -> list[str]:
        return list(dict.fromkeys(s.pipeline for s in self.stages))

    @property
    def manager(self) -> Rep:
        return next((r for r in self.reps if r.role == vocab.MANAGER_ROLE), self.reps[0])

    def pool(self, entity: Entity) -> dict[str, Any]:
        """The live records of `entity` by id."""
        pools: dict[str, dict[str, Any]] = {
            "deals": self.deals, "accounts": self.accounts, "activities": self.activities}
        return pools[entity]

    def index(self, entity: Entity, order: SortField,
              kind: ActivityKind | None = None) -> SortedIndex[Any]:
        """Records of `entity` (activities: of `kind`, when given) sorted by (order, id);
        rebuilt lazily after mutations."""
        version = self._versions[entity]
        cached = self._indexes.get((entity, order, kind))
        if cached is not None and cached[0] == version:
            return cached[1]
        records: Sequence[Deal | Account | Activity] = [
            r for r in self.pool(entity).values() if kind is None or r.kind == kind]
        built: SortedIndex[Any] = SortedIndex(records, SORT_KEYS[order])
        self._indexes[(entity, order, kind)] = (version, built)
        return built

    def _changed(self, entity: Entity, operation: Operation | None = None,
                 ids: list[str] | None = None) -> None:
        self.version += 1
        self._versions[entity] = self._versions.get(entity, 0) + 1
        if operation is not None and ids:
            for listener in self.listeners:
                listener(entity, operation, ids)

    # ---- clock ---------------------------------------------------------------------------
    @property
    def latest(self) -> datetime:
        """The latest stamp in the data: the dataset's notion of "now"."""
        return self._last

    def now(self) -> datetime:
        """Real UTC now in whole seconds, strictly after every stamp handed out so far."""
        moment = self.clock().astimezone(UTC).replace(microsecond=0)
        if moment <= self._last:
            moment = self._last + timedelta(seconds=1)
        self._last = moment
        return moment

    # ---- deals ---------------------------------------------------------------------------
    def add_deal(self, *, name: str, amount: Decimal | float | str, currency: str | None = None,
                 stage_id: str | None = None, close_date: date | None = None,
                 owner_id: str | None = None, account_id: str | None = None,
                 probability: int | None = None,
                 exchange_rate: Decimal | None = None) -> Deal:
        at = self.now()
        stage = self.stage_by_id[stage_id] if stage_id else self.stages[0]
        deal = Deal(
            id=self._next_id("deals"), name="", amount=_ONE, currency=self.home_currency,
            exchange_rate=_ONE, stage_id=stage.id, probability=stage.probability,
            close_date=close_date or (at.date() + timedelta(days=30)), created_at=at,
            modified_at=at, owner_id=owner_id or self._default_owner().id, account_id=None,
            history=[StageMove(stage.id, at)],
        )
        changes: dict[str, Any] = {"name": name, "amount": amount, "account_id": account_id,
                                   "currency": currency or self.home_currency}
        if owner_id is not None:
            changes["owner_id"] = owner_id
        if exchange_rate is not None:
            changes["exchange_rate"] = exchange_rate
        if probability is not None:
            changes["probability"] = probability
        self._apply_deal(deal, changes, at)
        self.deals[deal.id] = deal
        self._changed("deals", "insert", [deal.id])
        return deal

    def edit_deal(self, deal_id: str, **changes: Any) -> Deal:
        deal = self.get_deal(deal_id)
        self._apply_deal(deal, changes, self.now())
        self._changed("deals", "update", [deal.id])
        return deal

    def delete_deal(self, deal_id: str, *, permanent: bool = False) -> Deletion:
        deal = self.get_deal(deal_id)
        return self._delete("deals", deal.id, deal.name, deal.owner_id, self.now(), permanent)

    # ---- accounts ------------------------------------------------------------------------
    def add_account(self, *, name: str, industry: str | None = None,
                    owner_id: str | None = None) -> Account:
        at = self.now()
        account = Account(self._next_id("accounts"), "", None,
                          owner_id or self._default_owner().id, at, at)
        self._apply_account(account, {"name": name, "industry": industry}, at)
        self.accounts[account.id] = account
        self._changed("accounts", "insert", [account.id])
        return account

    def edit_account(self, account_id: str, **changes: Any) -> Account:
        account = self.get_account(account_id)
        self._apply_account(account, changes, self.now())
        self._changed("accounts", "update", [account.id])
        return account

    def delete_account(self, account_id: str, *, permanent: bool = False) -> Deletion:
        """Recycle the account and, as the CRM does, the deals under it."""
        account = self.get_account(account_id)
        at = self.now()
        for deal in [d for d in self.deals.values() if d.account_id == account.id]:
            self._delete("deals", deal.id, deal.name, deal.owner_id, at, permanent)
        return self._delete("accounts", account.id, account.name, account.owner_id, at,
                            permanent)

    # ---- activities ----------------------------------------------------------------------
    def add_activity(self, *, kind: ActivityKind, subject: str, owner_id: str | None = None,
                     start: datetime | None = None, duration_seconds: int | None = None,
                     done: bool = False, deal_id: str | None = None,
                     account_id: str | None = None) -> Activity:
        if kind not in ACTIVITY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ACTIVITY_KINDS)}")
        at = self.now()
        activity = Activity(self._next_id("activities"), kind, "", owner_id or
                            self._default_owner().id, at, None, False, None, None, None, at, at)
        self._apply_activity(activity, {
            "subject": subject, "owner_id": activity.owner_id, "start": start or at,
            "duration_seconds": duration_seconds, "done": done, "deal_id": deal_id,
            "account_id": account_id}, at)
        self.activities[activity.id] = activity
        self._changed("activities")
        return activity

    def edit_activity(self, activity_id: str, **changes: Any) -> Activity:
        activity = self.get_activity(activity_id)
        self._apply_activity(activity, changes, self.now())
        self._changed("activities")
        return activity

    def delete_activity(self, activity_id: str, *, permanent: bool = False) -> Deletion:
        activity = self.get_activity(activity_id)
        return self._delete("activities", activity.id, activity.subject, activity.owner_id,
                            self.now(), permanent)

    def _apply_activity(self, activity: Activity, changes: dict[str, Any],
                        at: datetime) -> None:
        """Validate every change first, then apply them all: bad input changes nothing."""
        values = self._checked("activity", changes, _ACTIVITY_FIELDS)
        if "subject" in values:
            values["subject"] = _text(values["subject"], "subject")
        if "start" in values:
            start = values["start"]
            if not isinstance(start, datetime) or start.tzinfo is None:
                raise ValueError("start must be an aware datetime")
            start = start.astimezone(UTC).replace(microsecond=0)
            if activity.kind == "task":  # tasks are due on a date (no time)
                start = start.replace(hour=0, minute=0, second=0)
            values["start"] = start
        if "done" in values:
            values["done"] = bool(values["done"]) or activity.kind == "note"
            if activity.kind == "task":  # completed now, or still (or no longer)
                values["completed_at"] = (activity.completed_at or at) if values["done"] \
                    else None
        if values.get("duration_seconds") is not None:
            seconds = values["duration_seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                raise ValueError("duration_seconds must be a non-negative integer")
        for key, value in values.items():
            setattr(activity, key, value)
        activity.modified_at = at

    # ---- bulk ----------------------------------------------------------------------------
    def mutate(self, fraction: float, rng: random.Random) -> MutationResult:
        """Edit, add and delete about `fraction` of the deals, all stamped with one instant."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        total = max(1, round(len(self.deals) * fraction))
        n_add, n_delete = round(total * 0.2), round(total * 0.1)
        n_edit = max(0, total - n_add - n_delete) if self.deals else 0
        at = self.now()
        ids = rng.sample(sorted(self.deals), min(len(self.deals), n_edit + n_delete))
        edited, deleted = ids[:n_edit], ids[n_edit:]
        for deal_id in edited:
            self._apply_deal(self.deals[deal_id], self._random_edit(self.deals[deal_id], rng), at)
        for deal_id in deleted:
            deal = self.deals[deal_id]
            self._delete("deals", deal_id, deal.name, deal.owner_id, at, False)
        account_ids = sorted(self.accounts)
        added = [self._random_deal(rng, at, account_ids).id for _ in range(n_add)]
        self._changed("deals", "update", edited)
        self._changed("deals", "insert", added)
        return MutationResult(edited, added, deleted)

    # ---- internals -----------------------------------------------------------------------
    def _next_id(self, kind: str) -> str:
        self._next[kind] += 1
        return str(self._next[kind] - 1)

    def _default_owner(self) -> Rep:
        return next(r for r in self.reps if r.active and r.role != vocab.MANAGER_ROLE)

    def _checked(self, what: str, changes: dict[str, Any],
                 allowed: frozenset[str]) -> dict[str, Any]:
        """A copy of `changes` once its fields are known and the owner, deal and account
        it names exist (ValueError naming the first that does not)."""
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown {what} fields: {', '.join(sorted(unknown))}")
        values = dict(changes)
        if "owner_id" in values and values["owner_id"] not in self.rep_by_id:
            raise ValueError(f"unknown owner {values['owner_id']!r}")
        for key, pool in (("deal_id", self.deals), ("account_id", self.accounts)):
            if values.get(key) is not None and values[key] not in pool:
                raise ValueError(f"unknown {key.removesuffix('_id')} {values[key]!r}")
        return values

    def _apply_deal(self, deal: Deal, changes: dict[str, Any], at: datetime) -> None:
        """Validate every change first, then apply them all: bad input changes nothing."""
        values = self._money_values(self._checked("deal", changes, _DEAL_FIELDS))
        if "name" in values:
            values["name"] = _text(values["name"], "name")
        if "close_date" in values and not isinstance(values["close_date"], date):
            raise ValueError("close_date must be a date")
        moved = "stage_id" in values and values["stage_id"] != deal.stage_id
        if "stage_id" in values:
            stage = self.stage_by_id.get(values["stage_id"])
            if stage is None:
                raise ValueError(f"unknown stage {values['stage_id']!r}")
            if moved:
                values.setdefault("probability", stage.probability)
        if "probability" in values:
            values["probability"] = _percent(values["probability"])
        if moved:
            deal.history.append(StageMove(values["stage_id"], at))
        for key, value in values.items():
            setattr(deal, key, value)
        deal.modified_at = at

    def _money_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Amount, currency and exchange rate, checked (a new currency brings its org rate)."""
        if "amount" in values:
            values["amount"] = _money(values["amount"])
        if "currency" in values:
            code = str(values["currency"]).upper()
            if code not in self.currencies:
                raise ValueError(f"unknown currency {values['currency']!r}")
            values["currency"] = code
            values.setdefault("exchange_rate", self.currencies[code])
        if "exchange_rate" in values:
            values["exchange_rate"] = _positive(values["exchange_rate"], "exchange_rate")
        return values

    def _apply_account(self, account: Account, changes: dict[str, Any], at: datetime) -> None:
        """Validate every change first, then apply them all: bad input changes nothing."""
        values = self._checked("account", changes, _ACCOUNT_FIELDS)
        if "name" in values:
            values["name"] = _text(values["name"], "name")
        if "industry" in values:
            values["industry"] = values["industry"] or None
        for key, value in values.items():
            setattr(account, key, value)
        account.modified_at = at

    def _delete(self, entity: Entity, record_id: str, display_name: str, created_by: str,
                at: datetime, permanent: bool) -> Deletion:
        record = self.pool(entity).pop(record_id)
        kind = None
        if entity == "activities":
            kind, self.deleted_activities[record_id] = record.kind, record
        deletion = Deletion(entity, record_id, at, display_name, self.manager.id, created_by,
                            permanent, kind)
        self.deletions.append(deletion)
        self._changed(entity, None if entity == "activities" else "delete", [record_id])
        return deletion

    def _random_edit(self, deal: Deal, rng: random.Random) -> dict[str, Any]:
        stage = self.stage_by_id[deal.stage_id]
        if stage.category == "open" and rng.random() < 0.6:
            pipeline = [s for s in self.stages if s.pipeline == stage.pipeline]
            later = [s for s in pipeline if s.order > stage.order]
            return {"stage_id": rng.choice(later).id} if later else {}
        if rng.random() < 0.5:
            return {"amount": (deal.amount * Decimal(rng.uniform(0.8, 1.25))).quantize(_CENT)}
        return {"close_date": deal.close_date + timedelta(days=rng.randint(-10, 30))}

    def _random_deal(self, rng: random.Random, at: datetime, account_ids: list[str]) -> Deal:
        account = self.accounts[rng.choice(account_ids)] if account_ids else None
        stage = next(s for s in self.stages if s.category == "open")
        deal = Deal(self._next_id("deals"), "", _ONE, self.home_currency, _ONE, stage.id,
                    stage.probability, at.date() + timedelta(days=rng.randint(7, 90)), at, at,
                    account.owner_id if account else self._default_owner().id,
                    account.id if account else None, [StageMove(stage.id, at)])
        deal.name = f"{account.name if account else 'New'} – {rng.choice(vocab.PRODUCTS)}"
        deal.amount = Decimal(rng.randrange(100_000, 5_000_000)).scaleb(-2)
        self.deals[deal.id] = deal
        return deal


def _next_free(taken: list[str]) -> dict[str, int]:
    """The next id of each kind: one past the largest taken id in the kind's range."""
    bases = sorted(ID_BASE.items(), key=lambda kv: kv[1])
    floors = [ORG_PREFIX + base for _, base in bases]
    found = [floor - 1 for floor in floors]
    for text in taken:
        number = int(text)
        slot = bisect_right(floors, number) - 1
        if slot >= 0 and number > found[slot]:
            found[slot] = number
    return {kind: found[i] + 1 for i, (kind, _) in enumerate(bases)}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value.strip()


def _percent(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError("probability must be an integer 0..100")
    if not 0 <= int(value) <= 100:
        raise ValueError("probability must be an integer 0..100")
    return int(value)


def _money(value: Any) -> Decimal:
    amount = _positive(value, "amount", allow_zero=True)
    return amount.quantize(_CENT)


def _positive(value: Any, what: str, *, allow_zero: bool = False) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{what} must be a number") from None
    if not number.is_finite() or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                         "number")
    return number

