"""generate_company(): the synthetic company, built in one seeded random stream (its
activities in a second one, so adding them changed nothing else).

Runs of 280-500 deals share one modified second (a mass update), most accounts
arrive in import batches sharing one created second, some deals and accounts are
already deleted: the awkward cases a sync must get right are always present.
"""

import random
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from connectors.sandbox import vocab
from connectors.sandbox.dataset import (
    ACTIVITY_KINDS,
    ID_BASE,
    ORG_PREFIX,
    Account,
    Activity,
    Company,
    Deal,
    Deletion,
    Entity,
    Rep,
    StageDef,
    StageMove,
    epoch_seconds,
    from_epoch,
)
from connectors.sandbox.paging import no_gc

_EPOCH = date(1970, 1, 1)
_ONE = Decimal("1")


def generate_company(seed: int = 42, deals: int = 2500, accounts: int | None = None,
                     reps: int = 12, months: int = 18, today: date | None = None,
                     pipelines: Sequence[str] = ("Standard", "Renewals"),
                     shared_reps: Sequence[tuple[str, str]] = (),
                     activities: int | None = None) -> Company:
    """A deterministic company for `seed` and `today` (default: the real date).

    :param deals: deals generated (a few of them end up deleted)
    :param accounts: default deals // 10, at least 20
    :param reps: sales reps including the manager (at least 3)
    :param months: how far back the deals go from `today`
    :param pipelines: among "Standard" and "Renewals"
    :param shared_reps: (first, last) names of people who also work in another company's
        CRM (e.g. `[(r.first_name, r.last_name) for r in other.reps[1:4]]`): they are reps
        1..n here, active sellers with the same emails. Empty: the company as before.
    :param activities: calls, meetings, tasks and notes generated (a few of them end up
        deleted); default deals // 2
    """
    return _build(seed=seed, deals=deals, accounts=accounts, reps=reps, months=months,
                  today=today or date.today(), pipelines=tuple(pipelines),
                  shared=tuple((str(f), str(n)) for f, n in shared_reps),
                  activities=activities)


def _build(*, seed: int, deals: int, accounts: int | None, reps: int, months: int, today: date,
           pipelines: tuple[str, ...], shared: tuple[tuple[str, str], ...] = (),
           activities: int | None = None) -> Company:
    if deals < 0 or reps < 3 or months < 1 or (accounts is not None and accounts < 1):
        raise ValueError("need deals >= 0, reps >= 3, months >= 1 and accounts >= 1")
    if activities is not None and activities < 0:
        raise ValueError("need activities >= 0")
    unknown = [p for p in pipelines if p not in vocab.PIPELINE_STAGES]
    if unknown or not pipelines:
        raise ValueError(f"pipelines must be among {sorted(vocab.PIPELINE_STAGES)}")
    if len(set(shared)) != len(shared) or len(shared) > reps - 2:
        raise ValueError("shared_reps: distinct names, at most reps - 2 of them (the manager "
                         "and the rep who left are never shared)")
    kwargs: dict[str, Any] = {"seed": seed, "deals": deals, "accounts": accounts, "reps": reps,
                              "months": months, "today": today, "pipelines": pipelines}
    if shared:
        kwargs["shared_reps"] = shared
    if activities is not None:
        kwargs["activities"] = activities
    rng = random.Random(seed)
    end = epoch_seconds(datetime.combine(today, time(), UTC))  # every stamp falls before this
    start = end - round(months * 30.44) * 86_400
    gen = _Generator(rng, start, end)
    company = Company(stages=_make_stages(pipelines), generated_with=kwargs)
    company.reps = gen.reps(reps, shared)
    company.refresh()
    with no_gc():
        account_list, doomed = gen.accounts(
            max(20, deals // 10) if accounts is None else accounts, company.reps)
        deal_list = gen.deals(deals, company, account_list, doomed)
    company.accounts = {a.id: a for a in account_list}
    company.deals = {d.id: d for d in deal_list}
    gen.deletions(company, doomed)
    _Activities(random.Random(f"{seed}:activities"), start, end).add(
        company, deals // 2 if activities is None else activities)
    company.refresh()
    return company




def _make_stages(pipelines: tuple[str, ...]) -> list[StageDef]:
    stages: list[StageDef] = []
    for pipeline in pipelines:
        for order, (name, probability, category) in enumerate(vocab.PIPELINE_STAGES[pipeline]):
            stage_id = str(ORG_PREFIX + ID_BASE["stages"] + 2 * len(stages))
            stages.append(StageDef(stage_id, pipeline, name, order + 1, probability,
                                   category))  # type: ignore[arg-type]
    return stages


def _email(first: str, last: str, domain: str) -> str:
    raw = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore").decode()
    return f"{raw.lower().replace(' ', '').replace(chr(39), '')}@{domain}"


class _Plan:
    """A pipeline's stages split by category, for fast picking."""

    def __init__(self, stages: list[StageDef]) -> None:
        self.open = [s for s in stages if s.category == "open"]
        self.won = next(s for s in stages if s.category == "won")
        self.lost = [s for s in stages if s.category == "lost"]
        weights = [6, 3, 1, 1, 1, 1][: len(self.lost)]  # plain "lost" is the usual outcome
        self.lost_odds = [x / sum(weights) for x in accumulate(weights)][:-1]


class _Generator:
    """The generation steps; one random stream, consumed in a fixed order."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng, self.start, self.end = rng, start, end
        self.left_at = (start + end) // 2  # when the inactive rep left

    def reps(self, count: int, shared: tuple[tuple[str, str], ...] = ()) -> list[Rep]:
        rng = self.rng
        pool = [(f, n) for f in vocab.FIRST_NAMES for n in vocab.LAST_NAMES]
        names = rng.sample(pool, count)
        if shared:  # reps 1..n are the shared people; no extra draws, so the rest is as before
            own = [n for n in names if n not in shared]
            spare = [n for n in pool if n not in shared and n not in names]
            own += spare[:count - len(own)]
            names = [own[0], *shared, *own[1:]][:count]
        reps: list[Rep] = []
        for i, (first, last) in enumerate(names):
            joined = self.start - rng.randint(30, 700) * 86_400 + rng.randint(0, 86_399)
            created = from_epoch(joined)
            manager = i == 0
            team = vocab.MANAGER_TEAM if manager else vocab.TEAMS[(i - 1) % len(vocab.TEAMS)]
            role = vocab.MANAGER_ROLE if manager else vocab.REP_ROLE
            modified = from_epoch(rng.randint(epoch_seconds(created), self.end - 1))
            reps.append(Rep(str(ORG_PREFIX + ID_BASE["reps"] + 1000 * i), first, last,
                            _email(first, last, vocab.EMAIL_DOMAIN), team, role, True,
                            created, modified))
        leaver = reps[-1]  # one rep left the company halfway through
        leaver.active, leaver.modified_at = False, from_epoch(self.left_at)
        return reps

    def accounts(self, count: int, reps: list[Rep]) -> tuple[list[Account], set[str]]:
        rng = self.rng
        sellers = [r for r in reps if r.role == vocab.REP_ROLE]
        combos = (len(vocab.ACCOUNT_PREFIXES) * len(vocab.ACCOUNT_MIDDLES)
                  * len(vocab.ACCOUNT_SUFFIXES))
        picks = [rng.randrange(combos * 2) for _ in range(count)]
        # Most accounts predate the period: imported in batches sharing one timestamp.
        stamps = sorted(self._import_stamps(round(count * 0.6)) + [
            rng.randrange(self.start, self.end - 86_400) for _ in range(count - round(count * 0.6))
        ])
        result: list[Account] = []
        seen: dict[str, int] = {}
        stayers = [r for r in sellers if r.active]
        for i, (pick, created) in enumerate(zip(picks, stamps, strict=True)):
            name = self._account_name(pick % combos, with_suffix=pick < combos)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} ({seen[name]})"
            touched = created if rng.random() < 0.5 else rng.randrange(created, self.end)
            owner = rng.choice(sellers if created < self.left_at else stayers)
            result.append(Account(str(ORG_PREFIX + ID_BASE["accounts"] + i), name,
                                  rng.choice(vocab.INDUSTRIES), owner.id, from_epoch(created),
                                  from_epoch(touched)))
        doomed = {a.id for a in rng.sample(result, min(len(result) // 2, max(2, count // 500)))}
        return result, doomed

    def _import_stamps(self, count: int) -> list[int]:
        stamps: list[int] = []
        while len(stamps) < count:
            size = min(self.rng.randint(250, 450), count - len(stamps))
            stamps += [self.start - self.rng.randint(1, 180) * 86_400 + 36_000] * size
        return stamps

    @staticmethod
    def _account_name(combo: int, *, with_suffix: bool) -> str:
        prefix, rest = divmod(combo, len(vocab.ACCOUNT_MIDDLES) * len(vocab.ACCOUNT_SUFFIXES))
        middle, suffix = divmod(rest, len(vocab.ACCOUNT_SUFFIXES))
        name = f"{vocab.ACCOUNT_PREFIXES[prefix]} {vocab.ACCOUNT_MIDDLES[middle]}"
        return f"{name} {vocab.ACCOUNT_SUFFIXES[suffix]}" if with_suffix else name

    def deals(self, count: int, company: Company, accounts: list[Account],
              doomed: set[str]) -> list[Deal]:
        rng, rand = self.rng, self.rng.random
        span = self.end - 86_400 - self.start
        created = sorted(self.start + int(rand() * span) for _ in range(count))
        pool = sorted((a for a in accounts if a.id not in doomed), key=lambda a: a.created_at)
        pool_times = [epoch_seconds(a.created_at) for a in pool]
        sellers = [r for r in company.reps if r.role == vocab.REP_ROLE]
        eligible = (sellers, [r for r in sellers if r.active])  # before / after the leaver left
        by_id = ({r.id: r for r in eligible[0]}, {r.id: r for r in eligible[1]})
        plans = [_Plan([s for s in company.stages if s.pipeline == p])
                 for p in company.pipelines()]
        currencies = [(code, company.currencies[code]) for code in vocab.CURRENCY_WEIGHTS]
        cumulative = list(accumulate(vocab.CURRENCY_WEIGHTS.values()))
        result = []
        for i, born in enumerate(created):
            account = pool[int(rand() * max(1, bisect_right(pool_times, born)))]
            gone = born >= self.left_at
            owner = by_id[gone].get(account.owner_id) if rand() < 0.7 else None
            if owner is None:  # usually the account's owner, when that rep could own deals then
                owner = eligible[gone][int(rand() * len(eligible[gone]))]
            plan = plans[0]
            if len(plans) > 1 and rand() < 0.15:
                plan = rng.choice(plans[1:])
            currency = currencies[bisect_right(cumulative, rand() * cumulative[-1])]
            result.append(self._deal(str(ORG_PREFIX + ID_BASE["deals"] + i), born, account,
                                     owner, plan, currency))
        self._mass_updates(result)
        return result

    def _deal(self, deal_id: str, born: int, account: Account, owner: Rep, plan: "_Plan",
              currency: tuple[str, Decimal]) -> Deal:
        rand = self.rng.random
        close_day = born // 86_400 + int(self.rng.triangular(7, 150, 40))
        close = _EPOCH + timedelta(days=close_day)
        roll = rand()
        if close_day < self.end // 86_400 and roll < 0.85:  # closed on the close date
            won = roll < 0.38
            reached = plan.open if won else plan.open[: 1 + int(rand() * len(plan.open))]
            final = plan.won if won else plan.lost[bisect_right(plan.lost_odds, rand())]
            path, until = [*reached, final], close_day * 86_400 + 28_800 + int(rand() * 36_000)
        else:  # open; a few are overdue, last touched around their close date
            path = plan.open[: 1 + int(rand() * len(plan.open))]
            until = self.end - 1 - int(rand() * 259_200)
            if close_day < self.end // 86_400:
                until = min(until, close_day * 86_400 + int(rand() * 1_728_000))
        until = max(until, born + len(path))
        stamps = [born, *sorted(born + 1 + int(rand() * (until - born)) for _ in path[1:])]
        at = datetime.fromtimestamp
        history = [StageMove(st.id, at(t, UTC)) for st, t in zip(path, stamps, strict=True)]
        stage = path[-1]
        probability = stage.probability
        if stage.category == "open" and rand() < 0.08:  # a rep's own estimate
            probability = max(1, min(99, probability + (-10, -5, 5, 10)[int(rand() * 4)]))
        home_cents = min(max(round(self.rng.lognormvariate(9.6, 0.9) * 100), 50_000), 200_000_000)
        code, rate = currency
        if rate != _ONE:  # the rate on the day of the deal, not today's
            rate = Decimal(round(float(rate) * (0.96 + 0.08 * rand()) * 10_000)).scaleb(-4)
        cents = round(home_cents * float(rate), -2 if code == "JPY" else 0)
        modified = history[-1].changed_at
        if rand() < 0.3:  # touched again later (a note, a field edit)
            modified = from_epoch(min(stamps[-1] + int(rand() * 1_209_600), self.end - 1))
        product = (f"Renewal {close.year}" if stage.pipeline == "Renewals"
                   else vocab.PRODUCTS[int(rand() * len(vocab.PRODUCTS))])
        return Deal(deal_id, f"{account.name} – {product}", Decimal(cents).scaleb(-2), code,
                    rate, stage.id, probability, close, history[0].changed_at, modified,
                    owner.id, account.id, history)

    def _mass_updates(self, deals: list[Deal]) -> None:
        """Stamp runs of 250-450 deals with one shared modified time (a mass update).

        Deals of the run edited after the update keep their later time.
        """
        if len(deals) < 2:
            return
        batches = max(1, round(len(deals) * 0.3 / 350))
        segment = len(deals) // batches
        for b in range(batches):
            size = min(self.rng.randint(280, 500), segment)
            first = b * segment + self.rng.randrange(segment - size + 1)
            run = deals[first:first + size]
            times = sorted(epoch_seconds(d.modified_at) for d in run)
            stamp = from_epoch(min(times[len(times) * 9 // 10] + self.rng.randint(60, 86_400),
                            self.end - 1))
            for deal in run:
                if deal.modified_at < stamp:
                    deal.modified_at = stamp

    def deletions(self, company: Company, doomed: set[str]) -> None:
        """A few deals and accounts already in the recycle bin; every third one purged."""
        rng = self.rng
        deal_ids = rng.sample(sorted(company.deals), min(len(company.deals),
                                                           max(3, len(company.deals) // 500)))
        plan: list[tuple[Entity, list[str]]] = [("deals", deal_ids), ("accounts", sorted(doomed))]
        for entity, ids in plan:
            pool: dict[str, Any] = company.deals if entity == "deals" else company.accounts
            for n, record_id in enumerate(ids):
                record = pool.pop(record_id)
                permanent = n % 3 == 1
                window = (110 if permanent else 50) * 86_400
                floor = max(epoch_seconds(record.modified_at) + 1, self.end - window)
                at = from_epoch(rng.randrange(floor, max(floor, self.end - 1) + 1))
                company.deletions.append(Deletion(
                    entity, record.id, at, record.name, company.manager.id, record.owner_id,
                    permanent))
        company.deletions.sort(key=lambda d: (d.deleted_at, d.id))


class _Activities:
    """Calls, meetings, tasks and notes around the live deals (and a few accounts without a
    deal), in their own random stream: most by the deal's owner, dated between the deal's
    creation and its close; past calls and meetings mostly held, past tasks mostly completed,
    future ones planned; a few deleted."""

    WEIGHTS = (40, 20, 25, 15)  # call, meeting, task, note
    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng, self.start, self.end = rng, start, end

    def add(self, company: Company, count: int) -> None:
        rng, rand = self.rng, self.rng.random
        deals = sorted(company.deals.values(), key=lambda d: d.id)
        accounts = sorted(company.accounts.values(), key=lambda a: a.id)
        cumulative = list(accumulate(self.WEIGHTS))
        created: list[Activity] = []
        for i in range(count):
            kind = ACTIVITY_KINDS[bisect_right(cumulative, rand() * cumulative[-1])]
            deal = deals[int(rand() * len(deals))] if deals and rand() < 0.85 else None
            account = (company.accounts.get(deal.account_id or "") if deal
                       else accounts[int(rand() * len(accounts))] if accounts else None)
            owner = deal.owner_id if deal else account.owner_id if account else \
                company.reps[1].id
            if rand() < 0.1:  # a colleague helped
                owner = company.reps[1 + int(rand() * (len(company.reps) - 1))].id
            first = epoch_seconds(deal.created_at) if deal else self.start
            last = min(deal.close_date.toordinal() - _EPOCH.toordinal(), self.end // 86_400 + 30) \
                * 86_400 if deal else self.end + 14 * 86_400
            at = first + int(rand() * max(1, last - first))
            if kind == "task":
                at = at // 86_400 * 86_400
            past = at < self.end
            done = kind == "note" or (past and rand() < (0.9 if kind == "call" else 0.8))
            made = max(self.start, min(at, self.end - 1) - int(rand() * 7 * 86_400))
            touched = made
            if done or rand() < 0.2:  # logged or edited after it happened
                touched = min(max(made, at) + int(rand() * 86_400), self.end - 1)
            duration = (60 + int(rand() * 1_740) if kind == "call" else
                        1_800 * (1 + int(rand() * 4)) if kind == "meeting" else None)
            created.append(Activity(
                str(ORG_PREFIX + ID_BASE["activities"] + i), kind,
                vocab.ACTIVITY_SUBJECTS[kind][int(rand() * 4)], owner, from_epoch(at),
                duration, done,
                from_epoch(touched) if kind == "task" and done else None,
                deal.id if deal else None, account.id if account else None,
                from_epoch(made), from_epoch(touched)))
        company.activities = {a.id: a for a in created}
        for n, activity in enumerate(rng.sample(created, min(len(created), count // 100))):
            del company.activities[activity.id]
            company.deleted_activities[activity.id] = activity
            floor = epoch_seconds(activity.modified_at) + 1
            company.deletions.append(Deletion(
                "activities", activity.id,
                from_epoch(rng.randrange(floor, max(floor, self.end - 1) + 1)),
                activity.subject, company.manager.id, activity.owner_id, n % 3 == 1,
                activity.kind))
        company.deletions.sort(key=lambda d: (d.deleted_at, d.id))
