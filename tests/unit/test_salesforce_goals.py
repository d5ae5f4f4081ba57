"""Goal push into ForecastingQuota against the Salesforce sandbox (docs/vendors/salesforce.md
§8): idempotent, updated in place, deleted; the documented rules as each goal's error."""

from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.salesforce import SalesforceConnector
from connectors.salesforce.client import SalesforceConfig, SalesforceSecrets
from connectors.salesforce.sandbox import SANDBOX, create_app
from connectors.salesforce.sandbox.state import SalesforceState
from connectors.salesforce.sandbox.wire import record_id
from connectors.sandbox import generate_company
from core.errors import ConfigError
from core.records import GoalDeletion, GoalOut
from tests.conftest import SANDBOX_ENDPOINTS

URL = "http://sandbox.test"
Q1 = (date(2026, 1, 1), date(2026, 3, 31))


def connector(app: Any, **config: Any) -> SalesforceConnector:
    client = build_client(transport=httpx.ASGITransport(app=app))
    api = ApiClient(client, retry=RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01),
                    limits=LocalLimits(), endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS))
    return SalesforceConnector(
        SalesforceConfig.model_validate({**SANDBOX.config(URL), **config}),
        SalesforceSecrets.model_validate(dict(SANDBOX.secrets)), api)


@pytest.fixture
def app() -> Any:
    return create_app(generate_company(seed=3, deals=200, accounts=30))


def state_of(app: Any) -> SalesforceState:
    state: SalesforceState = app.state.salesforce
    return state


def goal(n: int, owner: str | None, target: str, *, metric: str = "bookings",
         period: tuple[date, date] = Q1, currency: str | None = "USD") -> GoalOut:
    return GoalOut(n, f"goal-{n}", None, owner, None, metric, period[0], period[1],  # type: ignore[arg-type]
                   Decimal(target), currency if metric == "bookings" else None)


async def test_quotas_are_upserted_idempotently_updated_in_place_and_deleted(app):
    state = state_of(app)
    source = connector(app)
    reps = [record_id("reps", r.id) for r in state.company.reps[1:4]]
    goals = [goal(1, reps[0], "50000"), goal(2, reps[1], "70000.50", currency="EUR"),
             goal(3, reps[2], "12", metric="deals_won")]
    made = {r.goal_id: r for r in await source.push_goals(goals, [])}
    assert {g: r.status for g, r in made.items()} == {1: "inserted", 2: "inserted",
                                                      3: "inserted"}, made
    quotas = state.quotas
    assert len(quotas) == 3
    first = quotas[str(made[1].remote_id)]
    assert (first["QuotaOwnerId"], first["StartDate"], first["QuotaAmount"],
            first["CurrencyIsoCode"], first["IsAmount"]) == (reps[0], Q1[0], Decimal("50000.0"),
                                                              "USD", True)
    assert quotas[str(made[2].remote_id)]["CurrencyIsoCode"] == "EUR"
    third = quotas[str(made[3].remote_id)]
    assert (third["QuotaQuantity"], third["IsQuantity"], third["QuotaAmount"]) == (
        Decimal("12.0"), True, None)
    type_names = {t["Id"]: t["DeveloperName"] for t in state.rows("ForecastingType")}
    assert type_names[third["ForecastingTypeId"]] == "OpportunityQuantity"

    again = await connector(app).push_goals(goals, [])  # a new client: found, not duplicated
    assert [(r.status, r.remote_id) for r in again] == [
        ("updated", made[g].remote_id) for g in (1, 2, 3)]
    goals[0].target = Decimal("65000")
    [edited] = await source.push_goals([goals[0]], [])
    assert (edited.status, edited.remote_id) == ("updated", made[1].remote_id)
    assert quotas[str(made[1].remote_id)]["QuotaAmount"] == Decimal("65000.0")
    assert len(quotas) == 3

    gone = await source.push_goals([], [GoalDeletion(2, "goal-2", str(made[2].remote_id)),
                                        GoalDeletion(9, "goal-9", "0J95g0000000999AAA")])
    assert [(r.goal_id, r.status) for r in gone] == [(2, "deleted"), (9, "deleted")]
    assert str(made[2].remote_id) not in quotas and len(quotas) == 2


async def test_a_goal_moved_to_another_owner_or_period_leaves_no_old_quota(app):
    """Quotas are found by owner, start and forecasting type: a goal whose owner or period
    changed gets a quota at its new key and its previous quota (GoalOut.previous_remote_id,
    from the last push) is deleted, so Salesforce never keeps a stale one."""
    state = state_of(app)
    source = connector(app)
    ann, bob = (record_id("reps", r.id) for r in state.company.reps[1:3])
    [first] = await source.push_goals([goal(1, ann, "50000")], [])
    assert first.status == "inserted" and len(state.quotas) == 1

    moved = goal(1, bob, "50000")
    moved.previous_remote_id = str(first.remote_id)
    [second] = await source.push_goals([moved], [])
    assert second.status == "inserted" and second.remote_id != first.remote_id
    assert list(state.quotas) == [str(second.remote_id)]
    assert state.quotas[str(second.remote_id)]["QuotaOwnerId"] == bob

    later = goal(1, bob, "50000", period=(date(2026, 4, 1), date(2026, 6, 30)))
    later.previous_remote_id = str(second.remote_id)
    [third] = await source.push_goals([later], [])
    assert third.status == "inserted" and list(state.quotas) == [str(third.remote_id)]
    assert state.quotas[str(third.remote_id)]["StartDate"] == date(2026, 4, 1)

    same = goal(1, bob, "60000", period=(date(2026, 4, 1), date(2026, 6, 30)))
    same.previous_remote_id = str(third.remote_id)  # same key: updated in place, kept
    [fourth] = await source.push_goals([same], [])
    assert (fourth.status, fourth.remote_id) == ("updated", third.remote_id)
    assert list(state.quotas) == [str(third.remote_id)]


async def test_the_documented_rules_come_back_per_goal(app):
    state = state_of(app)
    source = connector(app)
    rep = record_id("reps", state.company.reps[2].id)
    mine = goal(1, state.integration_user_id, "100")  # §8: never one's own quota
    month = goal(2, rep, "100", period=(date(2026, 1, 1), date(2026, 1, 31)))
    odd = goal(3, rep, "100", period=(date(2026, 1, 5), date(2026, 2, 4)))
    company_wide = goal(4, None, "900000")
    results = {r.goal_id: r for r in await source.push_goals([mine, month, odd,
                                                              company_wide], [])}
    assert results[1].status == "error" and "own quota" in str(results[1].error)
    # a fiscal month, but this connection forecasts by quarter (config forecast_period)
    assert results[2].status == "error" and "fiscal quarter" in str(results[2].error)
    assert results[3].status == "error" and "one forecast period" in str(results[3].error)
    assert results[4].status == "inserted"  # the manager, top of the hierarchy
    company_quota = state.quotas[str(results[4].remote_id)]
    assert company_quota["QuotaOwnerId"] == record_id("reps", state.company.manager.id)

    # config says month, the org forecasts by quarter: Salesforce refuses a mid-quarter start
    february = goal(6, rep, "100", period=(date(2026, 2, 1), date(2026, 2, 28)))
    [wrong] = await connector(app, forecast_period="month").push_goals([february], [])
    assert wrong.status == "error" and "FIELD_INTEGRITY_EXCEPTION" in str(wrong.error)

    state.manage_quotas = False
    [refused] = await source.push_goals([goal(5, rep, "1")], [])
    assert refused.status == "error" and "INSUFFICIENT_ACCESS_OR_READONLY" in str(refused.error)
    assert "Manage Quotas" in str(refused.error)


async def test_without_collaborative_forecasts_the_push_says_how_to_set_up(app):
    state_of(app).forecasts_enabled = False
    source = connector(app)
    rep = record_id("reps", state_of(app).company.reps[1].id)
    with pytest.raises(ConfigError, match="Collaborative Forecasts"):
        await source.push_goals([goal(1, rep, "10")], [])
    assert state_of(app).quotas == {}


async def test_a_single_currency_org_gets_no_currency_on_its_quotas():
    app = create_app(generate_company(seed=3, deals=50, accounts=10), multi_currency=False)
    state = state_of(app)
    rep = record_id("reps", state.company.reps[1].id)
    [made] = await connector(app).push_goals([goal(1, rep, "10")], [])
    assert made.status == "inserted", made
    assert "CurrencyIsoCode" not in state.quotas[str(made.remote_id)]
