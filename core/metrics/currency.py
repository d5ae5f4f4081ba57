"""Home and reporting currencies (docs/metrics.md).

Amounts are summed in SQL per home currency (exact: ScaledDecimal integers), then each
sum is converted here with the FX table in Python Decimal. fx_rate.rate_to_reporting is
how many reporting-currency units one unit of that currency is worth; the reporting
currency itself is always 1.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, getcontext, localcontext

from sqlmodel import Session, select

from core.config import Settings
from core.models import Connection, FxRate
from core.types import utcnow

ONE = Decimal(1)
PRECISION = 60  # digits kept while converting; rounding happens only at the very end


class CurrencyError(ValueError):
    """A conversion needs a rate (or a currency) that is not known."""


def reporting_currency(session: Session, settings: Settings | None) -> str | None:
    """CRMSYNC_REPORTING_CURRENCY, else the home currency of the first connection by id
    (`settings` None: no configured one)."""
    if settings is not None and settings.reporting_currency:
        return settings.reporting_currency
    first = session.exec(select(Connection.home_currency).order_by(Connection.id)).first()  # type: ignore[arg-type]
    return first.upper() if first else None


@dataclass(frozen=True)
class Converter:
    """Converts home-currency sums into the reporting currency."""

    reporting: str | None
    rates: dict[str, Decimal]
    # rate() of each code met so far, as written (a series by owner totals thousands of rows)
    known: dict[str | None, Decimal] = field(default_factory=dict, compare=False, repr=False)

    def rate(self, code: str | None) -> Decimal:
        if code is None:
            raise CurrencyError("deals of a connection whose home currency is unknown need "
                                "converting; sync the connection first")
        code = code.upper()
        if self.reporting is None:
            raise CurrencyError("the reporting currency is unknown: set "
                                "CRMSYNC_REPORTING_CURRENCY")
        if code == self.reporting:
            return ONE
        if code not in self.rates:
            raise CurrencyError(
                f"no FX rate for {code}: set it with PUT /api/v1/fx-rates/{code} "
                f'{{"rate_to_reporting": <{self.reporting} per 1 {code}>}}'
            )
        return self.rates[code]

    def convert(self, code: str | None, amount: Decimal | None) -> Decimal:
        """`amount` in currency `code` as reporting currency, exactly (no rounding)."""
        if not amount:
            return Decimal(0)  # a zero or empty sum needs no rate
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return amount * self.rate(code)

    def exchange(self, amount: Decimal, code: str, into: str) -> Decimal:
        """`amount` in currency `code` as currency `into`, through the reporting currency,
        exactly (no rounding). Raises CurrencyError naming a missing rate."""
        if code.upper() == into.upper():
            return amount
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return self.convert(code, amount) / self.rate(into)

    def total(self, amounts: Iterable[tuple[str | None, Decimal | None]]) -> Decimal:
        """The sum of convert() over `amounts` (one context for all, none when the caller's
        is already as precise: a series by owner totals thousands of rows)."""
        if getcontext().prec >= PRECISION:
            return self._sum(amounts)
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return self._sum(amounts)

    def totals(self, lists: Iterable[Iterable[tuple[str | None, Decimal | None]]],
               ) -> list[Decimal]:
        """total() of each of `lists`, in one context (a series by owner totals 3,600)."""
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return [self._sum(amounts) for amounts in lists]

    def _sum(self, amounts: Iterable[tuple[str | None, Decimal | None]]) -> Decimal:
        out = Decimal(0)
        known = self.known
        for code, amount in amounts:
            if amount:
                rate = known.get(code)
                if rate is None:
                    rate = known[code] = self.rate(code)
                out += amount * rate
        return out


def converter(session: Session, settings: Settings | None) -> Converter:
    rates = {r.code.upper(): r.rate_to_reporting for r in session.exec(select(FxRate))}
    return Converter(reporting_currency(session, settings), rates)


def list_rates(session: Session) -> list[FxRate]:
    return list(session.exec(select(FxRate).order_by(FxRate.code)))


def set_rate(session: Session, code: str, rate: Decimal) -> FxRate:
    """Create or replace the rate of `code` (the caller commits)."""
    if not rate.is_finite() or rate <= 0:
        raise CurrencyError("rate_to_reporting must be a positive number")
    code = code.upper()
    row = session.get(FxRate, code)
    if row is None:
        row = FxRate(code=code, rate_to_reporting=rate)
    else:
        row.rate_to_reporting = rate
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row
