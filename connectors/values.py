"""Vendor JSON values as the values of normalized records, for every connector's mapping."""

from decimal import Decimal
from typing import Any


def decimal(value: Any) -> Decimal | None:
    """A JSON number (or numeric string) as the decimal it was written as: str() of a float
    is its shortest form, so 1200.5 stays 1200.5; None or "" is None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("boolean where a number was expected")
    return Decimal(str(value))
