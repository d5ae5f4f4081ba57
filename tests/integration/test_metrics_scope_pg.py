"""The people-scoped and team metrics (tests/unit/test_metrics_scope.py) on PostgreSQL."""

from typing import Any

import pytest

from tests.unit.test_metrics_scope import (  # noqa: F401  (the tests, run here again)
    data,
    own_data,
    shared_data,
    test_a_scoped_summary_has_the_unscoped_rows_of_those_people,
    test_a_team_series_follows_a_team_set_after_the_rollups_were_built,
    test_drill_down_by_team_lists_exactly_the_teams_deals,
    test_pipeline_and_timeseries_of_a_scope,
    test_team_rows_are_recomputed_from_the_teams_deals,
    test_team_rows_of_a_scope_and_their_sort,
    test_the_unscoped_total_counts_deals_of_no_owner_and_the_company_goal,
    test_timeseries_by_team_equals_the_team_summary_of_each_period,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_engine(pg_engine: Any) -> Any:
    return pg_engine


@pytest.fixture(scope="module")
def metrics_stores(module_pg_stores: Any) -> Any:
    return module_pg_stores
