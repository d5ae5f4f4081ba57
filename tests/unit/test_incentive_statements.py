"""Statements read from the store (core.incentives.statements), hand-computed: a person in
two CRMs, a deal in a foreign currency, a deleted deal, the goal as quota, no quota; plans
as YAML and JSON, their errors by line, versions and the preview."""

import json
import re
from datetime import date
from decimal import Decimal as D

import pytest

from core.db import session_scope
from core.incentives import statements, whatif
from core.incentives.calendar import PeriodInvalid, parse_period, period_of
from core.incentives.plans import PlanInvalid, parse
from tests.incentive_support import (
    AE_PLAN,
    SETTINGS,
    apply,
    commissions,
    company,
    deal,
    delete_deal,
    goal,
    one,
    statements_of,
    upsert,
)

Q1 = (date(2027, 1, 1), date(2027, 3, 31))


@pytest.fixture
def ann_q1(sqlite_engine):  # type: ignore[no-untyped-def]
    """Ann's Q1 2027: 40,000 USD in CRM A, 20,000 EUR (22,000 USD) in CRM B, 18,000 USD new
    business; a deleted 50,000, a lost 10,000 and an April 30,000 that do not count."""
    c = company(sqlite_engine)
    upsert(sqlite_engine, c.crm_a, "deals", [
        deal("d1", "40000", date(2027, 1, 10)), deal("d2", "50000", date(2027, 3, 15)),
        deal("d3", "10000", date(2027, 2, 1), status="lost"),
        deal("d4", "30000", date(2027, 4, 2)),
        deal("d5", "18000", date(2027, 3, 20), Type="New Business")])
    upsert(sqlite_engine, c.crm_b, "deals", [deal("e1", "20000", date(2027, 2, 1))])
    delete_deal(sqlite_engine, c.crm_a, "d2")
    goal(sqlite_engine, "ann@example.com", *Q1, "100000")
    apply(sqlite_engine, AE_PLAN)
    return c


def test_a_statement_explains_every_amount(ann_q1) -> None:  # type: ignore[no-untyped-def]
    ann = one(ann_q1.engine, "2027-Q1", ann_q1.people["ann"])
    assert commissions(ann) == [
        ("deal", "d1", D("800.00")),   # 40,000 x 2 %
        ("deal", "e1", D("800.00")),   # 20,000 EUR = 22,000 USD: 10,000 x 2 % + 12,000 x 5 %
        ("deal", "d5", D("900.00")),   # 18,000 x 5 %
        ("spiff", "d5", D("500.00")),  # new logo: its Type is New Business
    ]
    e1 = ann["lines"][1]
    assert (e1["amount"], e1["source_amount"], e1["source_currency"]) == (
        D("22000.00"), D(20000), "EUR")
    assert [(b["amount"], b["rate"]) for b in e1["bands"]] == [
        (D("10000.00"), D("0.02")), (D("12000.00"), D("0.05"))]
    assert (ann["measure"], ann["quota"], ann["attainment"]) == (
        D("80000.00"), D("100000.00"), D("0.8000"))
    assert (ann["earned"], ann["payout"], ann["locked"]) == (D(3000), D(3000), False)
    assert (ann["plan_key"], ann["plan_version"], ann["currency"]) == ("ae-2027", 1, "USD")


def test_a_member_without_a_goal_has_no_quota(ann_q1) -> None:  # type: ignore[no-untyped-def]
    upsert(ann_q1.engine, ann_q1.crm_a, "deals", [
        deal("b1", "10000", date(2027, 1, 5), owner="bob@example.com")])
    bob = one(ann_q1.engine, "2027-Q1", ann_q1.people["bob"])
    assert commissions(bob) == [("deal", "b1", D("0.00"))]
    assert bob["quota"] is None and bob["note"].startswith("no quota")
    # Cat is in team West: no statement under the East plan
    assert [s["name"] for s in statements_of(ann_q1.engine, "2027-Q1")] == ["Ann", "Bob"]


def test_a_goal_in_another_currency_is_converted(ann_q1) -> None:  # type: ignore[no-untyped-def]
    text = AE_PLAN.replace("currency: USD", "currency: EUR")
    apply(ann_q1.engine, text)
    ann = one(ann_q1.engine, "2027-Q1", ann_q1.people["ann"])
    # quota 100,000 USD = 90,909.09 EUR; d1 40,000 USD = 36,363.64 EUR
    assert ann["quota"] == D("90909.09") and ann["plan_version"] == 2
    assert ann["lines"][0]["amount"] == D("36363.64")
    assert ann["lines"][0]["commission"] == D("727.27")  # 36,363.636... x 2 %


def test_periods_are_fiscal_when_the_year_starts_later() -> None:
    assert parse_period("2027-Q1", 4).start == date(2026, 4, 1)
    assert parse_period("2027", 4).end == date(2027, 3, 31)
    assert parse_period("2027-02", 4).start == date(2027, 2, 1)
    assert period_of("quarter", date(2027, 3, 31), 4).label == "2027-Q4"
    assert period_of("year", date(2027, 4, 1), 4).label == "2028"
    with pytest.raises(PeriodInvalid, match="is not a period label"):
        parse_period("2027-Q5")


def test_plan_errors_name_their_line_and_nothing_is_saved(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    bad = AE_PLAN.replace("rate: 0.05", "rate: five").replace("period: quarter",
                                                             "period: week")
    bad += "bonus: 1\n"
    with pytest.raises(PlanInvalid) as caught:
        apply(sqlite_engine, bad)
    assert [(e["line"], e["field"]) for e in caught.value.errors] == [
        (5, "period"), (11, "tiers[1].rate"), (16, "bonus")]
    with session_scope(sqlite_engine) as session:
        assert statements.list_plans(session) == []


def test_every_change_is_a_new_version(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(sqlite_engine) as session:
        first, added = statements.save_plan(session, AE_PLAN)
        assert (first.version, added) == (1, True)
        same, added = statements.save_plan(session, AE_PLAN.replace("0.02", "0.020"))
        assert (same.version, added) == (1, False)  # the same numbers
        doc = parse(AE_PLAN).document()
        doc["cap"] = "9000"
        changed, added = statements.save_plan(session, json.dumps(doc, indent=2))
        assert (changed.version, added) == (2, True)
        assert statements.get_plan(session, "ae-2027", 1).plan.terms.cap is None
        assert statements.get_plan(session, "ae-2027").plan.terms.cap == D(9000)


def test_a_preview_shows_old_and_new_payouts_and_saves_nothing(ann_q1) -> None:  # type: ignore[no-untyped-def]
    richer = AE_PLAN.replace("rate: 0.08", "rate: 0.1").replace("to: 0.5, rate: 0.02",
                                                                "to: 0.5, rate: 0.03")
    with session_scope(ann_q1.engine) as session:
        shown = statements.preview(session, SETTINGS, "ae-2027", richer,
                                   parse_period("2027-Q1"))
    ann = next(r for r in shown["data"] if r["person_id"] == ann_q1.people["ann"])
    # 40,000 x 3 % + (10,000 x 3 % + 12,000 x 5 %) + 18,000 x 5 % + 500
    assert (ann["old_payout"], ann["new_payout"], ann["difference"]) == (
        D(3000), D(3500), D(500))
    assert shown["old_version"] == 1
    with session_scope(ann_q1.engine) as session:
        assert statements.get_plan(session, "ae-2027").version == 1


@pytest.mark.parametrize("text,message", [
    ("a: &x [*x]\n", "aliases (*name) are not supported"),  # a loop
    ("x: &a [1, 2]\ny: [*a, *a, *a]\n", "aliases (*name) are not supported"),  # an expansion
    ("tiers: [\n", "cannot be read"),
    ("", "is empty"),
    (b"\xff\xfe", "is not UTF-8"),
    ("- 1\n- 2\n", "must be a mapping"),
    ('name: "\\ud800"\n', "holds a NUL or a lone surrogate"),  # an escape makes one
    ('{"key": "a\\u0000"}', "holds a NUL or a lone surrogate"),
])
def test_unreadable_documents_are_plan_errors(text, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanInvalid, match=re.escape(message)):
        parse(text)


def test_what_winning_an_open_deal_adds(ann_q1) -> None:  # type: ignore[no-untyped-def]
    upsert(ann_q1.engine, ann_q1.crm_a, "deals", [
        deal("o1", "30000", date(2027, 3, 25), status="open"),
        deal("o2", "1000", date(2027, 4, 25), status="open")])  # next quarter: not listed
    stored = apply(ann_q1.engine, AE_PLAN + "cap: 4000\n")
    with session_scope(ann_q1.engine) as session:
        hints = whatif.open_deals(session, SETTINGS, stored, ann_q1.people["ann"],
                                  parse_period("2027-Q1"))
    # 20,000 x 5 % up to quota and 10,000 x 8 % above: 1,800 more, but the cap of 4,000
    # leaves 1,000 of it (earned 3,000 now)
    assert [(h["deal_remote_id"], h["commission"], h["payout"]) for h in hints] == [
        ("o1", D("1000.00"), D("1000.00"))]
