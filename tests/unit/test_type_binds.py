"""What money, percentages and enum columns bind: exact whatever form the value comes in
(a sync binds millions of them, through core.store's COPY too)."""

from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from core.types import DealStatus, EnumText, Money, Percent

DIALECTS = [postgresql.psycopg.dialect(), sqlite.dialect()]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_money_binds_ten_thousandths_rounded_half_even(dialect):
    bind = Money.process_bind_param
    assert bind(Decimal("3057.4122"), dialect) == 30_574_122
    assert bind(Decimal("0.00005"), dialect) == 0  # half to even
    assert bind(Decimal("0.00015"), dialect) == 2
    assert bind(Decimal("-1.23455"), dialect) == -12_346
    assert bind(Decimal("1E+3"), dialect) == 10_000_000
    assert bind("100.10", dialect) == 1_001_000
    assert bind(7, dialect) == 70_000
    assert bind(None, dialect) is None
    assert Percent.process_bind_param(Decimal("12.345"), dialect) == 1234


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_enum_binds_its_value_from_a_member_or_the_value(dialect):
    status = EnumText(DealStatus, 10)
    assert status.process_bind_param(DealStatus.WON, dialect) == "won"
    assert type(status.process_bind_param(DealStatus.WON, dialect)) is str
    assert status.process_bind_param("lost", dialect) == "lost"
    assert status.process_bind_param(None, dialect) is None
    with pytest.raises(ValueError):
        status.process_bind_param("Closed Won", dialect)
