"""The shared shape of list endpoints: a JSON page or a CSV stream of every row.

JSON is written by a small encoder that renders Decimal as an exact number
literal (never a string, never through float), timestamps as ISO-8601 UTC with
`Z` and dates as YYYY-MM-DD.
"""

import base64
import binascii
import csv
import io
import itertools
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from annotated_types import Ge, Le
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.errors import invalid
from core.queries import Listing, fetch_page, iter_rows

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
CURSOR_PREFIX = b"k1:"
CSV_BATCH = 500
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

PublicFn = Callable[[dict[str, Any]], dict[str, Any]]

ExportFormat = Literal["json", "csv", "excel-csv", "xlsx"]
EXPORT_FORMATS_HELP = ("`excel-csv`: the same CSV with a UTF-8 byte order mark, so Excel "
                       "reads Chinese and other non-ASCII text right; `xlsx`: an Excel "
                       "workbook with the same columns.")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILES: dict[int | str, dict[str, Any]] = {200: {"content": {
    "text/csv": {"schema": {"type": "string"}},
    XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}
"""The other answers of a route that takes `format` (csv_response), for the OpenAPI."""
FILE_CHUNK = 64 * 1024

MAX_ID = 2**31 - 1  # every id column is an INTEGER (PostgreSQL: 4 bytes, signed)
Id = Annotated[int, Ge(1), Le(MAX_ID)]
"""A row id in a path, a query or a body: 1 to 2^31-1, the range of the id columns; other
values are a 422, never an integer overflow in the database (a 500)."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the supported range: years 1 to 9999 in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""An ISO date or datetime (naive is UTC), as UTC; one that is not in years 1..9999 once in
UTC (0001-01-01T00:00+05:00, 9999-12-31T23:00-05:00) is a 422."""


class ListParams(BaseModel):
    """Query parameters every list takes. Unknown parameters are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000, description="Rows per page (JSON only).")
    cursor: str | None = Field(None, max_length=64,
                               description="`next_cursor` of the previous page.")
    format: ExportFormat | None = Field(
        None, description="`csv` streams every matching row (limit and cursor do not apply); "
        "so does `Accept: text/csv`. " + EXPORT_FORMATS_HELP,
    )


class ApiJSON(Response):
    """JSON with exact Decimals and `Z` timestamps."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)


def dumps(value: Any) -> str:
    return encode(value).decode()


def encode(value: Any) -> bytes:
    """`value` as JSON: orjson, with our Decimals, dates and timestamps (_orjson_default),
    or, for what orjson refuses (keys that are not plain strings, integers beyond 64 bits),
    the encoder below, which writes the same text (tests/unit/test_api_app.py). orjson
    takes 3 ms for a series of 3,600 rows where the encoder below took 9."""
    try:
        return orjson.dumps(value, default=_orjson_default,
                            option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        return _text(value).encode()


def _orjson_default(value: Any) -> Any:
    convert = _ORJSON.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_ORJSON: dict[type, Callable[[Any], Any]] = {
    Decimal: lambda v: orjson.Fragment(format(v, "f")) if v.is_finite() else None,
    date: lru_cache(maxsize=1024)(date.isoformat),
    datetime: lambda v: scalar_text(v)}  # in UTC with Z (orjson would keep the offset)


def _decimal(value: Decimal) -> str:
    return format(value, "f") if value.is_finite() else "null"


def _float(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


@lru_cache(maxsize=1024, typed=True)  # typed: True and 1 are different keys
def _key(key: Any) -> str:
    """An object key as JSON, with its colon (answers repeat the same few keys)."""
    return _encode_str(str(key)) + ":"


@lru_cache(maxsize=1024)
def _date(value: date) -> str:
    return f'"{value.isoformat()}"'


# The scalars by exact type: one dict look-up per value (a series by owner answers tens of
# thousands); subclasses (enums, ...) take the isinstance chain of _text.
_SCALARS: dict[type, Callable[[Any], str]] = {
    type(None): lambda _v: "null", bool: lambda v: "true" if v else "false",
    str: _encode_str, int: int.__repr__, Decimal: _decimal, float: _float,
    date: _date, datetime: lambda v: f'"{scalar_text(v)}"'}


def _text(value: Any) -> str:
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, dict):
        return "{" + ",".join([_key(key) + (_SCALARS[type(item)](item)
                                            if type(item) in _SCALARS else _text(item))
                               for key, item in value.items()]) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join([_text(item) for item in value]) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, date):
        return f'"{scalar_text(value)}"'
    if isinstance(value, BaseModel):
        return _text(value.model_dump())
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def scalar_text(value: Any) -> str:
    """A value as CSV text: the same rendering as JSON, without quotes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else ""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).isoformat()).replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return dumps(value)
    return str(value)


def csv_cell(value: Any) -> str:
    """A value as a CSV cell that a spreadsheet cannot run as a formula (OWASP CSV injection).

    Text (a str value: names, emails, stages...) starting with = + - @, a tab or a CR is
    prefixed with a single quote, unless the whole text is a plain number such as "-12.5"
    (which a spreadsheet reads as that number, never as a formula). Numbers, dates,
    timestamps and booleans are typed values and are written unchanged (-12.5 stays -12.5).
    """
    text = scalar_text(value)
    if isinstance(value, str) and text.startswith(FORMULA_TRIGGERS) \
            and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(CURSOR_PREFIX + str(after).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:  # absent, or empty as templated URLs send it: the first page
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        digits = raw[len(CURSOR_PREFIX):]
        if raw.startswith(CURSOR_PREFIX) and digits.isdigit() and len(digits) <= 10 \
                and 1 <= int(digits) <= MAX_ID:
            return int(digits)
    except (binascii.Error, ValueError):
        pass
    raise invalid("cursor", "is not a cursor this list returned; pass next_cursor as given")


def wants_csv(request: Request, fmt: str | None) -> bool:
    """A file (csv_response) when `format` is csv, excel-csv or xlsx, or when no format is
    given and the client accepts text/csv."""
    if fmt is not None:
        return fmt != "json"
    return "text/csv" in request.headers.get("accept", "").lower()


def csv_response(rows: Iterable[dict[str, Any]], columns: Iterable[str], *,
                 name: str, fmt: str | None = None) -> StreamingResponse:
    """`rows` streamed as a CSV attachment named `name`.csv; with `fmt` excel-csv, the same
    CSV after a UTF-8 byte order mark; with `fmt` xlsx, an Excel workbook `name`.xlsx.

    The first row is read before the answer starts, so a query that fails is an ordinary
    error answer, not a stream cut short after the header.
    """
    remaining = iter(rows)
    first = next(remaining, None)
    if first is not None:
        remaining = itertools.chain((first,), remaining)
    if fmt == "xlsx":
        return StreamingResponse(
            xlsx_stream(remaining, tuple(columns), name), media_type=XLSX_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    body = csv_stream(remaining, tuple(columns))
    if fmt == "excel-csv":
        body = itertools.chain(("\ufeff",), body)
    return StreamingResponse(
        body, media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def list_response(
    request: Request,
    session: Session,
    params: ListParams,
    listing: Listing,
    *,
    name: str,
    columns: Iterable[str],
    public: PublicFn | None = None,
) -> Response:
    """A page of `listing` as {"data", "next_cursor"}, or every row as CSV."""
    after = decode_cursor(params.cursor)
    shape = public or (lambda row: row)
    if wants_csv(request, params.format):
        rows = iter_rows(request.app.state.engine, listing)
        return csv_response((shape(r) for r in rows), columns, name=name, fmt=params.format)
    page, next_after = fetch_page(session, listing, after=after, limit=params.limit)
    next_cursor = encode_cursor(next_after) if next_after is not None else None
    return ApiJSON({"data": [shape(r) for r in page], "next_cursor": next_cursor})


def csv_stream(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    """CSV text in batches of rows: header first, the same columns as the JSON rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for count, row in enumerate(rows, start=1):
        writer.writerow([csv_cell(row.get(c)) for c in columns])
        if count % CSV_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def xlsx_cell(value: Any) -> Any:
    """A value for a spreadsheet cell: numbers, booleans and dates typed; text (timestamps
    included, as in CSV) neutralized like csv_cell and without the control characters a
    workbook cannot hold."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal | float):
        return value if math.isfinite(value) else None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    # openpyxl (0.1 s of CPU to import) only when a workbook is written, not at the API's start
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    text = csv_cell(value)
    return ILLEGAL_CHARACTERS_RE.sub("", text) if text else None


def xlsx_stream(rows: Iterable[dict[str, Any]], columns: tuple[str, ...],
                name: str) -> Iterator[bytes]:
    """An .xlsx workbook of `rows` (one sheet, header first), in chunks.

    openpyxl's write-only mode writes each row to a temporary file as it comes, so memory
    stays flat however many rows there are; the finished file is then read out in chunks.
    """
    from openpyxl import Workbook

    with tempfile.TemporaryFile() as out:
        book = Workbook(write_only=True)
        sheet = book.create_sheet(title=name[:31])
        sheet.append(list(columns))
        for row in rows:
            sheet.append([xlsx_cell(row.get(c)) for c in columns])
        book.save(out)
        out.seek(0)
        while chunk := out.read(FILE_CHUNK):
            yield chunk
