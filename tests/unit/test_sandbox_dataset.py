"""The provider-neutral synthetic company: determinism, shape, clock and mutations."""

import random
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.sandbox import Company, generate_company
from connectors.sandbox.paging import Window

TODAY = date(2025, 6, 30)


@pytest.fixture(scope="module")
def company() -> Company:
    return generate_company(seed=11, deals=2500, today=TODAY)


def fresh() -> Company:
    return generate_company(seed=5, deals=400, accounts=40, today=TODAY)


def test_same_seed_same_company_other_seed_other_company() -> None:
    a = generate_company(seed=1, deals=600, today=TODAY)
    b = generate_company(seed=1, deals=600, today=TODAY)
    c = generate_company(seed=2, deals=600, today=TODAY)
    assert list(a.deals.values()) == list(b.deals.values())
    assert list(a.accounts.values()) == list(b.accounts.values())
    assert a.reps == b.reps and a.deletions == b.deletions
    assert list(a.deals.values()) != list(c.deals.values())


def test_reps_two_teams_a_manager_and_one_leaver(company: Company) -> None:
    teams = Counter(r.team for r in company.reps)
    assert set(teams) == {"East", "West", "Management"} and teams["Management"] == 1
    assert [r.active for r in company.reps].count(False) == 1
    assert company.manager.role == "Sales Manager" and company.manager.active
    emails = [r.email for r in company.reps]
    assert len(set(emails)) == len(emails)
    assert all(e == e.lower() and e.endswith("@acme-demo.com") and e.isascii() for e in emails)


def test_stage_categories_come_from_metadata_not_names(company: Company) -> None:
    by_name = {s.name: s for s in company.stages}
    assert by_name["Closed Won"].category == "won"
    assert by_name["Closed-Lost to Competition"].category == "lost"
    lost_without_the_word = [s for s in company.stages
                             if s.category == "lost" and "lost" not in s.name.lower()]
    assert {s.name for s in lost_without_the_word} >= {"Disqualified"}
    assert set(company.pipelines()) == {"Standard", "Renewals"}
    for pipeline in company.pipelines():
        orders = [s.order for s in company.stages if s.pipeline == pipeline]
        assert orders == sorted(orders) == list(range(1, len(orders) + 1))


def test_deals_are_plausible(company: Company) -> None:
    deals = list(company.deals.values())
    assert len(deals) + sum(d.entity == "deals" for d in company.deletions) == 2500
    categories = Counter(company.stage_by_id[d.stage_id].category for d in deals)
    assert min(categories["won"], categories["lost"], categories["open"]) > 100
    assert any(d.close_date > TODAY and company.stage_by_id[d.stage_id].category == "open"
               for d in deals)  # an open pipeline that closes in the future
    currencies = Counter(d.currency for d in deals)
    assert len(currencies) >= 4 and currencies.most_common(1)[0][0] == company.home_currency
    end = datetime(2025, 6, 30, tzinfo=UTC)
    for d in deals:
        assert d.amount == d.amount.quantize(Decimal("0.01")) and d.amount > 0
        assert (d.exchange_rate == 1) == (d.currency == company.home_currency)
        assert d.created_at.date() < d.close_date
        assert d.created_at <= d.modified_at < end
        assert d.created_at.tzinfo is not None and d.created_at.microsecond == 0
        assert d.history[0].changed_at == d.created_at and d.history[-1].stage_id == d.stage_id
        assert [m.changed_at for m in d.history] == sorted(m.changed_at for m in d.history)
        assert d.history[-1].changed_at <= d.modified_at
        assert d.owner_id in company.rep_by_id and d.account_id in company.accounts
    assert end - min(d.created_at for d in deals) > timedelta(days=500)  # ~18 months


def test_the_leaver_owns_only_deals_created_before_leaving(company: Company) -> None:
    leaver = next(r for r in company.reps if not r.active)
    theirs = [d for d in company.deals.values() if d.owner_id == leaver.id]
    assert theirs and all(d.created_at < leaver.modified_at for d in theirs)


def test_many_deals_share_one_modified_second(company: Company) -> None:
    shared = Counter(d.modified_at for d in company.deals.values())
    big = [n for n in shared.values() if n >= 250]
    assert big, "no bulk batch: equal timestamps would never straddle a page of 200"
    assert max(Counter(a.modified_at for a in company.accounts.values()).values()) > 1


def test_some_deals_and_accounts_are_already_deleted(company: Company) -> None:
    entities = Counter(d.entity for d in company.deletions)
    assert entities["deals"] >= 3 and entities["accounts"] >= 2
    assert any(d.permanent for d in company.deletions)
    for d in company.deletions:
        live = company.deals if d.entity == "deals" else company.accounts
        assert d.id not in live and d.display_name


def test_now_never_goes_back_and_passes_every_stamp() -> None:
    c = fresh()
    c.clock = lambda: datetime(2001, 1, 1, tzinfo=UTC)  # a clock far behind the data
    first, second = c.now(), c.now()
    assert c.latest == second > first > max(d.modified_at for d in c.deals.values())
    assert first.microsecond == 0
    c.clock = lambda: datetime(2099, 1, 1, 12, 0, 0, 987_000, tzinfo=UTC)
    assert c.now() == datetime(2099, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_edit_deal_bumps_modified_and_records_the_stage_move() -> None:
    c = fresh()
    deal = next(d for d in c.deals.values() if c.stage_by_id[d.stage_id].category == "open")
    before, version = c.latest, c.version
    won = c.stage_named("closed won")
    c.edit_deal(deal.id, stage_id=won.id, amount="1234.5")
    assert deal.modified_at > before and c.version > version
    assert deal.history[-1].stage_id == won.id and deal.probability == 100
    assert deal.amount == Decimal("1234.50")
    with pytest.raises(ValueError, match="unknown deal fields"):
        c.edit_deal(deal.id, colour="red")
    with pytest.raises(ValueError):
        c.edit_deal(deal.id, amount="-3")
    with pytest.raises(ValueError):
        c.edit_deal(deal.id, currency="XXX")
    with pytest.raises(KeyError):
        c.edit_deal("123", name="nope")
    snapshot = (deal.stage_id, deal.name, len(deal.history), deal.probability)
    with pytest.raises(ValueError):  # a valid stage with a bad probability: nothing changes
        c.edit_deal(deal.id, stage_id=c.stages[0].id, name="Renamed", probability=150)
    assert (deal.stage_id, deal.name, len(deal.history), deal.probability) == snapshot


def test_add_and_delete_deals_and_accounts() -> None:
    c = fresh()
    seen: list[tuple[str, str, list[str]]] = []
    c.listeners.append(lambda entity, op, ids: seen.append((entity, op, ids)))
    account = c.add_account(name="Brand New Ltd", industry="Retail")
    deal = c.add_deal(name="Fresh", amount="999.99", currency="EUR", account_id=account.id)
    assert deal.exchange_rate == c.currencies["EUR"] and deal.id not in {d.id for d in
                                                                         c.deletions}
    assert int(deal.id) > max(int(i) for i in c.deals if i != deal.id)
    other = c.add_deal(name="Second", amount=10, account_id=account.id)
    c.delete_account(account.id)  # the deals under it go to the recycle bin too
    gone = {d.id for d in c.deletions}
    assert {account.id, deal.id, other.id} <= gone
    assert account.id not in c.accounts and deal.id not in c.deals
    assert ("accounts", "insert", [account.id]) in seen and ("deals", "delete", [deal.id]) in seen
    removed = c.delete_deal(next(iter(c.deals)))
    assert removed.entity == "deals" and not removed.permanent


def test_mutate_touches_about_the_fraction_with_one_stamp() -> None:
    c = fresh()
    before = c.latest
    result = c.mutate(0.1, random.Random(1))
    assert len(result.edited) + len(result.added) + len(result.deleted) == 40
    assert result.added and result.deleted
    stamps = {c.deals[i].modified_at for i in result.edited + result.added}
    assert len(stamps) == 1 and stamps.pop() > before
    with pytest.raises(ValueError):
        c.mutate(0, random.Random(1))


def test_index_is_sorted_and_follows_mutations() -> None:
    c = fresh()
    index = c.index("deals", "modified_at")
    assert index.keys == sorted(index.keys)
    assert [d.id for d in index.items] == [k[1] for k in index.keys]
    assert c.index("deals", "modified_at") is index  # cached until something changes
    deal = c.add_deal(name="Late", amount=5)
    rebuilt = c.index("deals", "modified_at")
    assert rebuilt is not index and rebuilt.items[-1] is deal
    assert c.index("accounts", "id").keys == sorted(c.index("accounts", "id").keys)


def test_window_pages_by_offset_and_by_key() -> None:
    keys = [(t, f"{i:03d}") for i, t in enumerate([1, 1, 1, 2, 3, 3, 4])]
    window = Window(keys, [k[1] for k in keys])
    first = window.page(0, 3, descending=False)
    assert first.items == ["000", "001", "002"] and first.more
    assert window.after(first.last_key or (0, ""), 3, descending=False).items == [
        "003", "004", "005"]
    down = window.page(0, 4, descending=True)
    assert down.items == ["006", "005", "004", "003"] and down.more
    assert window.after(down.last_key or (0, ""), 4, descending=True).items == [
        "002", "001", "000"]
    assert len(window.starting_at((3, ""))) == 3


def test_generation_stays_linear() -> None:
    """A guard against accidental quadratic work that a busy machine cannot trip: ten times
    the deals may cost at most about twenty times the time (quadratic work costs 100x).
    Each size is timed twice in CPU time, not wall time (other processes' load does not
    count), and the faster run counts. The absolute speed is a figure of the benchmarks
    (docs/benchmarks.md), not a test."""

    def fastest(deals: int) -> float:
        times = []
        for _ in range(2):
            started = time.process_time()
            company = generate_company(seed=3, deals=deals, accounts=deals // 10, today=TODAY)
            times.append(time.process_time() - started)
            assert len(company.deals) + len(company.deletions) >= deals
        return min(times)

    small, big = fastest(2_000), fastest(20_000)
    assert big < 20 * small + 0.5, (small, big)


def test_activities_are_generated_apart_and_changed_through_checked_methods() -> None:
    company = generate_company(seed=3, deals=300, accounts=40, activities=400)
    plain = generate_company(seed=3, deals=300, accounts=40, activities=0)
    assert sorted(company.deals) == sorted(plain.deals)  # their own random stream
    assert company.deals[next(iter(company.deals))] == plain.deals[next(iter(plain.deals))]
    gone = [d for d in company.deletions if d.entity == "activities"]
    assert len(company.activities) + len(gone) == 400 and gone
    assert all(d.kind == company.deleted_activities[d.id].kind for d in gone)
    kinds = Counter(a.kind for a in company.activities.values())
    assert set(kinds) == {"call", "meeting", "task", "note"}
    for activity in company.activities.values():
        assert activity.deal_id is None or activity.deal_id in company.deals
        assert activity.modified_at >= activity.created_at
        assert activity.kind != "task" or activity.start.time() == datetime.min.time()
        assert activity.done == (activity.completed_at is not None) \
            or activity.kind != "task"
    task = next(a for a in company.activities.values() if a.kind == "task" and not a.done)
    before = (task.subject, task.modified_at)
    with pytest.raises(ValueError, match="unknown deal"):
        company.edit_activity(task.id, subject="New", deal_id="nope")
    assert (task.subject, task.modified_at) == before  # bad input changes nothing
    company.edit_activity(task.id, done=True)
    assert task.done and task.completed_at == task.modified_at
    note = company.add_activity(kind="note", subject="Visit report", done=False)
    assert note.done  # a note is always done
    deletion = company.delete_activity(note.id)
    assert (deletion.entity, deletion.kind) == ("activities", "note")
    assert note.id not in company.activities and note.id in company.deleted_activities
