"""What the Salesforce sandbox shares with the connector: paths, error codes, header
names, the wire forms of times, and base64url for JWTs (docs/vendors/salesforce.md)."""

import base64
import re
from datetime import UTC, date, datetime

API_VERSION = "62.0"  # §1: every call goes to {instance_url}/services/data/vXX.X
DATA_PATH = f"/services/data/v{API_VERSION}"
TOKEN_PATH = "/services/oauth2/token"  # §1
LOGIN_URL = "https://login.salesforce.com"  # §1: production and Developer Edition orgs
TEST_LOGIN_URL = "https://test.salesforce.com"  # §1: sandboxes
SHARED_LOGINS = (LOGIN_URL, TEST_LOGIN_URL)  # §1: login hosts of every org
RECORD_PAGE = "/lightning/r/{object}/{id}/view"  # §10: a record in Lightning Experience
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # §1
JWT_LIFETIME = 180  # §1: exp within 3 minutes

# §7 error codes
INVALID_SESSION = "INVALID_SESSION_ID"  # §1: HTTP 401
REQUEST_LIMIT = "REQUEST_LIMIT_EXCEEDED"  # §6: HTTP 403
TOTAL_REQUESTS = "TotalRequests Limit exceeded."  # §6: the daily allocation
CONCURRENT_REQUESTS = "ConcurrentPerOrgLongTxn Limit exceeded."  # §6 (guess: wording)
QUERY_TIMEOUT = "QUERY_TIMEOUT"  # §2
INVALID_QUERY_LOCATOR = "INVALID_QUERY_LOCATOR"  # §2
INVALID_TYPE = "INVALID_TYPE"
INVALID_FIELD = "INVALID_FIELD"
MALFORMED_QUERY = "MALFORMED_QUERY"
NOT_FOUND = "NOT_FOUND"
ENTITY_IS_DELETED = "ENTITY_IS_DELETED"
INSUFFICIENT_ACCESS = "INSUFFICIENT_ACCESS_OR_READONLY"  # §8: no Manage Quotas, own quota
FIELD_INTEGRITY = "FIELD_INTEGRITY_EXCEPTION"
INVALID_REPLICATION_DATE = "INVALID_REPLICATION_DATE"  # §4 getDeleted window

LIMIT_HEADER = "Sforce-Limit-Info"  # §6: api-usage=used/max
QUERY_OPTIONS_HEADER = "Sforce-Query-Options"  # §2: batchSize=N
BATCH_MIN, BATCH_MAX = 200, 2000  # §2
RECYCLE_BIN_DAYS = 15  # §4: queryAll and getDeleted reach 15 days back
COLLECTION_MAX = 200  # §7: records per composite sObject collection call

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def api_usage(header: str | None) -> tuple[int, int] | None:
    """(used, max) from a Sforce-Limit-Info header (§6), when it carries api-usage."""
    found = _USAGE.search(header or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def format_datetime(moment: datetime) -> str:
    """§4: a dateTime as Salesforce answers it, `2026-03-31T09:00:01.000+0000` (UTC)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def soql_datetime(moment: datetime) -> str:
    """§2: a dateTime literal for SOQL, unquoted, `2026-03-31T09:00:01Z` (whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str) -> datetime:
    """A dateTime as answered (`...000+0000`) or written (`...Z`, `+hh:mm`), aware."""
    value = text.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", value):  # +0000 -> +00:00
        value = f"{value[:-2]}:{value[-2:]}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"dateTime {text!r} has no zone")
    return moment.astimezone(UTC)


def parse_date(text: str) -> date:
    return date.fromisoformat(text.strip()[:10])


def b64url(data: bytes) -> str:
    """base64url without padding (JWT segments, RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
