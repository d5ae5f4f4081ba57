"""How the Zoho sandbox renders the neutral company: record, user, org and metadata JSON.

Shapes follow docs/vendors/zoho.md (§n below): ids as strings,
datetimes in the org's offset without milliseconds, dates YYYY-MM-DD, lookups
`{"name","id"}`, owners `{"name","id","email"}`, nulls for empty values.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sandbox import vocab
from connectors.sandbox.dataset import (
    ORG_PREFIX,
    Activity,
    ActivityKind,
    Company,
    Deal,
    Entity,
    Rep,
    StageDef,
)
from connectors.sandbox.stamps import wall_text

API = "/crm/v8"  # the api_domain's path prefix: API v8
ORG_DOMAIN = f"org{ORG_PREFIX // 10**12}"  # the org's domain_name (GET /org, §12)
_CENT = Decimal("0.01")
FORECAST = {  # §4: won/lost come from forecast_type, never from names
    "open": ("Open", "Pipeline", ORG_PREFIX + 6_787),
    "won": ("Closed Won", "Closed", ORG_PREFIX + 6_789),
    "lost": ("Closed Lost", "Omitted", ORG_PREFIX + 6_791),
}
JSON_TYPES = {"integer": "integer", "double": "double", "currency": "double",
              "boolean": "boolean", "lookup": "jsonobject", "ownerlookup": "jsonobject",
              "multiselectpicklist": "jsonarray", "multiselectlookup": "jsonarray",
              "tag": "jsonarray"}  # else "string" (§4)
LEAD_SOURCES = ("Advertisement", "Cold Call", "Employee Referral", "Partner", "Trade Show",
                "Web Download", "Seminar Partner")
ACCOUNT_TYPES = ("Analyst", "Competitor", "Customer", "Distributor", "Integrator", "Investor",
                 "Partner", "Press", "Prospect", "Reseller", "Vendor")
# How the org shows its currencies (org, currencies and each record's `$currency_symbol`).
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CNY": "CN¥", "JPY": "¥"}
CURRENCY_NAMES = {
    "USD": "US Dollar",
    "EUR": "Euro",
    "GBP": "Pound Sterling",
    "CNY": "Chinese Yuan",
    "JPY": "Japanese Yen",
}
LAYOUT = "Standard"
# A stage whose display_value an admin renamed keeps Zoho's own actual_value, as in
# zoho/crm-oas v8.0/pipeline/operations/getPipelines/examples/response-200-
# pipelinegetresponse (display "Identify Decision Makers", actual "Id. Decision Makers";
# "Closed Lost to Competition" is an actual value there). Picklist metadata
# (https://www.zoho.com/crm/developer/docs/api/v8/field-meta.html) and pipeline maps carry
# both. Records carry the actual value: guess (Zoho documents no record sample with such a
# stage; third-party samples show Deals with "Stage": "Id. Decision Makers").
ACTUAL_VALUES = {"Closed-Lost to Competition": "Closed Lost to Competition"}
# Fields a record has only in a multi-currency org (docs/vendors/zoho.md §8;
# https://www.zoho.com/crm/developer/docs/api/v8/enable-multi-currency.html).
CURRENCY_FIELDS = ("Currency", "Exchange_Rate")


def actual_value(stage_name: str) -> str:
    return ACTUAL_VALUES.get(stage_name, stage_name)


@dataclass(frozen=True)
class FieldSpec:
    """One module field: metadata for /settings/fields and how a record renders it."""

    api_name: str
    data_type: str  # §4 data_type values
    render: Callable[["Wire", Any], Any]
    mandatory: bool = False
    read_only: bool = False
    picklist: Callable[["Wire"], list[dict[str, Any]]] | None = None
    lookup: str | None = None  # the module a lookup points to

    @property
    def label(self) -> str:
        return self.api_name.removesuffix("__s").replace("_", " ")


@dataclass(frozen=True)
class ModuleSpec:
    """A CRM module served by the sandbox (Sales_Goals would be one more of these)."""

    api_name: str
    singular: str
    entity: Entity
    module_id: str
    layout_id: str
    field_base: int  # field ids are ORG_PREFIX + field_base + position
    fields: tuple[FieldSpec, ...] = field(default=())
    kind: ActivityKind | None = None  # an activity module: the activities of this kind


def _values(values: tuple[str, ...] | list[str], base: int) -> list[dict[str, Any]]:
    return [{"display_value": v, "actual_value": v, "id": str(ORG_PREFIX + base + i),
             "sequence_number": i + 1, "type": "used"} for i, v in enumerate(values)]


def _stage_values(wire: "Wire") -> list[dict[str, Any]]:
    values = []
    for i, stage in enumerate(wire.company.stages):
        forecast_type, category, category_id = FORECAST[stage.category]
        values.append({
            "display_value": stage.name, "actual_value": actual_value(stage.name),
            "id": stage.id,
            "sequence_number": i + 1, "type": "used", "probability": stage.probability,
            "forecast_type": forecast_type,
            "forecast_category": {"name": category, "id": str(category_id)}})
    return values


def _cycle_days(deal: Deal, wire: "Wire") -> int | None:
    if wire.stages[deal.stage_id].category == "open":
        return None
    return max(0, (deal.close_date - deal.created_at.date()).days)


def _common() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Owner", "ownerlookup", lambda w, r: w.owner(r.owner_id), lookup="users"),
        FieldSpec("Created_By", "ownerlookup", lambda w, r: w.owner(r.owner_id), read_only=True,
                  lookup="users"),
        FieldSpec("Modified_By", "ownerlookup", lambda w, r: w.owner(r.owner_id), read_only=True,
                  lookup="users"),
        FieldSpec("Created_Time", "datetime", lambda w, r: w.dt(r.created_at), read_only=True),
        FieldSpec("Modified_Time", "datetime", lambda w, r: w.dt(r.modified_at), read_only=True),
        FieldSpec("Last_Activity_Time", "datetime", lambda w, r: w.dt(r.modified_at),
                  read_only=True),
        FieldSpec("Description", "textarea", lambda _w, _r: None),
        FieldSpec("Tag", "tag", lambda _w, _r: []),
        FieldSpec("Record_Status__s", "picklist", lambda _w, _r: "Available", read_only=True,
                  picklist=lambda _w: _values(["Available", "Draft"], 91_500)),
        FieldSpec("Locked__s", "boolean", lambda _w, _r: False, read_only=True),
    )


DEALS = ModuleSpec("Deals", "Deal", "deals", str(ORG_PREFIX + 131), str(ORG_PREFIX + 91_023),
                   500_000, (
    FieldSpec("Deal_Name", "text", lambda _w, d: d.name, mandatory=True),
    FieldSpec("Amount", "currency", lambda _w, d: float(d.amount)),
    FieldSpec("Currency", "picklist", lambda _w, d: d.currency,
              picklist=lambda w: _values(sorted(w.company.currencies), 91_100)),
    FieldSpec("Exchange_Rate", "double", lambda _w, d: float(d.exchange_rate)),
    FieldSpec("Stage", "picklist", lambda w, d: actual_value(w.stages[d.stage_id].name),
              mandatory=True,
              picklist=_stage_values),
    FieldSpec("Pipeline", "picklist", lambda w, d: w.pipeline_name(w.stages[d.stage_id].pipeline),
              mandatory=True,
              picklist=lambda w: _values([w.pipeline_name(p) for p in w.company.pipelines()],
                                         91_200)),
    FieldSpec("Probability", "integer", lambda _w, d: d.probability),
    FieldSpec("Expected_Revenue", "currency",
              lambda _w, d: float((d.amount * d.probability / 100).quantize(_CENT)),
              read_only=True),
    FieldSpec("Closing_Date", "date", lambda _w, d: d.close_date.isoformat(), mandatory=True),
    FieldSpec("Account_Name", "lookup", lambda w, d: w.account_ref(d.account_id),
              lookup="Accounts"),
    FieldSpec("Contact_Name", "lookup", lambda _w, _d: None, lookup="Contacts"),
    FieldSpec("Type", "picklist", lambda w, d: (
        "Existing Business" if w.stages[d.stage_id].pipeline == "Renewals" else "New Business"),
        picklist=lambda _w: _values(["New Business", "Existing Business"], 91_300)),
    FieldSpec("Lead_Source", "picklist",
              lambda _w, d: LEAD_SOURCES[int(d.id) % len(LEAD_SOURCES)],
              picklist=lambda _w: _values(LEAD_SOURCES, 91_350)),
    FieldSpec("Next_Step", "text", lambda _w, _d: None),
    FieldSpec("Reason_For_Loss__s", "picklist", lambda _w, _d: None,
              picklist=lambda _w: _values(["Lost to Competitor", "Price", "No Budget"], 91_400)),
    FieldSpec("Sales_Cycle_Duration", "integer", lambda w, d: _cycle_days(d, w), read_only=True),
    FieldSpec("Overall_Sales_Duration", "integer", lambda w, d: _cycle_days(d, w),
              read_only=True),
    *_common(),
))
ACCOUNTS = ModuleSpec(
    "Accounts", "Account", "accounts", str(ORG_PREFIX + 125), str(ORG_PREFIX + 91_021),
    501_000, (
        FieldSpec("Account_Name", "text", lambda _w, a: a.name, mandatory=True),
        FieldSpec("Industry", "picklist", lambda _w, a: a.industry,
                  picklist=lambda _w: _values(vocab.INDUSTRIES, 91_600)),
        FieldSpec("Account_Type", "picklist", lambda _w, _a: "Customer",
                  picklist=lambda _w: _values(ACCOUNT_TYPES, 91_700)),
        FieldSpec("Phone", "phone", lambda _w, _a: None),
        FieldSpec("Website", "website", lambda _w, _a: None),
        FieldSpec("Billing_Country", "text", lambda _w, _a: None),
        FieldSpec("Annual_Revenue", "currency", lambda _w, _a: None),
        FieldSpec("Employees", "integer", lambda _w, _a: None),
        FieldSpec("Parent_Account", "lookup", lambda _w, _a: None, lookup="Accounts"),
        *_common(),
    ))

# ---- activities (§14: fields as the official SDK declares them; Calls' picklist values
# from a real org's field metadata; What_Id with `$se_module`; Call_Type values, and a
# lookup to a deal deleted later keeping its id, are assumed) ---------------------------------
CALL_STATUSES = ("Scheduled", "Completed", "Overdue", "Cancelled")
TASK_STATUSES = ("Not Started", "Deferred", "In Progress", "Completed", "Waiting for input")
CALL_PURPOSES = ("Prospecting", "Administrative", "Negotiation", "Demo", "Project", "Desk")


def _call_type(a: Activity) -> str:
    return "Inbound" if a.done and int(a.id) % 4 == 0 else "Outbound"


def _call_status(w: "Wire", a: Activity) -> str | None:
    if _call_type(a) == "Inbound":
        return None  # an inbound call has no outgoing status
    if a.done:
        return "Completed"
    return "Scheduled" if a.start > w.company.latest else "Overdue"


def _related(w: "Wire", a: Activity) -> dict[str, Any] | None:
    if a.deal_id:
        deal = w.company.deals.get(a.deal_id)
        return {"name": deal.name if deal else None, "id": a.deal_id}
    return w.account_ref(a.account_id)


def se_module(a: Activity) -> str | None:
    return "Deals" if a.deal_id else "Accounts" if a.account_id else None


def _end(a: Activity) -> datetime:
    return a.start + timedelta(seconds=a.duration_seconds or 0)


def _activity_common() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("What_Id", "lookup", _related, lookup="Deals"),
        FieldSpec("Who_Id", "lookup", lambda _w, _a: None, lookup="Contacts"),
        *_common(),
    )


CALLS = ModuleSpec("Calls", "Call", "activities", str(ORG_PREFIX + 137),
                   str(ORG_PREFIX + 91_031), 502_000, (
    FieldSpec("Subject", "text", lambda _w, a: a.subject, mandatory=True),
    FieldSpec("Call_Type", "picklist", lambda _w, a: _call_type(a), mandatory=True,
              picklist=lambda _w: _values(["Outbound", "Inbound", "Missed"], 91_800)),
    FieldSpec("Call_Start_Time", "datetime", lambda w, a: w.dt(a.start), mandatory=True),
    FieldSpec("Call_Duration", "text", lambda _w, a: "{:02d}:{:02d}".format(
        *divmod(a.duration_seconds or 0, 60)), mandatory=True),
    FieldSpec("Call_Duration_in_seconds", "integer", lambda _w, a: a.duration_seconds),
    FieldSpec("Outgoing_Call_Status", "picklist", _call_status,
              picklist=lambda _w: _values(CALL_STATUSES, 91_810)),
    FieldSpec("Call_Result", "picklist", lambda _w, _a: None),
    FieldSpec("Call_Purpose", "picklist",
              lambda _w, a: CALL_PURPOSES[int(a.id) % len(CALL_PURPOSES)],
              picklist=lambda _w: _values(CALL_PURPOSES, 91_820)),
    FieldSpec("Scheduled_In_CRM", "picklist",
              lambda w, a: str(_call_status(w, a) != "Completed" or int(a.id) % 2 == 0)),
    *_activity_common(),
), kind="call")
EVENTS = ModuleSpec("Events", "Event", "activities", str(ORG_PREFIX + 139),
                    str(ORG_PREFIX + 91_033), 503_000, (
    FieldSpec("Event_Title", "text", lambda _w, a: a.subject, mandatory=True),
    FieldSpec("Start_DateTime", "datetime", lambda w, a: w.dt(a.start), mandatory=True),
    FieldSpec("End_DateTime", "datetime", lambda w, a: w.dt(_end(a)), mandatory=True),
    FieldSpec("All_day", "boolean", lambda _w, _a: False),
    FieldSpec("Participants", "multiselectlookup", lambda _w, _a: []),
    FieldSpec("Check_In_Time", "datetime", lambda _w, _a: None, read_only=True),
    FieldSpec("Check_In_Status", "text", lambda _w, _a: None, read_only=True),
    *_activity_common(),
), kind="meeting")
TASKS = ModuleSpec("Tasks", "Task", "activities", str(ORG_PREFIX + 141),
                   str(ORG_PREFIX + 91_035), 504_000, (
    FieldSpec("Subject", "text", lambda _w, a: a.subject, mandatory=True),
    FieldSpec("Status", "picklist", lambda _w, a: "Completed" if a.done else "Not Started",
              picklist=lambda _w: _values(TASK_STATUSES, 91_830)),
    FieldSpec("Due_Date", "date", lambda _w, a: a.start.date().isoformat()),
    FieldSpec("Closed_Time", "datetime",
              lambda w, a: w.dt(a.completed_at) if a.completed_at else None, read_only=True),
    FieldSpec("Priority", "picklist", lambda _w, a: "High" if int(a.id) % 5 == 0 else "Normal",
              picklist=lambda _w: _values(["Highest", "High", "Normal", "Low", "Lowest"],
                                          91_840)),
    *_activity_common(),
), kind="task")
MODULES: dict[str, ModuleSpec] = {  # by lower-case name
    "deals": DEALS, "accounts": ACCOUNTS, "calls": CALLS, "events": EVENTS, "tasks": TASKS}


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _local_text(tz: ZoneInfo, seconds: int) -> str:
    """An instant (epoch seconds) as §2 writes it in `tz`, e.g. `2025-05-20T09:02:11-04:00`
    (what `astimezone(tz).isoformat()` gives, at a third of its cost): the offset looked up
    per UTC day (per quarter hour on a day it changes), the local time put together by
    connectors.sandbox.stamps."""
    offset, text = _day_offset(tz, seconds // 86_400) or _offset(tz, seconds // 900)
    return wall_text(seconds + offset) + text


@lru_cache(maxsize=1 << 14)
def _day_offset(tz: ZoneInfo, day: int) -> tuple[int, str] | None:
    """The offset of `tz` all through a UTC day, or None on a day its offset changes."""
    first, last = _offset(tz, day * 96), _offset(tz, day * 96 + 95)
    return first if first == last else None


@lru_cache(maxsize=1 << 16)
def _offset(tz: ZoneInfo, quarter: int) -> tuple[int, str]:
    """The UTC offset of `tz` during a quarter hour (offsets only change on quarter hours),
    in seconds and as text."""
    delta = _at(quarter * 900).astimezone(tz).utcoffset()
    seconds = int(delta.total_seconds()) if delta else 0
    sign, size = "-" if seconds < 0 else "+", abs(seconds)
    return seconds, f"{sign}{size // 3600:02d}:{size % 3600 // 60:02d}"


class Wire:
    """Renders one company for one org time zone; caches what never changes."""

    company: Company
    tz: ZoneInfo

    def __init__(self, company: Company, tz: ZoneInfo, multi_currency: bool = True) -> None:
        self.company, self.tz, self.multi_currency = company, tz, multi_currency
        self._reps: dict[str, Rep] | None = None  # the rep_by_id the caches below were built on
        self._owners: dict[str, dict[str, str]] = {}
        self._role_ids: dict[str, str] = {}

    @property
    def stages(self) -> dict[str, StageDef]:
        return self.company.stage_by_id

    def _rep_caches(self) -> None:
        """(Re)build the owner lookups and role ids when the reps were refreshed."""
        if self._reps is self.company.rep_by_id:
            return
        reps = self.company.reps
        self._owners = {r.id: {"name": r.full_name, "id": r.id, "email": r.email} for r in reps}
        roles = sorted({self.role_name(r) for r in reps})
        self._role_ids = {name: str(ORG_PREFIX + 26_100 + 3 * i) for i, name in enumerate(roles)}
        self._reps = self.company.rep_by_id

    def role_id(self, rep: Rep) -> str:
        self._rep_caches()
        return self._role_ids[self.role_name(rep)]

    # ---- values ----------------------------------------------------------------------------
    def dt(self, moment: datetime) -> str:
        """§2: `2025-05-20T09:02:11-04:00`, the org's offset, no milliseconds, no Z."""
        return _local_text(self.tz, int(moment.timestamp()))

    def dt_epoch(self, seconds: float) -> str:
        return self.dt(_at(int(seconds)))

    def owner(self, rep_id: str) -> dict[str, str] | None:
        if self._reps is not self.company.rep_by_id:
            self._rep_caches()
        return self._owners.get(rep_id)

    def user_ref(self, rep_id: str | None) -> dict[str, str] | None:
        rep = self.company.rep_by_id.get(rep_id or "")
        return {"name": rep.full_name, "id": rep.id} if rep else None

    def account_ref(self, account_id: str | None) -> dict[str, str] | None:
        account = self.company.accounts.get(account_id or "")
        return {"name": account.name, "id": account.id} if account else None

    @staticmethod
    def pipeline_name(pipeline: str) -> str:
        # §2/§4 samples: the default pipeline reads "Standard (Standard)", i.e. "name (layout)".
        return f"{pipeline} ({LAYOUT})"

    @staticmethod
    def role_name(rep: Rep) -> str:
        # Zoho users have no team field: the sandbox models teams as roles.
        return rep.role if rep.team == vocab.MANAGER_TEAM else f"{rep.role} ({rep.team})"

    # ---- records ---------------------------------------------------------------------------
    def records(self, records: list[Any], fields: list[FieldSpec]) -> list[dict[str, Any]]:
        """Only the requested fields plus id and the `$` meta keys (§2); the hot path."""
        renderers = [(f.api_name, f.render) for f in fields]
        symbols, home = CURRENCY_SYMBOLS, self.company.home_currency
        out = []
        for record in records:
            row: dict[str, Any] = {"id": record.id}
            for name, render in renderers:
                row[name] = render(self, record)
            code = getattr(record, "currency", home)
            row["$currency_symbol"] = symbols.get(code, code)
            if "What_Id" in row:  # an activity's lookup names its module
                row["$se_module"] = se_module(record)
            row["$approval_state"] = "approved"
            row["$editable"] = True
            row["$state"] = "save"
            out.append(row)
        return out

    # ---- metadata --------------------------------------------------------------------------
    def fields(self, spec: ModuleSpec) -> tuple[FieldSpec, ...]:
        """The module's fields in this org: no Currency or Exchange_Rate without multi-currency."""
        if self.multi_currency:
            return spec.fields
        return tuple(f for f in spec.fields if f.api_name not in CURRENCY_FIELDS)

    def field_meta(self, spec: ModuleSpec, f: FieldSpec) -> dict[str, Any]:
        """§4: api_name, data_type, json_type, pick_list_values, lookup, currency ..."""
        index = spec.fields.index(f)
        meta: dict[str, Any] = {
            "api_name": f.api_name, "id": str(ORG_PREFIX + spec.field_base + index),
            "field_label": f.label, "display_label": f.label, "data_type": f.data_type,
            "json_type": JSON_TYPES.get(f.data_type, "string"),
            "system_mandatory": f.mandatory, "custom_field": False, "read_only": f.read_only,
            "visible": True, "length": 120 if f.data_type in ("text", "picklist") else None,
            "decimal_place": 2 if f.data_type == "currency" else None,
            "pick_list_values": f.picklist(self) if f.picklist else [],
            "lookup": {}, "currency": {},
        }
        if f.lookup:
            target = MODULES.get(f.lookup.lower())
            meta["lookup"] = {"module": {"api_name": f.lookup,
                                         "id": target.module_id if target else None}}
        if f.data_type == "currency":
            meta["currency"] = {"rounding_option": "normal", "precision": 2}
        return meta

    def layout(self, spec: ModuleSpec) -> dict[str, Any]:
        manager = self.user_ref(self.company.manager.id)
        created = self.dt(min(r.created_at for r in self.company.reps))
        return {
            "id": spec.layout_id, "name": LAYOUT, "api_name": LAYOUT, "display_label": LAYOUT,
            "status": "active", "visible": True, "source": "crm", "created_time": created,
            "modified_time": created, "created_by": manager, "modified_by": manager,
            "profiles": [{"name": "Administrator", "id": str(ORG_PREFIX + 26_011),
                          "default": True},
                         {"name": "Standard", "id": str(ORG_PREFIX + 26_014), "default": True}],
            "sections": [{"display_label": f"{spec.singular} Information",
                          "api_name": f"{spec.singular} Information", "sequence_number": 1,
                          "fields": [{"api_name": f.api_name, "display_label": f.label}
                                     for f in self.fields(spec)]}],
        }

    def pipelines(self) -> list[dict[str, Any]]:
        """§4: pipelines with their stage maps, each map carrying forecast_type."""
        result = []
        for i, name in enumerate(self.company.pipelines()):
            maps = []
            for stage in (s for s in self.company.stages if s.pipeline == name):
                forecast_type, category, category_id = FORECAST[stage.category]
                maps.append({"display_value": stage.name,
                             "actual_value": actual_value(stage.name),
                             "sequence_number": stage.order, "id": stage.id,
                             "forecast_type": forecast_type,
                             "forecast_category": {"name": category, "id": str(category_id)}})
            label = self.pipeline_name(name)
            result.append({"display_value": label, "actual_value": label, "default": i == 0,
                           "id": str(ORG_PREFIX + 3_097_001 + i), "maps": maps})
        return result

    def org(self) -> dict[str, Any]:
        company, home = self.company, self.company.home_currency
        manager = company.manager
        return {
            "id": str(ORG_PREFIX + 1), "company_name": company.name, "alias": None,
            "primary_email": manager.email, "primary_zuid": self.zuid(manager),
            "domain_name": ORG_DOMAIN, "time_zone": self.tz.key,
            "iso_code": home, "currency_symbol": CURRENCY_SYMBOLS.get(home, home),
            "currency": f"{CURRENCY_NAMES.get(home, home)} - {home}",
            "currency_locale": "en_US", "mc_status": self.multi_currency,
            "country_code": "US", "country": "United States", "phone": None, "mobile": None,
            "website": f"https://www.{company.domain}", "employee_count": str(len(company.reps)),
            "type": "production",
            "license_details": {"paid": True, "paid_type": "enterprise",
                                "users_license_purchased": len(company.reps)},
        }

    def currencies(self) -> list[dict[str, Any]]:
        """§8: iso_code, is_base, exchange_rate as a 9-decimal string."""
        manager = self.user_ref(self.company.manager.id)
        created = self.dt(min(r.created_at for r in self.company.reps))
        result = []
        for i, (code, rate) in enumerate(self.company.currencies.items()):
            result.append({
                "id": str(ORG_PREFIX + 95_001 + i), "iso_code": code,
                "name": f"{CURRENCY_NAMES.get(code, code)} - {code}",
                "symbol": CURRENCY_SYMBOLS.get(code, code), "prefix_symbol": True,
                "is_base": code == self.company.home_currency, "is_active": True,
                "exchange_rate": f"{rate:.9f}",
                "format": {"decimal_separator": "Period", "thousand_separator": "Comma",
                           "decimal_places": "0" if code == "JPY" else "2"},
                "created_time": created, "created_by": manager,
                "modified_time": created, "modified_by": manager})
        return result

    @staticmethod
    def zuid(rep: Rep) -> str:
        return str(800_000_000 + int(rep.id) % 10**6)


def user_json(wire: Wire, rep: Rep) -> dict[str, Any]:
    """§2: users mix `created_time` (snake) and `Modified_Time` (Title) exactly like this."""
    manager = wire.company.manager
    admin = rep is manager
    role = wire.role_name(rep)
    return {
        "id": rep.id, "full_name": rep.full_name, "first_name": rep.first_name,
        "last_name": rep.last_name, "email": rep.email,
        "status": "active" if rep.active else "inactive",  # crm-oas: inactive = deactivated
        "confirm": True, "type__s": "Regular User",
        "role": {"name": role, "id": wire.role_id(rep)},
        "profile": ({"name": "Administrator", "id": str(ORG_PREFIX + 26_011)} if admin
                    else {"name": "Standard", "id": str(ORG_PREFIX + 26_014)}),
        "Reporting_To": None if admin else wire.user_ref(manager.id),
        "time_zone": wire.tz.key, "locale": "en_US", "country_locale": "en_US",
        "zuid": wire.zuid(rep), "alias": None, "phone": None, "mobile": None,
        "created_by": wire.user_ref(manager.id), "Modified_By": wire.user_ref(manager.id),
        "created_time": wire.dt(rep.created_at), "Modified_Time": wire.dt(rep.modified_at),
    }
