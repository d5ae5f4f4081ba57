"""Column types: exact decimals (money as scaled integers), enums kept as their values
and aware UTC timestamps, on SQLite and PostgreSQL alike (core.models)."""

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from core.types import as_utc

E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A StrEnum kept as its value in a VARCHAR (no database enum type: a new value needs
    no migration), read back as the enum."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum
        self.length = length
        # a member or its value -> the value: one lookup a row (a sync writes one a record)
        self._values = {member.value: member.value for member in enum}

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.bind_value(value)

    def bind_value(self, value: Any) -> str:
        """The stored value of a member or value that is not None, for any dialect (a
        sync's COPY calls it for every row: core.store._copy_converter)."""
        if isinstance(value, str) and (known := self._values.get(value)) is not None:
            return known
        return str(self.enum(value).value)

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)

    @property
    def python_type(self) -> type[E]:
        return self.enum


class ScaledDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as a scaled 64-bit integer (value x 10**scale).

    SQLite has no decimal type, and its SUM over REAL columns is a float sum.
    Integers add exactly on SQLite and PostgreSQL alike, so money is stored as
    integer ten-thousandths and every SUM in the database is exact.
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self._factor = Decimal(10) ** scale
        self._quantum = Decimal(1).scaleb(-scale)

    def quantize(self, value: Decimal) -> Decimal:
        return value.quantize(self._quantum, rounding=ROUND_HALF_EVEN)

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else self.bind_value(value)

    def bind_value(self, value: Any) -> int:
        """The stored integer of a value that is not None, for any dialect (a sync's COPY
        calls it for every row: core.store._copy_converter). Rounded half to even to the
        scale, then the exponent moved by the scale: exact (no rounding: the coefficient
        stays as quantize left it)."""
        if type(value) is not Decimal:  # a Decimal is taken as it is (a sync binds millions)
            value = Decimal(value)
        return int(value.quantize(self._quantum, ROUND_HALF_EVEN).scaleb(self.scale))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) / self._factor

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


Money = ScaledDecimal(4)
Percent = ScaledDecimal(2)


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal kept exactly as text (exchange rates: never summed)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.bind_value(value)

    @staticmethod
    def bind_value(value: Any) -> str:
        """The stored text of a value that is not None, for any dialect (core.store's COPY)."""
        return str(value if type(value) is Decimal else Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware UTC in Python, whatever the database keeps.

    Naive values given to it are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = as_utc(value)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    @property
    def python_type(self) -> type[datetime]:
        return datetime
