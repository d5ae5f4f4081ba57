"""Property tests: core.metrics.summary against a plain-Python reference of docs/metrics.md.

Random small datasets (two connections whose home currencies are among USD, EUR and
CNY; deals with amounts of up to 2 decimals, random statuses, probabilities, close
dates, creation times a few minutes either side of local midnight; deleted deals,
accounts and reps; owners whose emails differ in case across the connections, deals
owned through a rep's id, reps without email) are
written through core.store, exactly as a sync writes them, on SQLite and on
PostgreSQL. Half the examples build the monthly rollups (core.metrics.rollups) between the
upserts and the deletions, and stretch the period to whole months, so the metrics read
clean months from the rollups, dirty ones from the deals. The reference below works on
the generated values only: exact fractions, the local creation dates as generated
(never read back from the store), rounding half up once at the end. Its owners are people
as docs/people.md defines them: one per lower-cased email (whichever CRM, rep or record
it comes from), one for each rep without email, and the owner of a deal owned through a
rep's id is that rep's person.

Hypothesis is imported by the test and `datasets`, not the module: every test process
imports every test module, and only the one running this test needs it (docs/testing.md).
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlmodel import SQLModel

from core import store
from core.config import Settings
from core.db import session_scope
from core.metrics import rollups
from core.metrics.currency import set_rate
from core.metrics.definitions import summary
from core.metrics.zone import ensure_zone
from core.models import Connection, StoreMeta
from core.records import AccountRecord, DealRecord, Deletion, UserRecord

REPORTING = "USD"
CURRENCIES = ("USD", "EUR", "CNY")
ZONES = ("America/New_York", "Asia/Shanghai", "Pacific/Auckland", "UTC")
DAY0 = date(2025, 3, 1)  # the window spans New York's and Auckland's DST changes
WINDOW = 40  # days
EMAILS = ("ann@x.com", "ANN@x.com", "Ann@X.Com", "bob@x.com", "BOB@X.COM", "cat@x.com", None)
NAMES = ("Ann", "ann lee", "Bob", "Cat", None)


@dataclass
class GenDeal:
    connection: int  # 0 or 1
    amount: Decimal | None
    status: str
    probability: Decimal | None
    close: date | None
    created: tuple[date, int] | None  # local date, minutes from its midnight
    owner: str | None
    owner_name: str | None
    deleted: bool
    owner_user: int | None = None  # owned through this rep's id (when in the same CRM)


@dataclass
class GenAccount:
    connection: int
    created: tuple[date, int] | None
    owner: str | None
    owner_name: str | None
    deleted: bool


@dataclass
class GenUser:
    connection: int
    email: str | None
    name: str
    active: bool
    deleted: bool


@dataclass
class Dataset:
    zone: str
    homes: tuple[str, str]
    rates: dict[str, Decimal]
    deals: list[GenDeal]
    accounts: list[GenAccount]
    users: list[GenUser]
    start: date
    end: date
    only_connection: int | None  # 0 or 1: the connection_id filter
    rolled: bool  # build the rollups after the upserts, before the deletions


def datasets() -> Any:
    """Hypothesis' strategy of a Dataset."""
    from hypothesis import strategies as st

    days = st.integers(0, WINDOW - 1).map(lambda n: DAY0 + timedelta(days=n))
    # minutes from local midnight: mostly within half an hour either side of it
    near_midnight = st.one_of(st.integers(-30, 30), st.integers(-720, 719))
    money = st.one_of(st.none(), st.integers(0, 10**8).map(lambda c: Decimal(c) / 100))
    probability = st.one_of(st.none(), st.integers(0, 10000).map(lambda p: Decimal(p) / 100))
    created = st.one_of(st.none(), st.tuples(days, near_midnight))
    deals_strategy = st.builds(
        GenDeal, connection=st.integers(0, 1), amount=money,
        status=st.sampled_from(("open", "won", "lost")), probability=probability,
        close=st.one_of(st.none(), days), created=created,
        owner=st.sampled_from(EMAILS), owner_name=st.sampled_from(NAMES),
        deleted=st.sampled_from((False, False, False, True)),
        owner_user=st.one_of(st.none(), st.integers(0, 4)))
    accounts_strategy = st.builds(
        GenAccount, connection=st.integers(0, 1), created=created,
        owner=st.sampled_from(EMAILS), owner_name=st.sampled_from(NAMES),
        deleted=st.sampled_from((False, False, False, True)))
    users_strategy = st.builds(
        GenUser, connection=st.integers(0, 1),
        email=st.sampled_from((*EMAILS, "dan@x.com", "Eve@x.com")),
        name=st.sampled_from(("Ann", "Ann Lee", "Bob", "Cat", "Dan", "Eve")),
        active=st.booleans(), deleted=st.sampled_from((False, False, False, True)))

    @st.composite
    def dataset(draw: Any) -> Dataset:
        start, end = sorted((draw(days), draw(days)))
        rolled = draw(st.booleans())
        if rolled and draw(st.booleans()):  # whole months, which the rollups can serve
            start, end = start.replace(day=1), date(2025, end.month + 1, 1) - timedelta(days=1)
        rates = {code: Decimal(draw(st.integers(1, 10**6))) / 10**4 for code in ("EUR", "CNY")}
        return Dataset(
            zone=draw(st.sampled_from(ZONES)),
            homes=(draw(st.sampled_from(CURRENCIES)), draw(st.sampled_from(CURRENCIES))),
            rates=rates, deals=draw(st.lists(deals_strategy, max_size=14)),
            accounts=draw(st.lists(accounts_strategy, max_size=5)),
            users=draw(st.lists(users_strategy, max_size=5)),
            start=start, end=end, only_connection=draw(st.sampled_from((None, None, 0, 1))),
            rolled=rolled)

    return dataset()


def _utc(created: tuple[date, int] | None, zone: str) -> datetime | None:
    """The instant of a generated local time (local midnight of the date + minutes)."""
    if created is None:
        return None
    day, minutes = created
    local = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)) + timedelta(minutes=minutes)
    return local.astimezone(UTC)


def _local_date(created: tuple[date, int], zone: str) -> date:
    """The local calendar date of a generated time, by wall-clock arithmetic."""
    day, minutes = created
    return day + timedelta(days=minutes // (24 * 60))

# ---------------------------------------------------------------------------- reference


def _round(value: Fraction, places: int) -> Decimal:
    """Half up (every value here is >= 0), as an exact Decimal with `places` decimals."""
    scaled = value * 10**places
    whole = (scaled.numerator * 2 + scaled.denominator) // (scaled.denominator * 2)
    return Decimal(whole).scaleb(-places)


def _rate(data: Dataset, connection: int) -> Fraction:
    home = data.homes[connection]
    return Fraction(1) if home == REPORTING else Fraction(data.rates[home])


def _counts(data: Dataset, c: int) -> bool:
    return data.only_connection is None or data.only_connection == c


Key = tuple[str, Any] | None  # ("email", lower-cased) or ("rep", index); None: no owner


def _rep(data: Dataset, d: GenDeal) -> GenUser | None:
    """The rep a deal is owned through (its id), if that rep is in the deal's CRM."""
    if d.owner_user is None or d.owner_user >= len(data.users):
        return None
    user = data.users[d.owner_user]
    return user if user.connection == d.connection else None


def _user_key(data: Dataset, index: int) -> Key:
    email = data.users[index].email
    return ("email", email.lower()) if email else ("rep", index)


def _email_key(email: str | None) -> Key:
    return ("email", email.lower()) if email else None


def _deal_key(data: Dataset, d: GenDeal) -> Key:
    if _rep(data, d) is not None:
        assert d.owner_user is not None
        return _user_key(data, d.owner_user)
    return _email_key(d.owner)


def _add_deal(data: Dataset, d: GenDeal, acc: dict[str, Any]) -> None:
    assert d.close is not None
    amount = Fraction(d.amount or 0) * _rate(data, d.connection)
    if d.status == "won":
        acc["bookings"] += amount
        acc["won"] += 1
        if d.created is not None:
            acc["cycle"].append((d.close - _local_date(d.created, data.zone)).days)
    elif d.status == "lost":
        acc["lost"] += 1
    else:
        acc["open"] += amount
        acc["weighted"] += amount * Fraction(d.probability or 0) / 100


def reference(data: Dataset, group_by: str) -> dict[str, Any]:
    """Section 5 by hand: {"data": [row...], "total": {...}}, rows in key order."""
    zero: dict[str, Any] = {"bookings": Fraction(0), "won": 0, "lost": 0, "cycle": [],
                            "open": Fraction(0), "weighted": Fraction(0), "accounts": 0}
    rows: dict[Key, dict[str, Any]] = defaultdict(lambda: {**zero, "cycle": []})
    total: dict[str, Any] = {**zero, "cycle": []}
    for d in data.deals:
        if d.deleted or not _counts(data, d.connection) or d.close is None \
                or not data.start <= d.close <= data.end:
            continue
        for acc in (rows[_deal_key(data, d)], total):
            _add_deal(data, d, acc)
    for a in data.accounts:
        if a.deleted or not _counts(data, a.connection) or a.created is None:
            continue
        if data.start <= _local_date(a.created, data.zone) <= data.end:
            rows[_email_key(a.owner)]["accounts"] += 1
            total["accounts"] += 1
    for i, u in enumerate(data.users):
        if u.active and not u.deleted and _counts(data, u.connection):
            rows[_user_key(data, i)]  # an active rep's person gets a row of zeros

    def finish(acc: dict[str, Any]) -> dict[str, Any]:
        won, lost, cycle = acc["won"], acc["lost"], acc["cycle"]
        return {
            "bookings": _round(acc["bookings"], 2), "deals_won": won, "deals_lost": lost,
            "win_rate": _round(Fraction(won, won + lost), 4) if won + lost else None,
            "avg_deal_size": _round(acc["bookings"] / won, 2) if won else None,
            "sales_cycle_days": _round(Fraction(sum(cycle), len(cycle)), 2) if cycle else None,
            "open_pipeline": _round(acc["open"], 2),
            "weighted_pipeline": _round(acc["weighted"], 2),
            "forecast": _round(acc["bookings"] + acc["weighted"], 2),
            "new_accounts": acc["accounts"], "goal": None, "attainment": None,
        }

    total_row = finish(total)
    if group_by == "none":
        return {"data": [total_row], "total": total_row}
    return {"rows": {k: finish(v) for k, v in rows.items()}, "total": total_row}


def _names(data: Dataset) -> dict[Key, set[str | None]]:
    """The names an owner's row may show: a person's name is the first name it was given
    (by one of its reps, or by the records of an owner email: their owner name, if any);
    the row of no owner shows a name on its records, if any."""
    names: dict[Key, set[str | None]] = defaultdict(set)
    for i, u in enumerate(data.users):
        names[_user_key(data, i)].add(u.name)
    for d in data.deals:
        names[_deal_key(data, d)].add(d.owner_name)
    for a in data.accounts:
        names[_email_key(a.owner)].add(a.owner_name)
    for key in names:
        names[key].add(None)
    return names


# ---------------------------------------------------------------------------- the store


def _clear(engine: Any) -> None:
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name != StoreMeta.__tablename__:  # keep the recorded zone
                conn.execute(delete(table))


def _load(engine: Any, data: Dataset) -> list[int]:
    gone = datetime(2030, 1, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        connections = [Connection(provider="zoho", name=f"c{i}", home_currency=home)
                       for i, home in enumerate(data.homes)]
        session.add_all(connections)
        session.flush()
        ids = [int(c.id or 0) for c in connections]
        for code, rate in data.rates.items():
            set_rate(session, code, rate)
        for index, cid in enumerate(ids):
            users = [(f"u{i}", u) for i, u in enumerate(data.users) if u.connection == index]
            deals = [(f"d{i}", d) for i, d in enumerate(data.deals) if d.connection == index]
            accounts = [(f"a{i}", a) for i, a in enumerate(data.accounts)
                        if a.connection == index]
            store.upsert_records(session, stream="users", connection_id=cid, records=[
                UserRecord(rid, u.name, u.email, active=u.active) for rid, u in users])
            store.upsert_records(session, stream="deals", connection_id=cid, records=[
                DealRecord(rid, rid, amount=d.amount, amount_home=d.amount,
                           currency=data.homes[index], status=d.status,
                           probability=d.probability, close_date=d.close,
                           remote_created_at=_utc(d.created, data.zone),
                           owner_remote_id=f"u{d.owner_user}" if _rep(data, d) else None,
                           owner_email=rep.email if (rep := _rep(data, d)) else d.owner,
                           owner_name=d.owner_name) for rid, d in deals])
            store.upsert_records(session, stream="accounts", connection_id=cid, records=[
                AccountRecord(rid, rid, owner_email=a.owner, owner_name=a.owner_name,
                              remote_created_at=_utc(a.created, data.zone))
                for rid, a in accounts])
    if data.rolled:
        with session_scope(engine) as session:
            ensure_zone(session, data.zone)  # else summary() recomputes and drops them
        rollups.refresh(engine)
    with session_scope(engine) as session:
        for index, cid in enumerate(ids):
            users = [(f"u{i}", u) for i, u in enumerate(data.users) if u.connection == index]
            deals = [(f"d{i}", d) for i, d in enumerate(data.deals) if d.connection == index]
            accounts = [(f"a{i}", a) for i, a in enumerate(data.accounts)
                        if a.connection == index]
            store.apply_deletions(session, connection_id=cid, deletions=[
                Deletion(entity, rid, gone)
                for entity, rows in (("users", users), ("deals", deals), ("accounts", accounts))
                for rid, row in rows if row.deleted])
    return ids


def test_summary_equals_the_reference(engine: Any) -> None:
    """Each example clears the test's store and loads its dataset."""
    from hypothesis import given, settings

    @settings(max_examples=40, deadline=None)
    @given(data=datasets())
    def summary_equals_the_reference(data: Dataset) -> None:
        compare_with_reference(engine, data)

    summary_equals_the_reference()


def compare_with_reference(engine: Any, data: Dataset) -> None:
    _clear(engine)
    ids = _load(engine, data)
    config = Settings(timezone=data.zone, reporting_currency=REPORTING)
    connection_id = None if data.only_connection is None else ids[data.only_connection]
    names = _names(data)
    with session_scope(engine) as session:
        for group_by in ("owner", "none"):
            result = summary(session, start=data.start, end=data.end, group_by=group_by,
                             connection_id=connection_id, settings=config)
            expected = reference(data, group_by)
            assert result["total"] == expected["total"]
            if group_by == "none":
                assert result["data"] == expected["data"]
                continue
            rows = expected["rows"]
            # people without email: matched to the reference's reps by their metrics
            anonymous = sorted(repr(v) for k, v in rows.items() if k and k[0] == "rep")
            got_anonymous = []
            for row in result["data"]:
                person, email, name = (row.pop(c) for c in ("person_id", "owner_email",
                                                            "owner_name"))
                if person is not None and email is None:
                    got_anonymous.append(repr(row))
                    continue
                key = ("email", email) if email else None
                assert (person is None) == (key is None), row
                assert row == rows[key], key
                assert name in names[key], (key, name)
            assert sorted(got_anonymous) == anonymous
            assert len(result["data"]) == len(rows)
