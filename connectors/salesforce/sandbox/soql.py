"""A small SOQL engine for the Salesforce sandbox: the SELECT subset of
docs/vendors/salesforce.md §2, parsed and run over rows held as Python values.

SELECT field, ... | COUNT() FROM Object [WHERE condition] [ORDER BY field [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]; conditions combine comparisons (=, !=,
<>, <, <=, >, >=, LIKE, IN (...), NOT IN (...)) with AND, OR, NOT and parentheses.
Values: 'strings' (backslash escapes), numbers, true/false, null, dateTime literals
(2026-03-01T00:00:00Z, +hh:mm or -hh:mm, optional fraction) and date literals
(2026-03-01). Names are case-insensitive; a value of the wrong type for its field is
an error, as in Salesforce (a quoted dateTime, §2). Relationship fields (Owner.Name),
aggregates other than COUNT() and date functions are not part of the subset: they
answer MALFORMED_QUERY naming what is unsupported.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from connectors.salesforce.wire import INVALID_FIELD, INVALID_TYPE, MALFORMED_QUERY, parse_datetime

FieldType = Literal["id", "string", "boolean", "datetime", "date", "number"]
Schema = dict[str, FieldType]  # canonical field name -> type


class SoqlError(Exception):
    """A query Salesforce would refuse: its error code and message (§2, §7)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
""", re.VERBOSE)
_KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER",
                       "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET",
                       "TRUE", "FALSE", "NULL", "GROUP", "HAVING", "WITH", "FOR", "USING"})
_UNSUPPORTED = frozenset({"GROUP", "HAVING", "WITH", "FOR", "USING"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens, at = [], 0
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None:
            raise SoqlError(MALFORMED_QUERY, f"unexpected token: '{text[at:at + 20]}'")
        at = found.end()
        kind = found.lastgroup or ""
        raw = found.group()
        if kind == "ws":
            continue
        if kind == "datetime":
            tokens.append(Token("value", raw, parse_datetime(raw)))
        elif kind == "date":
            tokens.append(Token("value", raw, date.fromisoformat(raw)))
        elif kind == "number":
            tokens.append(Token("value", raw, Decimal(raw)))
        elif kind == "string":
            tokens.append(Token("value", raw, _unquote(raw[1:-1])))
        elif kind == "name" and raw.upper() in ("TRUE", "FALSE"):
            tokens.append(Token("value", raw, raw.upper() == "TRUE"))
        elif kind == "name" and raw.upper() == "NULL":
            tokens.append(Token("value", raw, None))
        elif kind == "name" and raw.upper() in _KEYWORDS:
            tokens.append(Token("keyword", raw.upper()))
        else:
            tokens.append(Token(kind, raw))
    return tokens


def _unquote(text: str) -> str:
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"',
               "\\": "\\", "%": "\\%", "_": "\\_"}  # \% and \_ stay escaped for LIKE
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), text)


# ---- the parsed query -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Comparison:
    field: str
    op: str  # = != < <= > >= LIKE IN NOTIN
    value: Any  # a value, or a tuple of values for IN / NOT IN
    quoted: tuple[bool, ...]  # per value: written in quotes (a string literal)


@dataclass(frozen=True, slots=True)
class Logical:
    op: Literal["AND", "OR", "NOT"]
    parts: tuple["Condition", ...]


Condition = Comparison | Logical


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    descending: bool = False
    nulls_last: bool = False


@dataclass
class Query:
    object_name: str
    fields: list[str] = field(default_factory=list)  # as written
    count: bool = False  # SELECT COUNT()
    where: Condition | None = None
    order: list[Order] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.kind == "keyword" and token.text in words:
            self.at += 1
            return token.text
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            raise SoqlError(MALFORMED_QUERY, f"expecting '{word}', found {self._found()}")

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.at += 1
            return True
        return False

    def name(self) -> str:
        token = self.peek()
        if token is None or token.kind != "name":
            raise SoqlError(MALFORMED_QUERY, f"expecting a field or object name, found "
                                             f"{self._found()}")
        self.at += 1
        if "." in token.text:
            raise SoqlError(MALFORMED_QUERY, f"relationship field {token.text!r}: not part of "
                                             "the SOQL subset this sandbox answers")
        return token.text

    def _found(self) -> str:
        token = self.peek()
        return "the end of the query" if token is None else f"'{token.text}'"

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        fields, count = self.select_list()
        self.expect_keyword("FROM")
        query = Query(self.name(), fields, count)
        if self.keyword("WHERE"):
            query.where = self.disjunction()
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            query.order.append(self.order_item())
            while self.punct(","):
                query.order.append(self.order_item())
        if self.keyword("LIMIT"):
            query.limit = self.integer("LIMIT")
        if self.keyword("OFFSET"):
            query.offset = self.integer("OFFSET")
        token = self.peek()
        if token is not None:
            if token.kind == "keyword" and token.text in _UNSUPPORTED:
                raise SoqlError(MALFORMED_QUERY, f"{token.text}: not part of the SOQL subset "
                                                 "this sandbox answers")
            raise SoqlError(MALFORMED_QUERY, f"unexpected token: {self._found()}")
        return query

    def select_list(self) -> tuple[list[str], bool]:
        token, after = self.peek(), self.peek(1)
        if token is not None and token.text.upper() == "COUNT" and after is not None \
                and after.text == "(":
            self.at += 2
            if not self.punct(")"):
                raise SoqlError(MALFORMED_QUERY, "only COUNT() is supported among aggregates")
            return [], True
        fields = [self.name()]
        while self.punct(","):
            fields.append(self.name())
        return fields, False

    def order_item(self) -> Order:
        name = self.name()
        descending = self.keyword("ASC", "DESC") == "DESC"
        nulls_last = descending
        if self.keyword("NULLS"):
            nulls_last = self.keyword("FIRST", "LAST") == "LAST"
        return Order(name, descending, nulls_last)

    def integer(self, what: str) -> int:
        token = self.peek()
        if token is None or token.kind != "value" or not isinstance(token.value, Decimal) \
                or token.value != int(token.value) or token.value < 0:
            raise SoqlError(MALFORMED_QUERY, f"{what} needs a non-negative integer")
        self.at += 1
        return int(token.value)

    def disjunction(self) -> Condition:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Logical("OR", tuple(parts))

    def conjunction(self) -> Condition:
        parts = [self.negation()]
        while self.keyword("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Logical("AND", tuple(parts))

    def negation(self) -> Condition:
        if self.keyword("NOT"):
            return Logical("NOT", (self.negation(),))
        if self.punct("("):
            inner = self.disjunction()
            if not self.punct(")"):
                raise SoqlError(MALFORMED_QUERY, f"expecting ')', found {self._found()}")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        name = self.name()
        token = self.peek()
        if token is not None and token.kind == "op":
            self.at += 1
            op = "!=" if token.text == "<>" else token.text
            value, quoted = self.value()
            return Comparison(name, op, value, (quoted,))
        if self.keyword("LIKE"):
            value, quoted = self.value()
            return Comparison(name, "LIKE", value, (quoted,))
        if self.keyword("NOT"):
            self.expect_keyword("IN")
            op = "NOTIN"
        elif self.keyword("IN"):
            op = "IN"
        else:
            raise SoqlError(MALFORMED_QUERY, f"expecting an operator after {name}, found "
                                             f"{self._found()}")
        if not self.punct("("):
            raise SoqlError(MALFORMED_QUERY, f"expecting '(' after IN, found {self._found()}")
        values: list[Any] = []
        quotes: list[bool] = []
        while True:
            value, was_quoted = self.value()
            values.append(value)
            quotes.append(was_quoted)
            if self.punct(")"):
                break
            if not self.punct(","):
                raise SoqlError(MALFORMED_QUERY, f"expecting ',' or ')', found {self._found()}")
        return Comparison(name, op, tuple(values), tuple(quotes))

    def value(self) -> tuple[Any, bool]:
        token = self.peek()
        if token is None or token.kind != "value":
            raise SoqlError(MALFORMED_QUERY, f"expecting a value, found {self._found()}")
        self.at += 1
        return token.value, token.text.startswith("'")


def parse(text: str) -> Query:
    if not text.strip():
        raise SoqlError(MALFORMED_QUERY, "the query is empty")
    return _Parser(tokenize(text)).query()


# ---- running a query --------------------------------------------------------------------------
def canonical(schema: Schema, object_name: str, name: str) -> str:
    """The field's API name as the schema spells it (SOQL names are case-insensitive)."""
    for known in schema:
        if known.lower() == name.lower():
            return known
    raise SoqlError(INVALID_FIELD, f"No such column '{name}' on entity '{object_name}'. If "
                                   "you are attempting to use a custom field, be sure to "
                                   "append the '__c' after the custom field name.")


def object_named(objects: Sequence[str], name: str) -> str:
    for known in objects:
        if known.lower() == name.lower():
            return known
    raise SoqlError(INVALID_TYPE, f"sObject type '{name}' is not supported.")


def compile_query(query: Query, schema: Schema) -> tuple[list[str], Callable[[dict[str, Any]],
                                                                             bool]]:
    """Canonical field names and a row predicate, checking every name and value type."""
    fields = [canonical(schema, query.object_name, f) for f in query.fields]
    if len(set(fields)) != len(fields):
        raise SoqlError(MALFORMED_QUERY, "duplicate field selected")
    predicate = _compile(query.where, schema, query.object_name) if query.where \
        else (lambda _row: True)
    return fields, predicate


def _compile(condition: Condition, schema: Schema,
             object_name: str) -> Callable[[dict[str, Any]], bool]:
    if isinstance(condition, Logical):
        parts = [_compile(p, schema, object_name) for p in condition.parts]
        if condition.op == "AND":
            return lambda row: all(p(row) for p in parts)
        if condition.op == "OR":
            return lambda row: any(p(row) for p in parts)
        return lambda row: not parts[0](row)
    name = canonical(schema, object_name, condition.field)
    kind = schema[name]
    values = condition.value if condition.op in ("IN", "NOTIN") else (condition.value,)
    for value, quoted in zip(values, condition.quoted, strict=True):
        _check_type(name, kind, value, quoted)
    op = condition.op
    if op == "LIKE":
        if kind not in ("string", "id"):
            raise SoqlError(INVALID_FIELD, f"invalid operator on field {name}: LIKE")
        pattern = _like(str(condition.value))
        return lambda row: row.get(name) is not None and bool(pattern.match(str(row[name])))
    if op in ("IN", "NOTIN"):
        wanted = {_key(kind, v) for v in values}
        if op == "IN":
            return lambda row: _key(kind, row.get(name)) in wanted
        return lambda row: _key(kind, row.get(name)) not in wanted
    target = _key(kind, condition.value)
    if target is None:
        if op not in ("=", "!="):
            raise SoqlError(MALFORMED_QUERY, f"null can only be compared with = or != ({name})")
        return (lambda row: row.get(name) is None) if op == "=" else \
            (lambda row: row.get(name) is not None)
    test = _OPS[op]
    return lambda row: (value := _key(kind, row.get(name))) is not None and test(value, target)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _check_type(name: str, kind: FieldType, value: Any, quoted: bool) -> None:
    if value is None:
        return
    wanted = {"datetime": "dateTime", "date": "date", "boolean": "boolean",
              "number": "double"}.get(kind)
    ok = {"datetime": isinstance(value, datetime) and not quoted,
          "date": isinstance(value, date) and not isinstance(value, datetime) and not quoted,
          "boolean": isinstance(value, bool),
          "number": isinstance(value, Decimal) and not quoted,
          "string": quoted, "id": quoted}[kind]
    if ok:
        return
    if wanted is not None:
        raise SoqlError(INVALID_FIELD, f"value of filter criterion for field '{name}' must be "
                                       f"of type {wanted} and should not be enclosed in quotes")
    raise SoqlError(INVALID_FIELD, f"value of filter criterion for field '{name}' must be "
                                   "of type string and should be enclosed in quotes")


def _key(kind: FieldType, value: Any) -> Any:
    """A comparable form: strings compare case-insensitively (ids exactly), numbers as
    Decimal."""
    if value is None:
        return None
    if kind == "string":
        return str(value).casefold()
    if kind == "number":
        return Decimal(str(value))
    return value


def _like(pattern: str) -> re.Pattern[str]:
    out, at = [], 0
    while at < len(pattern):
        char = pattern[at]
        if char == "\\" and at + 1 < len(pattern):
            out.append(re.escape(pattern[at + 1]))
            at += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        at += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def bounds(condition: Condition | None, name: str) -> tuple[Any, Any]:
    """(low, high) that every matching row's `name` lies in ([low, high], either None), from
    comparisons ANDed at the top of `condition`: what an index on the field may skip to."""
    parts: tuple[Condition, ...] = ()
    if isinstance(condition, Comparison):
        parts = (condition,)
    elif isinstance(condition, Logical) and condition.op == "AND":
        parts = condition.parts
    low = high = None
    for part in parts:
        if isinstance(part, Comparison) and part.field.lower() == name.lower() and \
                part.value is not None and not isinstance(part.value, tuple):
            if part.op in (">", ">=", "=") and (low is None or part.value > low):
                low = part.value
            if part.op in ("<", "<=", "=") and (high is None or part.value < high):
                high = part.value
    return low, high


def sort_rows(rows: list[dict[str, Any]], orders: Sequence[Order], schema: Schema,
              object_name: str) -> list[dict[str, Any]]:
    """Stable multi-key sort; nulls first ascending and last descending unless NULLS says."""
    for order in reversed(orders):
        name = canonical(schema, object_name, order.field)
        kind = schema[name]
        present = [r for r in rows if r.get(name) is not None]
        missing = [r for r in rows if r.get(name) is None]
        present.sort(key=lambda r, n=name, k=kind: _key(k, r[n]),  # type: ignore[misc]
                     reverse=order.descending)
        rows = present + missing if order.nulls_last else missing + present
    return rows
