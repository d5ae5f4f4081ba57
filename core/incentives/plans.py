"""Commission plans as data (docs/incentives.md): a YAML or JSON
document, validated with every problem named by its line and field, kept in versions.

Numbers are read from the document's text (never through float): `rate: 0.07` is exactly
Decimal("0.07"). Unknown keys are errors, so a misspelt key never silently does nothing.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from core.incentives.engine import Draw, Spiff, Terms, Tier

PERIODS = ("month", "quarter", "year")
MEASURES = ("bookings",)
KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
CURRENCY = re.compile(r"[A-Z]{3}")
TOP_KEYS = ("key", "name", "members", "effective", "period", "currency", "measure", "quota",
            "tiers", "cap", "spiffs", "draw", "clawback_days")
WHEN_TEXT = ("stage", "pipeline", "type")
WHEN_AMOUNT = ("min_amount", "max_amount")
MAX_NUMBER = Decimal("1e15")
MAX_PLAN_BYTES = 256 * 1024  # a plan document (api.limits caps the request body with it)
Path = tuple[str | int, ...]


class PlanInvalid(ValueError):
    """A plan document with problems; `errors` holds {line, field, message} for each (line
    None where the document gave no position, e.g. a stored JSON)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        errors = [{k: _printable(v) if isinstance(v, str) else v for k, v in e.items()}
                  for e in errors]
        first = errors[0]
        where = f"line {first['line']}: " if first.get("line") else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}{first['field']}: {first['message']}{more}")
        self.errors = errors


@dataclass(frozen=True)
class Plan:
    """A valid plan. quota None means the person's goal for the period (quota: goal)."""

    key: str
    name: str
    team: str | None
    people: tuple[str, ...]
    effective_from: date
    effective_to: date | None
    period: str
    currency: str
    measure: str
    quota: Decimal | None
    terms: Terms

    def document(self) -> dict[str, Any]:
        """The plan as a JSON-ready document (decimals as strings); parse_document reads it."""
        terms = self.terms
        doc: dict[str, Any] = {
            "key": self.key, "name": self.name,
            "members": {"team": self.team} if self.team is not None
            else {"people": list(self.people)},
            "effective": {"from": self.effective_from.isoformat(),
                          "to": self.effective_to.isoformat() if self.effective_to else None},
            "period": self.period, "currency": self.currency, "measure": self.measure,
            "quota": "goal" if self.quota is None else _text(self.quota),
            "tiers": [{"rate": _text(t.rate)} if t.to is None else
                      {"to": _text(t.to), "rate": _text(t.rate)} for t in terms.tiers],
        }
        if terms.cap is not None:
            doc["cap"] = _text(terms.cap)
        if terms.spiffs:
            doc["spiffs"] = [{"name": s.name, "when": {k: _text(v) for k, v in s.when.items()},
                              "amount": _text(s.amount)} for s in terms.spiffs]
        if terms.draw is not None:
            doc["draw"] = {"amount": _text(terms.draw.amount),
                           "recoverable": terms.draw.recoverable}
        if terms.clawback_days is not None:
            doc["clawback_days"] = terms.clawback_days
        return doc

    def covers(self, start: date, end: date) -> bool:
        """The plan is in effect for some of [start, end]."""
        return self.effective_from <= end and (self.effective_to is None
                                               or self.effective_to >= start)


def _text(value: Any) -> Any:
    """A decimal in its shortest exact form (0.050 and 0.05 are one document)."""
    return format(value.normalize(), "f") if isinstance(value, Decimal) else value


# -- reading a document ---------------------------------------------------------------------

BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
"""What no text of a plan may hold: NUL (the databases refuse it) and lone surrogates (not
UTF-8; a JSON or YAML escape such as \\ud800 makes them)."""


def _printable(text: str) -> str:
    return BAD_CHARACTERS.sub("\ufffd", text)


def _checked(text: str, node: yaml.Node | None) -> str:
    if BAD_CHARACTERS.search(text):
        raise PlanInvalid([{"line": node.start_mark.line + 1 if node else None, "field": "plan",
                            "message": "holds a NUL or a lone surrogate character"}])
    return text


class _Scalar(str):
    """A YAML scalar's text, and whether it was quoted (then it is always text)."""

    quoted: bool = False
    tag: str = ""


def _node_value(node: yaml.Node, path: Path, lines: dict[Path, int], seen: set[int]) -> Any:
    if id(node) in seen:  # an alias (*name): refused, so no loop and no expansion bomb
        raise PlanInvalid([{"line": node.start_mark.line + 1, "field": "plan",
                            "message": "aliases (*name) are not supported: write the value"}])
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _checked(str(key_node.value), key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _node_value(value_node, (*path, key), lines, seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(item, (*path, i), lines, seen) for i, item in enumerate(node.value)]
    scalar = _Scalar(_checked(str(node.value), node))
    scalar.quoted = bool(getattr(node, "style", None))
    scalar.tag = str(node.tag).rsplit(":", 1)[-1]
    return scalar


def load(text: str | bytes) -> tuple[Any, dict[Path, int]]:
    """The document's values (scalars as _Scalar text) and the line of every path."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PlanInvalid([{"line": None, "field": "plan",
                                "message": "is not UTF-8 text"}]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        try:  # JSON that is not YAML (tabs): read as JSON, without line numbers
            return _scalars(json.loads(text, parse_float=Decimal)), {}
        except ValueError:
            pass
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "is not valid YAML or JSON"
        raise PlanInvalid([{"line": mark.line + 1 if mark else None, "field": "plan",
                            "message": f"cannot be read: {problem}"}]) from None
    if node is None:
        raise PlanInvalid([{"line": None, "field": "plan", "message": "is empty"}])
    lines: dict[Path, int] = {}
    return _node_value(node, (), lines, set()), lines


def parse(text: str | bytes, *, key: str | None = None) -> Plan:
    """The plan a YAML or JSON document describes; PlanInvalid lists every problem with its
    line. `key` (from the URL) is the plan's key when the document has none, and must equal
    the document's when it has one."""
    value, lines = load(text)
    return _Checker(lines).plan(value, key)


def parse_document(doc: Mapping[str, Any]) -> Plan:
    """A stored plan document (Plan.document) as a Plan."""
    return _Checker({}).plan(_scalars(doc), None)


def _scalars(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_checked(str(k), None): _scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scalars(v) for v in value]
    if value is None:
        scalar = _Scalar("")
        scalar.tag = "null"
        return scalar
    scalar = _Scalar(_checked(str(value).lower() if isinstance(value, bool) else str(value),
                              None))
    scalar.tag = "bool" if isinstance(value, bool) else "str"
    scalar.quoted = isinstance(value, str)
    return scalar


class _Checker:
    """Reads a loaded document into a Plan, collecting every problem."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines
        self.errors: list[dict[str, Any]] = []

    def fail(self, path: Path, message: str) -> None:
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1)
                     if path[:n] in self.lines), None)
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        self.errors.append({"line": line, "field": name or "plan", "message": message})

    # scalars
    @staticmethod
    def null(value: Any) -> bool:
        return isinstance(value, _Scalar) and value.tag == "null" and not value.quoted

    def required(self, value: Any, path: Path) -> bool:
        """False (and the problem noted) when the key is missing."""
        if value is None:
            self.fail(path, "is required")
        return value is not None

    def text(self, value: Any, path: Path, *, max_length: int = 200) -> str | None:
        if not self.required(value, path):
            return None
        if not isinstance(value, _Scalar) or self.null(value) or not value.strip():
            self.fail(path, "must be a non-empty text")
            return None
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters")
            return None
        return str(value).strip()

    def number(self, value: Any, path: Path, *, integer: bool = False) -> Decimal | None:
        if not self.required(value, path):
            return None
        try:
            if not isinstance(value, _Scalar) or self.null(value) or value.tag == "bool":
                raise InvalidOperation
            number = Decimal(str(value).strip())
            if not number.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            self.fail(path, "must be a whole number" if integer else "must be a number")
            return None
        if number < 0 or abs(number) >= MAX_NUMBER:
            self.fail(path, f"must be from 0 to {MAX_NUMBER:,.0f}")
            return None
        if integer and number != number.to_integral_value():
            self.fail(path, "must be a whole number")
            return None
        return number

    def flag(self, value: Any, path: Path) -> bool | None:
        text = str(value).lower() if isinstance(value, _Scalar) else ""
        if text in ("true", "false") and not getattr(value, "quoted", False):
            return text == "true"
        self.fail(path, "must be true or false")
        return None

    def day(self, value: Any, path: Path) -> date | None:
        if not self.required(value, path):
            return None
        try:
            return date.fromisoformat(str(value).strip()) if isinstance(value, _Scalar) \
                and not self.null(value) else None
        except ValueError:
            pass
        self.fail(path, "must be a date YYYY-MM-DD")
        return None

    def choice(self, value: Any, path: Path, options: tuple[str, ...]) -> str | None:
        if not self.required(value, path):
            return None
        if isinstance(value, _Scalar) and value in options:
            return str(value)
        self.fail(path, f"must be one of {', '.join(options)}")
        return None

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not self.required(value, path):
            return {}
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping (key: value)")
            return {}
        for name in value:
            if name not in allowed:
                self.fail((*path, name), f"is not a key here (known: {', '.join(allowed)})")
        return value

    def optional(self, doc: dict[str, Any], name: str, read: Callable[[Any, Path], Any],
                 default: Any = None) -> Any:
        value = doc.get(name)
        return default if value is None or self.null(value) else read(value, (name,))

    # the document
    def plan(self, value: Any, key: str | None) -> Plan:
        doc = self.mapping(value, (), TOP_KEYS)
        plan_key = self.plan_key(doc, key)
        name = self.optional(doc, "name", self.text, plan_key)
        team, people = self.members(doc.get("members"))
        start, end = self.effective(doc.get("effective"))
        period = self.choice(doc.get("period"), ("period",), PERIODS)
        currency = self.currency(doc.get("currency"))
        measure = self.optional(doc, "measure", lambda v, p: self.choice(v, p, MEASURES),
                                "bookings")
        quota = self.quota(doc.get("quota"))
        terms = self.terms(doc)
        if self.errors:
            raise PlanInvalid(sorted(self.errors, key=lambda e: e["line"] or 0))
        assert plan_key and start and period and currency and terms  # checked above
        return Plan(plan_key, name or plan_key, team, people, start, end, period, currency,
                    measure, quota, terms)

    def plan_key(self, doc: dict[str, Any], key: str | None) -> str | None:
        given = doc.get("key")
        if given is None:
            if key is None:
                self.fail(("key",), "is required")
            return key
        text = self.text(given, ("key",), max_length=64)
        if text is not None and not KEY.fullmatch(text):
            self.fail(("key",), "must be lower-case letters, digits, '.', '_' or '-'")
        elif text is not None and key is not None and text != key:
            self.fail(("key",), f"is {text!r} but the plan being written is {key!r}")
        return text

    def members(self, value: Any) -> tuple[str | None, tuple[str, ...]]:
        path: Path = ("members",)
        doc = self.mapping(value, path, ("team", "people"))
        if len(doc) != 1:
            if isinstance(value, dict):
                self.fail(path, "must name either a team or people")
            return None, ()
        if "team" in doc:
            return self.text(doc["team"], (*path, "team")), ()
        people = doc.get("people")
        if not isinstance(people, list) or not people:
            self.fail((*path, "people"), "must be a list of email addresses")
            return None, ()
        emails = []
        for i, item in enumerate(people):
            email = self.text(item, (*path, "people", i), max_length=320)
            if email is not None and "@" not in email:
                self.fail((*path, "people", i), "must be an email address")
            elif email is not None:
                emails.append(email.lower())
        return None, tuple(emails)

    def effective(self, value: Any) -> tuple[date | None, date | None]:
        path: Path = ("effective",)
        doc = self.mapping(value, path, ("from", "to"))
        start = self.day(doc.get("from"), (*path, "from")) if isinstance(value, dict) else None
        end_value = doc.get("to")
        end = None if end_value is None or self.null(end_value) \
            else self.day(end_value, (*path, "to"))
        if start and end and end < start:
            self.fail((*path, "to"), "must not be before effective.from")
        return start, end

    def currency(self, value: Any) -> str | None:
        if not self.required(value, ("currency",)):
            return None
        if isinstance(value, _Scalar) and CURRENCY.fullmatch(value.upper()):
            return value.upper()
        self.fail(("currency",), "must be a 3-letter currency code (the payout currency)")
        return None

    def quota(self, value: Any) -> Decimal | None:
        if value is None or (isinstance(value, _Scalar) and value == "goal"):
            return None
        return self.number(value, ("quota",))

    def terms(self, doc: dict[str, Any]) -> Terms | None:
        tiers = self.tiers(doc.get("tiers"))
        cap = self.optional(doc, "cap", self.number)
        spiffs = self.optional(doc, "spiffs", self.spiffs, ())
        draw = self.optional(doc, "draw", self.draw)
        days = self.optional(doc, "clawback_days", lambda v, p: self.number(v, p, integer=True))
        if not tiers:
            return None
        return Terms(tiers, cap, spiffs, draw, None if days is None else int(days))

    def tiers(self, value: Any) -> tuple[Tier, ...]:
        if not self.required(value, ("tiers",)):
            return ()
        if not isinstance(value, list) or not value:
            self.fail(("tiers",), "must be a list of tiers ({to, rate}; the last one {rate})")
            return ()
        out, previous = [], Decimal(0)
        for i, item in enumerate(value):
            path: Path = ("tiers", i)
            tier = self.mapping(item, path, ("to", "rate"))
            rate = self.number(tier.get("rate"), (*path, "rate"))
            last = i == len(value) - 1
            to = None
            if last and tier.get("to") is not None and not self.null(tier["to"]):
                self.fail((*path, "to"), "the last tier has no upper bound: leave `to` out")
            elif not last:
                to = self.number(tier.get("to"), (*path, "to"))
                if to is not None and to <= previous:
                    self.fail((*path, "to"), "must be greater than the tier before's "
                              f"({previous})" if i else "must be greater than 0")
                previous = to if to is not None else previous
            if rate is not None:
                out.append(Tier(rate, to))
        return tuple(out) if len(out) == len(value) else ()

    def spiffs(self, value: Any, path: Path) -> tuple[Spiff, ...]:
        if not isinstance(value, list):
            self.fail(path, "must be a list of {name, when, amount}")
            return ()
        out = []
        for i, item in enumerate(value):
            at: Path = (*path, i)
            doc = self.mapping(item, at, ("name", "when", "amount"))
            name = self.text(doc.get("name"), (*at, "name"))
            amount = self.number(doc.get("amount"), (*at, "amount"))
            when = self.when(doc.get("when", {}), (*at, "when"))
            if name and amount is not None and when is not None:
                out.append(Spiff(name, amount, when))
        return tuple(out)

    def when(self, value: Any, path: Path) -> dict[str, Any] | None:
        doc = self.mapping(value, path, (*WHEN_TEXT, *WHEN_AMOUNT, "new_account"))
        out: dict[str, Any] = {}
        for name, item in doc.items():
            if name in WHEN_TEXT:
                out[name] = self.text(item, (*path, name))
            elif name in WHEN_AMOUNT:
                out[name] = self.number(item, (*path, name))
            elif name == "new_account":
                out[name] = self.flag(item, (*path, name))
        return None if any(v is None for v in out.values()) else out

    def draw(self, value: Any, path: Path) -> Draw | None:
        doc = self.mapping(value, path, ("amount", "recoverable"))
        amount = self.number(doc.get("amount"), (*path, "amount"))
        recoverable = doc.get("recoverable")
        flag = False if recoverable is None else self.flag(recoverable, (*path, "recoverable"))
        return None if amount is None or flag is None else Draw(amount, flag)


__all__ = ["MAX_PLAN_BYTES", "PERIODS", "Plan", "PlanInvalid", "load", "parse", "parse_document"]
