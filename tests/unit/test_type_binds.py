"""What money, percentages and enum columns bind: exact whatever form the value comes in
(a sync binds millions of them, through core.store's COPY too)."""

from decimal import Decimal
from fractions import Fraction

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from core.columns import DecimalText, EnumText, Money, Percent
from core.models import Deal, table_of
from core.store import _copy_converter
from core.types import DealStatus

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


def test_money_is_the_value_in_ten_thousandths_rounded_half_to_even():
    # Hypothesis imported here, not by every process collecting the suite (docs/testing.md)
    from hypothesis import given
    from hypothesis import strategies as st

    # every digit a Decimal can carry in the default context (28), at any scale: a home
    # amount is an amount divided by a rate, 28 significant digits
    money_values = st.decimals(allow_nan=False, allow_infinity=False, places=None,
                               min_value=Decimal("-1e14"), max_value=Decimal("1e14")) | st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(-10**28 + 1, 10**28 - 1), st.integers(-40, -14))

    @given(money_values)
    def binds(value: Decimal) -> None:
        # Python's round() of a Fraction rounds half to even, exactly
        assert Money.process_bind_param(value, DIALECTS[0]) == round(Fraction(value) * 10_000)
        assert Percent.process_bind_param(value, DIALECTS[0]) == round(Fraction(value) * 100)

    binds()


NUMBERS = (Decimal("3580.3"), Decimal("1.0"), Decimal("9999.943299958608969784547943"),
           Decimal("-0.00005"), "12.5", 3)


@pytest.mark.parametrize(("column", "values"), [
    ("amount", NUMBERS), ("amount_home", NUMBERS), ("probability", NUMBERS),
    ("exchange_rate", NUMBERS), ("status", (DealStatus.WON, "lost", DealStatus.OPEN))])
def test_copy_writes_what_the_column_would_bind(column, values):
    dialect = DIALECTS[0]
    column_type = table_of(Deal).c[column].type
    convert = _copy_converter(column_type, dialect)
    assert convert is not None
    for value in values:
        expected = column_type.process_bind_param(value, dialect)
        assert convert(value) == expected and type(convert(value)) is type(expected)


def test_exchange_rates_are_kept_as_the_decimal_text():
    assert DecimalText.bind_value(Decimal("0.1234567000")) == "0.1234567000"
    assert DecimalText.bind_value("1.0") == "1.0"
    assert DecimalText.bind_value(2) == "2"
