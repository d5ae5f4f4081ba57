"""The HubSpot sandbox's JSON for the synthetic company: owners, companies, deals,
pipelines, currencies, and the search filters over them (docs/vendors/hubspot.md).

The kit's company (connectors.sandbox.dataset) maps onto HubSpot as: reps are owners
(owner `id` = rep id, a separate `userId`, §4), accounts are companies, deals are deals
with one company association, stages are deal stages of two pipelines (§5). Every
property value is a string (§2)."""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from connectors.hubspot.wire import (
    MERGED_IDS,
    MODIFIED,
    OBJECT_ID,
    TIMESTAMP,
    day_iso,
    epoch_ms,
    parse_time,
)
from connectors.sandbox.dataset import Account, Activity, Company, Deal, Rep, StageDef
from connectors.sandbox.stamps import utc_text

RATE_PLACES = Decimal("0.000001")  # §6: conversion rates carry up to 6 decimals
CENT = Decimal("0.01")
# §5: portal admins rename stages; the won/lost meaning lives in the metadata only.
RENAMED = {"Closed Won": "Contract signed", "Closed Lost": "No decision"}
OPERATORS = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
             "NOT_HAS_PROPERTY")  # §3
TIME_PROPERTIES = frozenset({MODIFIED, "createdate", "closedate", TIMESTAMP, "hs_createdate"})
# §13: HubSpot-defined association type ids (the associations guide's table; guess where the
# sandbox needs one HubSpot does not list)
def iso_ms(moment: datetime) -> str:
    """HubSpot's datetime form (§2): UTC with milliseconds and a Z (connectors.hubspot.wire's,
    built cheaply: every record read writes several)."""
    return f"{utc_text(moment)}.{moment.microsecond // 1000:03d}Z"


ASSOCIATION_TYPES = {("deal", "companies"): 5, ("call", "companies"): 182,
                     ("call", "deals"): 206, ("meeting", "companies"): 188,
                     ("meeting", "deals"): 212, ("note", "companies"): 190,
                     ("note", "deals"): 214, ("task", "companies"): 192, ("task", "deals"): 216}


SINGULAR = {"companies": "company", "deals": "deal"}


def association_type(source: tuple[str, str | None], to_type: str) -> int:
    """The typeId of an association from a deal or an activity kind to `to_type`."""
    return ASSOCIATION_TYPES.get((source[1] or "deal", to_type), 0)


def stage_label(stage: StageDef) -> str:
    return RENAMED.get(stage.name, stage.name)


def user_id(rep: Rep) -> int:
    """§4: the user id differs from the owner id (and is refused as an owner)."""
    return 7_000_000 + int(rep.id) % 1_000_000


class Wire:
    """JSON for one company; `merged` maps primary ids to the ids merged into them."""

    def __init__(self, company: Company, merged: dict[str, list[str]],
                 home_amounts: bool = True) -> None:
        self.company, self.merged, self.home_amounts = company, merged, home_amounts
        teams = sorted({r.team for r in company.reps})
        self.team_ids = {name: str(178_000 + i) for i, name in enumerate(teams)}
        pipelines = company.pipelines()
        self.pipeline_ids = {p: ("default" if i == 0 else str(7_700_001 + i))  # §5
                             for i, p in enumerate(pipelines)}

    # ---- owners (§4) -------------------------------------------------------------------
    def owner(self, rep: Rep) -> dict[str, Any]:
        return {"id": rep.id, "email": rep.email, "type": "PERSON", "firstName": rep.first_name,
                "lastName": rep.last_name, "userId": user_id(rep),
                "createdAt": iso_ms(rep.created_at), "updatedAt": iso_ms(rep.modified_at),
                "archived": not rep.active,
                "teams": [{"id": self.team_ids[rep.team], "name": rep.team, "primary": True}]}

    # ---- pipelines (§5) ----------------------------------------------------------------
    def pipelines(self) -> list[dict[str, Any]]:
        out = []
        for order, name in enumerate(self.company.pipelines()):
            stages = [s for s in self.company.stages if s.pipeline == name]
            out.append({
                "id": self.pipeline_ids[name], "label": name, "displayOrder": order,
                "archived": False, "createdAt": "2024-01-01T00:00:00.000Z",
                "updatedAt": "2024-01-01T00:00:00.000Z",
                "stages": [self.stage(s) for s in stages]})
        return out

    def stage(self, stage: StageDef) -> dict[str, Any]:
        closed = stage.category != "open"
        probability = {"won": "1.0", "lost": "0.0"}.get(stage.category,
                                                          str(Decimal(stage.probability) / 100))
        return {"id": stage.id, "label": stage_label(stage), "displayOrder": stage.order,
                "archived": False, "createdAt": "2024-01-01T00:00:00.000Z",
                "updatedAt": "2024-01-01T00:00:00.000Z",
                "metadata": {"isClosed": "true" if closed else "false",
                             "probability": probability}}

    # ---- currency (§6) -----------------------------------------------------------------
    def conversion_rate(self, currency: str) -> Decimal:
        """Home units per 1 unit of `currency` (the kit keeps units per 1 home unit)."""
        return (Decimal(1) / self.company.currencies[currency]).quantize(RATE_PLACES)

    def exchange_rates(self) -> list[dict[str, Any]]:
        home = self.company.home_currency
        return [{"id": str(900 + i), "fromCurrencyCode": code, "toCurrencyCode": home,
                 "conversionRate": float(self.conversion_rate(code)),
                 "effectiveAt": "2024-01-01T00:00:00Z", "createdAt": "2024-01-01T00:00:00Z",
                 "updatedAt": "2024-01-01T00:00:00Z", "visibleInUI": True}
                for i, code in enumerate(sorted(self.company.currencies)) if code != home]

    # ---- records (§2) ------------------------------------------------------------------
    def deal_properties(self, deal: Deal) -> dict[str, str | None]:
        stage = self.company.stage_by_id[deal.stage_id]
        home = None
        if self.home_amounts:
            home = str((deal.amount * self.conversion_rate(deal.currency)).quantize(CENT))
        return {
            "dealname": deal.name, "amount": str(deal.amount),
            "deal_currency_code": deal.currency, "amount_in_home_currency": home,
            "dealstage": stage.id, "pipeline": self.pipeline_ids[stage.pipeline],
            "closedate": day_iso(deal.close_date), "hubspot_owner_id": deal.owner_id,
            "createdate": iso_ms(deal.created_at), MODIFIED: iso_ms(deal.modified_at),
            OBJECT_ID: deal.id, MERGED_IDS: ";".join(self.merged.get(deal.id, [])) or None,
            "hs_is_closed": "true" if stage.category != "open" else "false",
            "hs_is_closed_won": "true" if stage.category == "won" else "false",
            "hs_deal_stage_probability": str(Decimal(deal.probability) / 100),
        }

    def company_properties(self, account: Account) -> dict[str, str | None]:
        return {"name": account.name, "industry": account.industry,
                "hubspot_owner_id": account.owner_id, "createdate": iso_ms(account.created_at),
                MODIFIED: iso_ms(account.modified_at), OBJECT_ID: account.id,
                MERGED_IDS: ";".join(self.merged.get(account.id, [])) or None}

    def activity_properties(self, activity: Activity) -> dict[str, str | None]:
        """§13: a call, meeting, task or note. A call not held has status NO_ANSWER (guess:
        any status but COMPLETED would do), a meeting not held is SCHEDULED while ahead and
        NO_SHOW after; tasks are TODO tasks; a note's body is its subject as HTML."""
        common = {TIMESTAMP: iso_ms(activity.start), "hubspot_owner_id": activity.owner_id,
                  "hs_createdate": iso_ms(activity.created_at),
                  MODIFIED: iso_ms(activity.modified_at), OBJECT_ID: activity.id}
        seconds = activity.duration_seconds
        if activity.kind == "call":
            return {**common, "hs_call_title": activity.subject,
                    "hs_call_duration": None if seconds is None else str(seconds * 1000),
                    "hs_call_status": "COMPLETED" if activity.done else "NO_ANSWER",
                    "hs_call_direction": "OUTBOUND"}
        if activity.kind == "meeting":
            ahead = activity.start > datetime.now(UTC)
            end = activity.start + timedelta(seconds=seconds or 0)
            return {**common, "hs_meeting_title": activity.subject,
                    "hs_meeting_start_time": iso_ms(activity.start),
                    "hs_meeting_end_time": iso_ms(end),
                    "hs_meeting_outcome": "COMPLETED" if activity.done
                    else "SCHEDULED" if ahead else "NO_SHOW"}
        if activity.kind == "task":
            done = activity.completed_at
            return {**common, "hs_task_subject": activity.subject,
                    "hs_task_status": "COMPLETED" if activity.done else "NOT_STARTED",
                    "hs_task_type": "TODO", "hs_task_priority": "NONE",
                    "hs_task_completion_date": iso_ms(done) if done else None}
        return {**common, "hs_note_body": f"<p>{escape(activity.subject)}</p>"}

    def properties(self, record: Deal | Account | Activity) -> dict[str, str | None]:
        if isinstance(record, Activity):
            return self.activity_properties(record)
        return (self.deal_properties(record) if isinstance(record, Deal)
                else self.company_properties(record))

    def associated(self, record: Deal | Account | Activity, to_type: str) -> str | None:
        """§2, §13: a deal's company; an activity's deal or company."""
        if to_type == "companies" and not isinstance(record, Account):
            return record.account_id
        if to_type == "deals" and isinstance(record, Activity):
            return record.deal_id
        return None

    def record(self, record: Deal | Account | Activity, wanted: list[str] | None,
               associations: Sequence[str] = (), history: list[str] | None = None
               ) -> dict[str, Any]:
        """§2: only the asked properties (default: the object's default set); §11 the
        histories of `history` (a deal's dealstage: its stage path; others: the current
        value as set at the last modification)."""
        every = self.properties(record)
        names = wanted or (
            ["hs_createdate", MODIFIED, OBJECT_ID, TIMESTAMP] if isinstance(record, Activity)
            else ["createdate", MODIFIED, OBJECT_ID,
                  *(["dealname", "amount", "dealstage", "pipeline", "closedate"]
                    if isinstance(record, Deal) else ["name", "domain"])])
        out: dict[str, Any] = {
            "id": record.id, "properties": {n: every.get(n) for n in names},
            "createdAt": iso_ms(record.created_at), "updatedAt": iso_ms(record.modified_at),
            "archived": False}
        if history:
            out["propertiesWithHistory"] = {n: self.history(record, n) for n in history}
        if associations:  # §2: only the associations the record has
            label = "deal" if isinstance(record, Deal) else getattr(record, "kind", "company")
            out["associations"] = {
                name: {"results": [{"id": linked, "type": f"{label}_to_{SINGULAR[name]}"}]}
                for name in associations if (linked := self.associated(record, name))}
        return out

    def history(self, record: Deal | Account | Activity, name: str) -> list[dict[str, Any]]:
        """§11: the values a property held, newest first. A deal's dealstage history is its
        stage path (the stage ids it entered and when, set by its owner in the CRM's UI:
        guess, the company does not record who moved a deal); another property's is its
        value now, as set at the record's last modification (guess: the company keeps no
        older values); an unknown or empty property has none."""
        if name == "dealstage" and isinstance(record, Deal):
            owner = self.company.rep_by_id.get(record.owner_id)
            by = user_id(owner) if owner else None
            return [{"value": move.stage_id, "timestamp": iso_ms(move.changed_at),
                     "sourceType": "CRM_UI", "sourceId": f"userId:{by}",
                     "updatedByUserId": by}
                    for move in sorted(record.history, key=lambda m: m.changed_at,
                                       reverse=True)]
        value = self.properties(record).get(name)
        if value is None:
            return []
        return [{"value": value, "timestamp": iso_ms(record.modified_at), "sourceType": "API"}]

    # ---- search values (§3) -------------------------------------------------------------
    def value(self, record: Deal | Account | Activity, name: str) -> Any:
        """A property as search compares it: times and ids as numbers, amounts as decimals."""
        if name == MODIFIED:  # the hot paths of incremental reads
            return epoch_ms(record.modified_at)
        if name == OBJECT_ID:
            return Decimal(record.id)
        raw = self.properties(record).get(name)
        if raw is None:
            return None
        if name in TIME_PROPERTIES:
            moment = parse_time(raw)
            return epoch_ms(moment) if isinstance(moment, datetime) else None
        if name in (OBJECT_ID, "amount", "amount_in_home_currency", "hubspot_owner_id"):
            return Decimal(raw)
        return raw


def filter_value(name: str, value: Any) -> Any:
    """A filter's value as search compares it (§3: dates are epoch ms strings)."""
    if value is None:
        return None
    if name in TIME_PROPERTIES:
        text = str(value)
        if text.lstrip("-").isdigit():
            return int(text)
        moment = parse_time(text)
        return epoch_ms(moment) if moment else None
    if name in (OBJECT_ID, "amount", "amount_in_home_currency", "hubspot_owner_id"):
        return Decimal(str(value))
    return str(value)


def matcher(operator: str, name: str, flt: dict[str, Any]) -> Callable[[Any], bool]:
    """One §3 filter as a predicate on a property value (ValueError for a bad one)."""
    if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        want = operator == "HAS_PROPERTY"
        return lambda v: (v is not None) == want
    if operator in ("IN", "NOT_IN"):
        values = flt.get("values")
        if not isinstance(values, list):
            raise ValueError(f"{operator} needs values")
        chosen = {filter_value(name, v) for v in values}
        inside = operator == "IN"
        return lambda v: (v in chosen) == inside
    target = filter_value(name, flt.get("value"))
    if target is None:
        raise ValueError(f"filter on {name} has no value")
    if operator == "BETWEEN":
        high = filter_value(name, flt.get("highValue"))
        if high is None:
            raise ValueError("BETWEEN needs highValue")
        return lambda v: v is not None and target <= v <= high
    tests: dict[str, Callable[[Any], bool]] = {
        "EQ": lambda v: v == target, "NEQ": lambda v: v != target,
        "LT": lambda v: v is not None and v < target,
        "LTE": lambda v: v is not None and v <= target,
        "GT": lambda v: v is not None and v > target,
        "GTE": lambda v: v is not None and v >= target}
    if operator not in tests:
        raise ValueError(f"unknown operator {operator!r}")
    return tests[operator]
