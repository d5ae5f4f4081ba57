"""The Salesforce sandbox's org as Salesforce shows it: record ids, the fields of each
object (the schemas the SOQL engine checks names and types against), and the rows of
User, Account, Opportunity, OpportunityStage, Organization, CurrencyType,
DatedConversionRate, Period and ForecastingType built from the synthetic company
(docs/vendors/salesforce.md, cited as §n).

Rows hold Python values (datetime, date, Decimal, bool, str, None); `to_json` turns one
into the record JSON of a query answer (§2, §4: dateTimes as `...000+0000`, dates as
`YYYY-MM-DD`, numbers as JSON numbers).
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from connectors.salesforce.sandbox.soql import Schema
from connectors.sandbox.dataset import (
    ID_BASE,
    ORG_PREFIX,
    Account,
    Activity,
    Company,
    Deal,
    Rep,
    StageDef,
)
from connectors.sandbox.stamps import utc_text

# Key prefixes (the first three characters of an id name its object). 005 User, 001
# Account, 006 Opportunity and 00D Organization are well known; the others are guesses.
PREFIX = {"User": "005", "Account": "001", "Opportunity": "006", "OpportunityStage": "01J",
          "Organization": "00D", "CurrencyType": "02c", "DatedConversionRate": "04w",
          "Period": "026", "ForecastingType": "0Db", "ForecastingQuota": "0J9",
          "OpportunityHistory": "008", "Task": "00T", "Event": "00U"}
KIND_OF = {"005": "reps", "001": "accounts", "006": "deals", "01J": "stages"}
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
FAR_PAST, FAR_FUTURE = date(1, 1, 1), date(9999, 12, 31)  # §5 first and last dated ranges
FORECAST_CATEGORY = {"open": "Pipeline", "won": "Closed", "lost": "Omitted"}


def sf_id(prefix: str, number: int) -> str:
    """An 18-character id: prefix, pod, number, and the case-safe suffix Salesforce adds to
    15-character ids (one character per 5, bit i set when character i is upper case)."""
    short = f"{prefix}5g0{number:09d}"
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, c in enumerate(short[chunk * 5:chunk * 5 + 5]) if c.isupper())
        suffix += _SUFFIX_CHARS[bits]
    return short + suffix


@lru_cache(maxsize=1 << 20)
def record_id(kind: str, dataset_id: str) -> str:
    """The Salesforce id of a company's rep, account, deal or stage."""
    prefix = {"reps": "005", "accounts": "001", "deals": "006", "stages": "01J"}[kind]
    return sf_id(prefix, int(dataset_id) - ORG_PREFIX - ID_BASE[kind])


def activity_object(kind: str) -> str:
    """§12: meetings are Events; calls and tasks are Tasks (notes are neither)."""
    return "Event" if kind == "meeting" else "Task"


@lru_cache(maxsize=1 << 20)
def activity_id(kind: str, dataset_id: str) -> str:
    """The Salesforce id of a company's call, task (Task) or meeting (Event)."""
    return sf_id(PREFIX[activity_object(kind)],
                 int(dataset_id) - ORG_PREFIX - ID_BASE["activities"])


def dataset_id(salesforce_id: str) -> tuple[str, str] | None:
    """(kind, company id) of a Salesforce id of a rep, account, deal or stage."""
    kind = KIND_OF.get(salesforce_id[:3])
    if kind is None or len(salesforce_id) not in (15, 18) or not salesforce_id[6:15].isdigit():
        return None
    return kind, str(ORG_PREFIX + ID_BASE[kind] + int(salesforce_id[6:15]))


# ---- schemas (§3, §5, §8) --------------------------------------------------------------------
STAMPS: Schema = {"CreatedDate": "datetime", "LastModifiedDate": "datetime",
                  "SystemModstamp": "datetime"}
USER: Schema = {"Id": "id", "Username": "string", "Name": "string", "FirstName": "string",
                "LastName": "string", "Email": "string", "IsActive": "boolean",
                "ManagerId": "id", "UserRoleId": "id", "UserType": "string", "Title": "string",
                "Department": "string", **STAMPS}
ACCOUNT: Schema = {"Id": "id", "Name": "string", "Industry": "string", "OwnerId": "id",
                   "IsDeleted": "boolean", **STAMPS}
OPPORTUNITY: Schema = {"Id": "id", "Name": "string", "AccountId": "id", "OwnerId": "id",
                       "Amount": "number", "StageName": "string", "IsClosed": "boolean",
                       "IsWon": "boolean", "Probability": "number",
                       "ForecastCategoryName": "string", "CloseDate": "date",
                       "IsDeleted": "boolean", **STAMPS}
OPPORTUNITY_HISTORY: Schema = {"Id": "id", "OpportunityId": "id", "StageName": "string",
                               "Amount": "number", "CloseDate": "date",
                               "Probability": "number", "ForecastCategory": "string",
                               "CreatedById": "id", "CreatedDate": "datetime",
                               "SystemModstamp": "datetime", "IsDeleted": "boolean"}  # §11
ACTIVITY_FIELDS: Schema = {"Id": "id", "Subject": "string", "OwnerId": "id", "WhatId": "id",
                           "WhoId": "id", "AccountId": "id", "ActivityDate": "date",
                           "IsDeleted": "boolean", "IsArchived": "boolean",
                           "CreatedById": "id", **STAMPS}  # §12: on Task and Event
TASK: Schema = {**ACTIVITY_FIELDS, "Status": "string", "IsClosed": "boolean",
                "Priority": "string", "CompletedDateTime": "datetime",
                "TaskSubtype": "string", "CallDurationInSeconds": "number",
                "CallType": "string", "CallDisposition": "string"}
EVENT: Schema = {**ACTIVITY_FIELDS, "StartDateTime": "datetime", "EndDateTime": "datetime",
                 "ActivityDateTime": "datetime", "DurationInMinutes": "number",
                 "IsAllDayEvent": "boolean", "EventSubtype": "string"}
STAGE: Schema = {"Id": "id", "ApiName": "string", "MasterLabel": "string",
                 "IsActive": "boolean", "IsClosed": "boolean", "IsWon": "boolean",
                 "DefaultProbability": "number", "ForecastCategoryName": "string",
                 "SortOrder": "number", **STAMPS}
ORGANIZATION: Schema = {"Id": "id", "Name": "string", "DefaultCurrencyIsoCode": "string",
                        "OrganizationType": "string", "IsSandbox": "boolean", **STAMPS}
CURRENCY_TYPE: Schema = {"Id": "id", "IsoCode": "string", "ConversionRate": "number",
                         "DecimalPlaces": "number", "IsActive": "boolean",
                         "IsCorporate": "boolean", **STAMPS}
DATED_RATE: Schema = {"Id": "id", "IsoCode": "string", "ConversionRate": "number",
                      "StartDate": "date", "NextStartDate": "date", **STAMPS}
PERIOD: Schema = {"Id": "id", "Type": "string", "StartDate": "date", "EndDate": "date",
                  "Number": "number", "FiscalYearSettingsId": "id", **STAMPS}
FORECASTING_TYPE: Schema = {"Id": "id", "DeveloperName": "string", "MasterLabel": "string",
                            "IsActive": "boolean", "IsAmount": "boolean",
                            "IsQuantity": "boolean", **STAMPS}
QUOTA: Schema = {"Id": "id", "QuotaOwnerId": "id", "StartDate": "date", "PeriodId": "id",
                 "QuotaAmount": "number", "QuotaQuantity": "number", "IsAmount": "boolean",
                 "IsQuantity": "boolean", "ForecastingTypeId": "id", "ProductFamily": "string",
                 "CreatedById": "id", "LastModifiedById": "id", **STAMPS}
CURRENCY_OBJECTS = ("Account", "Opportunity", "ForecastingQuota", "User",
                    "OpportunityHistory")  # §5, §11
FORECAST_OBJECTS = ("ForecastingQuota", "ForecastingType")  # §8: Collaborative Forecasts


def schema_of(object_name: str, multi_currency: bool) -> Schema:
    schema = {"User": USER, "Account": ACCOUNT, "Opportunity": OPPORTUNITY,
              "OpportunityStage": STAGE, "Organization": ORGANIZATION,
              "CurrencyType": CURRENCY_TYPE, "DatedConversionRate": DATED_RATE,
              "Period": PERIOD, "ForecastingType": FORECASTING_TYPE,
              "ForecastingQuota": QUOTA, "OpportunityHistory": OPPORTUNITY_HISTORY,
              "Task": TASK, "Event": EVENT}[object_name]
    if multi_currency and object_name in CURRENCY_OBJECTS:
        return {**schema, "CurrencyIsoCode": "string"}
    return schema


def to_json(object_name: str, row: dict[str, Any], fields: list[str], version: str) -> dict[
        str, Any]:
    """A record as a query answers it: attributes, then the selected fields in order."""
    out: dict[str, Any] = {"attributes": {
        "type": object_name,
        "url": f"/services/data/v{version}/sobjects/{object_name}/{row['Id']}"}}
    for name in fields:
        out[name] = json_value(row.get(name))
    return out


def format_datetime(moment: datetime) -> str:
    """§4: a dateTime as Salesforce answers it, `2026-03-31T09:00:01.000+0000` (UTC; as
    connectors.salesforce.wire writes it, built cheaply: every row read writes several)."""
    return f"{utc_text(moment)}.{moment.microsecond // 1000:03d}+0000"


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)  # §2: numbers are JSON numbers (Amount 125000.0)
    return value


# ---- rows -------------------------------------------------------------------------------------
class Org:
    """The org's rows over a company (rebuilt by the state when the company changes)."""

    def __init__(self, company: Company, *, multi_currency: bool, integration_user: dict[
            str, Any], stage_labels: dict[str, str]) -> None:
        self.company = company
        self.multi_currency = multi_currency
        self.integration_user = integration_user
        self.stage_labels = stage_labels
        self.created = min((r.created_at for r in company.reps),
                           default=datetime(2024, 1, 1, tzinfo=UTC))
        self.stage_by_name = {s.name: s for s in company.stages}

    def rep_id(self, rep_id: str) -> str:
        return record_id("reps", rep_id)

    def user(self, rep: Rep) -> dict[str, Any]:
        manager = self.company.manager
        row: dict[str, Any] = {
            "Id": self.rep_id(rep.id), "Username": rep.email, "Name": rep.full_name,
            "FirstName": rep.first_name, "LastName": rep.last_name, "Email": rep.email,
            "IsActive": rep.active, "UserType": "Standard", "Title": rep.role,
            "Department": rep.team, "UserRoleId": None,
            "ManagerId": None if rep.id == manager.id else self.rep_id(manager.id),
            "CreatedDate": rep.created_at, "LastModifiedDate": rep.modified_at,
            "SystemModstamp": rep.modified_at}
        if self.multi_currency:
            row["CurrencyIsoCode"] = self.company.home_currency
        return row

    def users(self) -> list[dict[str, Any]]:
        rows = [self.user(r) for r in self.company.reps]
        integration = dict(self.integration_user)
        if self.multi_currency:
            integration["CurrencyIsoCode"] = self.company.home_currency
        return [*rows, integration]

    def stage(self, stage: StageDef, order: int) -> dict[str, Any]:
        """§3: an org-wide picklist value; ApiName is what Opportunity.StageName holds, the
        label may be renamed (stage_labels) and keeps its IsClosed/IsWon."""
        return {"Id": record_id("stages", stage.id), "ApiName": stage.name,
                "MasterLabel": self.stage_labels.get(stage.name, stage.name),
                "IsActive": True, "IsClosed": stage.category != "open",
                "IsWon": stage.category == "won",
                "DefaultProbability": Decimal(stage.probability),
                "ForecastCategoryName": FORECAST_CATEGORY[stage.category],
                "SortOrder": Decimal(order), "CreatedDate": self.created,
                "LastModifiedDate": self.created, "SystemModstamp": self.created}

    def stages(self) -> list[dict[str, Any]]:
        return [self.stage(s, i) for i, s in enumerate(self.company.stages, 1)]

    def account(self, account: Account, deleted_at: datetime | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "Id": record_id("accounts", account.id), "Name": account.name,
            "Industry": account.industry, "OwnerId": self.rep_id(account.owner_id),
            "IsDeleted": deleted_at is not None, "CreatedDate": account.created_at,
            "LastModifiedDate": deleted_at or account.modified_at,
            "SystemModstamp": deleted_at or account.modified_at}
        if self.multi_currency:
            row["CurrencyIsoCode"] = self.company.home_currency
        return row

    def opportunity(self, deal: Deal, deleted_at: datetime | None = None) -> dict[str, Any]:
        """§3, §5: a multi-currency org keeps the amount in the deal's currency; a
        single-currency org has one currency, so the amount is the deal's value in it
        (the company's amount divided by its rate, to the cent)."""
        stage = self.company.stage_by_id[deal.stage_id]
        amount = deal.amount
        if not self.multi_currency and deal.currency != self.company.home_currency:
            amount = (deal.amount / deal.exchange_rate).quantize(Decimal("0.01"))
        row: dict[str, Any] = {
            "Id": record_id("deals", deal.id), "Name": deal.name,
            "AccountId": record_id("accounts", deal.account_id) if deal.account_id else None,
            "OwnerId": self.rep_id(deal.owner_id), "Amount": amount,
            "StageName": stage.name, "IsClosed": stage.category != "open",
            "IsWon": stage.category == "won", "Probability": Decimal(deal.probability),
            "ForecastCategoryName": FORECAST_CATEGORY[stage.category],
            "CloseDate": deal.close_date, "IsDeleted": deleted_at is not None,
            "CreatedDate": deal.created_at, "LastModifiedDate": deleted_at or deal.modified_at,
            "SystemModstamp": deleted_at or deal.modified_at}
        if self.multi_currency:
            row["CurrencyIsoCode"] = deal.currency
        return row

    def opportunity_history(self, deal: Deal, deleted_at: datetime | None = None
                            ) -> list[dict[str, Any]]:
        """§11: a row per stage the opportunity entered, when it entered it, by its owner.
        The company keeps only stage moves, so there are no rows for amount or close date
        edits, and each row shows the amount and close date of now (guess)."""
        number = int(deal.id) - ORG_PREFIX - ID_BASE["deals"]
        rows = []
        for index, move in enumerate(deal.history):
            stage = self.company.stage_by_id[move.stage_id]
            row: dict[str, Any] = {
                "Id": sf_id(PREFIX["OpportunityHistory"], number * 100 + index),
                "OpportunityId": record_id("deals", deal.id), "StageName": stage.name,
                "Amount": deal.amount, "CloseDate": deal.close_date,
                "Probability": Decimal(stage.probability),
                "ForecastCategory": FORECAST_CATEGORY[stage.category],
                "CreatedById": self.rep_id(deal.owner_id), "CreatedDate": move.changed_at,
                "SystemModstamp": deleted_at or move.changed_at,
                "IsDeleted": deleted_at is not None}
            if self.multi_currency:
                row["CurrencyIsoCode"] = deal.currency
            rows.append(row)
        return rows

    def activity(self, activity: Activity, deleted_at: datetime | None = None
                 ) -> dict[str, Any]:
        """§12: a call (a Task of subtype Call, closed when held, its due date the call's
        day, completed at its end), a task (subtype Task, due on its date) or a meeting (an
        Event). WhatId is the deal, else the account; AccountId the account (Salesforce
        derives it from WhatId). A deleted one (§4: in the recycle bin) keeps its fields."""
        what = (record_id("deals", activity.deal_id) if activity.deal_id else
                record_id("accounts", activity.account_id) if activity.account_id else None)
        row: dict[str, Any] = {
            "Id": activity_id(activity.kind, activity.id), "Subject": activity.subject,
            "OwnerId": self.rep_id(activity.owner_id), "WhatId": what, "WhoId": None,
            "AccountId": record_id("accounts", activity.account_id)
            if activity.account_id else None,
            "ActivityDate": activity.start.date(), "IsDeleted": deleted_at is not None,
            "IsArchived": False, "CreatedById": self.rep_id(activity.owner_id),
            "CreatedDate": activity.created_at,
            "LastModifiedDate": deleted_at or activity.modified_at,
            "SystemModstamp": deleted_at or activity.modified_at}
        seconds = activity.duration_seconds or 0
        if activity.kind == "meeting":
            end = activity.start + timedelta(seconds=seconds)
            return {**row, "StartDateTime": activity.start, "EndDateTime": end,
                    "ActivityDateTime": activity.start,
                    "DurationInMinutes": Decimal(seconds // 60), "IsAllDayEvent": False,
                    "EventSubtype": "Event"}
        call = activity.kind == "call"
        completed = activity.completed_at if not call else \
            activity.start + timedelta(seconds=seconds) if activity.done else None
        return {**row, "Status": "Completed" if activity.done else "Not Started",
                "IsClosed": activity.done, "Priority": "Normal",
                "CompletedDateTime": completed, "TaskSubtype": "Call" if call else "Task",
                "CallDurationInSeconds": Decimal(seconds) if call else None,
                "CallType": "Outbound" if call else None, "CallDisposition": None}

    def organization(self, org_id: str) -> dict[str, Any]:
        return {"Id": org_id, "Name": self.company.name,
                "DefaultCurrencyIsoCode": self.company.home_currency,
                "OrganizationType": "Enterprise Edition", "IsSandbox": False,
                "CreatedDate": self.created, "LastModifiedDate": self.created,
                "SystemModstamp": self.created}

    def currency_types(self) -> list[dict[str, Any]]:
        """§5: rates in units per one corporate unit, the corporate currency at 1."""
        codes = sorted({self.company.home_currency, *self.company.currencies})
        return [{"Id": sf_id(PREFIX["CurrencyType"], i), "IsoCode": code,
                 "ConversionRate": Decimal(1) if code == self.company.home_currency
                 else self.company.currencies[code],
                 "DecimalPlaces": Decimal(0 if code == "JPY" else 2), "IsActive": True,
                 "IsCorporate": code == self.company.home_currency,
                 "CreatedDate": self.created, "LastModifiedDate": self.created,
                 "SystemModstamp": self.created} for i, code in enumerate(codes, 1)]


def dated_rates(company: Company, first: date, last: date) -> list[dict[str, Any]]:
    """§5 advanced currency management: one range per calendar month from `first` to `last`
    per non-corporate currency (the org rate moved by -3%..+3% in a fixed cycle), an open
    range before and after; corporate currency ranges at 1."""
    rows: list[dict[str, Any]] = []
    months: list[date] = []
    cursor = first.replace(day=1)
    while cursor <= last:
        months.append(cursor)
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    stamp = datetime.combine(first, datetime.min.time(), UTC)
    number = 1
    for code in sorted(company.currencies):
        base = Decimal(1) if code == company.home_currency else company.currencies[code]
        starts = [FAR_PAST, *months]
        for i, start in enumerate(starts):
            following = starts[i + 1] if i + 1 < len(starts) else FAR_FUTURE
            step = Decimal((i % 7) - 3) / 100
            rate = base if code == company.home_currency else \
                (base * (1 + step)).quantize(Decimal("0.000001"))
            rows.append({"Id": sf_id(PREFIX["DatedConversionRate"], number), "IsoCode": code,
                         "ConversionRate": rate, "StartDate": start, "NextStartDate": following,
                         "CreatedDate": stamp, "LastModifiedDate": stamp,
                         "SystemModstamp": stamp})
            number += 1
    return rows


def periods(first_year: int, last_year: int, created: datetime) -> list[dict[str, Any]]:
    """§8 Period: the calendar fiscal year's months, quarters and years."""
    rows: list[dict[str, Any]] = []
    number = 1

    def add(kind: str, start: date, end: date, index: int) -> None:
        nonlocal number
        rows.append({"Id": sf_id(PREFIX["Period"], number), "Type": kind, "StartDate": start,
                     "EndDate": end, "Number": Decimal(index), "FiscalYearSettingsId": None,
                     "CreatedDate": created, "LastModifiedDate": created,
                     "SystemModstamp": created})
        number += 1

    for year in range(first_year, last_year + 1):
        add("Year", date(year, 1, 1), date(year, 12, 31), 1)
        for quarter in range(4):
            start = date(year, quarter * 3 + 1, 1)
            end = (date(year + 1, 1, 1) if quarter == 3 else date(year, quarter * 3 + 4, 1))
            add("Quarter", start, end - timedelta(days=1), quarter + 1)
        for month in range(1, 13):
            start = date(year, month, 1)
            end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
            add("Month", start, end - timedelta(days=1), month)
    return rows


def forecasting_types(created: datetime) -> list[dict[str, Any]]:
    """§8: the opportunity revenue and quantity forecast types."""
    return [{"Id": sf_id(PREFIX["ForecastingType"], n), "DeveloperName": name,
             "MasterLabel": label, "IsActive": True, "IsAmount": amount,
             "IsQuantity": not amount, "CreatedDate": created, "LastModifiedDate": created,
             "SystemModstamp": created}
            for n, name, label, amount in ((1, "OpportunityRevenue", "Opportunities - Revenue",
                                            True),
                                           (2, "OpportunityQuantity",
                                            "Opportunities - Quantity", False))]
