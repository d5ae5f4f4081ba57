"""What the HubSpot sandbox shares with the connector: hosts, paths, limits, property
lists, time formats and the v3 webhook signature (docs/vendors/hubspot.md)."""

import base64
import hashlib
import hmac
from datetime import UTC, date, datetime

BASE_URL = "https://api.hubapi.com"  # §1: one host for every account
HOSTS = ("api.hubapi.com",)
TOKEN_PATH = "/oauth/2026-03/token"  # §1: the current token endpoint
LEGACY_TOKEN_PATH = "/oauth/v1/token"  # §1: deprecated, works until 2027-02-16
OBJECTS = "/crm/v3/objects"
OWNERS_PATH = "/crm/v3/owners/"
PIPELINES_PATH = "/crm/v3/pipelines/deals"
COMPANY_CURRENCY_PATH = "/settings/v3/currencies/company-currency"
EXCHANGE_RATES_PATH = "/settings/v3/currencies/exchange-rates/current"
ASSOCIATIONS = "/crm/v4/associations/{from_type}/{to_type}/batch/read"  # §2
GOALS = "goal_targets"

LIST_LIMIT = 100  # §2: page size of the list endpoints
OWNERS_LIMIT = 500  # §4
SEARCH_LIMIT = 200  # §3
SEARCH_CAP = 10_000  # §3: results one search query can page through; past it: 400
SEARCH_PER_SECOND = 5  # §3: per account
BATCH_LIMIT = 100  # §2, §9: inputs per batch call
ASSOCIATION_BATCH_LIMIT = 1000  # §2: ids per association batch read (since 2025-02-10)
HISTORY_BATCH_LIMIT = 50  # §11: inputs per batch read asking for property histories
HISTORY_LIMIT_MESSAGE = ("The maximum number of inputs supported in a batch request for "
                         "property histories is 50")  # §11
APP_URL = "https://app.hubspot.com"  # §12: the web app (EU accounts: app-eu1.hubspot.com)
DEAL_TYPE_ID = "0-3"  # §12: the object type id of deals in record URLs
MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18  # §3
MAX_SEARCH_BODY = 3000  # §3: characters
BURST_WINDOW = 10.0  # §7: seconds of the burst limit
TOKEN_TTL = 1800  # §1: seconds an OAuth access token lives
SIGNATURE_MAX_AGE_MS = 5 * 60 * 1000  # §8

MODIFIED = "hs_lastmodifieddate"
OBJECT_ID = "hs_object_id"
MERGED_IDS = "hs_merged_object_ids"
DEAL_PROPERTIES = ("dealname", "amount", "deal_currency_code", "amount_in_home_currency",
                   "dealstage", "pipeline", "closedate", "hubspot_owner_id", "createdate",
                   MODIFIED, OBJECT_ID, MERGED_IDS)  # §2
COMPANY_PROPERTIES = ("name", "industry", "hubspot_owner_id", "createdate", MODIFIED,
                      OBJECT_ID, MERGED_IDS)  # §2
# §13: the activity objects synced, each with its properties; the activities stream reads
# them in this order
TIMESTAMP = "hs_timestamp"
ACTIVITY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "calls": (TIMESTAMP, "hs_call_title", "hs_call_duration", "hs_call_status",
              "hs_call_direction", "hubspot_owner_id", "hs_createdate", MODIFIED, OBJECT_ID),
    "meetings": (TIMESTAMP, "hs_meeting_title", "hs_meeting_start_time", "hs_meeting_end_time",
                 "hs_meeting_outcome", "hubspot_owner_id", "hs_createdate", MODIFIED,
                 OBJECT_ID),
    "tasks": (TIMESTAMP, "hs_task_subject", "hs_task_status", "hs_task_type",
              "hs_task_completion_date", "hubspot_owner_id", "hs_createdate", MODIFIED,
              OBJECT_ID),
    "notes": (TIMESTAMP, "hs_note_body", "hubspot_owner_id", "hs_createdate", MODIFIED,
              OBJECT_ID),
}
ACTIVITY_SCOPE = "crm.objects.contacts.read"  # §13: what the activity endpoints ask for
OBJECT_TYPES = {"deals": "deals", "0-3": "deals", "companies": "companies",
                "0-2": "companies", "calls": "calls", "0-48": "calls", "meetings": "meetings",
                "0-47": "meetings", "tasks": "tasks", "0-27": "tasks", "notes": "notes",
                "0-46": "notes"}  # names and object type ids of the objects synced (§13)
# §8: characters the validation page says to decode in the URI before signing
URI_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
              "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def iso_ms(moment: datetime) -> str:
    """HubSpot's datetime form (§2): UTC with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # no +00:00


def day_iso(day: date) -> str:
    """A date-only property (§2): midnight UTC of that day."""
    return f"{day.isoformat()}T00:00:00Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 datetime (§2) or epoch milliseconds as digits (§3 filter values)."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def signing_uri(uri: str) -> str:
    """The URI as §8 signs it: the listed URL-encoded characters decoded."""
    for encoded, plain in URI_DECODE.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """§8: base64(HMAC-SHA256(client secret, method + uri + body + timestamp))."""
    message = method.upper().encode() + signing_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
