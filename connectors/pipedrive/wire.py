"""What the Pipedrive connector and its sandbox share: paths, limits, header names, time
formats and HTTP Basic credentials (docs/vendors/pipedrive.md §n)."""

import base64
import re
from datetime import UTC, datetime
from typing import Any

V1 = "/api/v1"  # §1: {company domain or api_domain}/api/v1
V2 = "/api/v2"
TOKEN_PATH = "/oauth/token"  # §1: on https://oauth.pipedrive.com
OAUTH_HOST = "oauth.pipedrive.com"
DEFAULT_OAUTH_URL = f"https://{OAUTH_HOST}"
# Where credentials and tokens may go (connectors/endpoints.py): the company domains and the
# OAuth api_domain are subdomains of pipedrive.com (§1).
VENDOR_HOSTS = ("*.pipedrive.com", OAUTH_HOST)

MAX_LIMIT = 500  # §2: v2 and v1 lists serve at most 500 per page
BURST_WINDOW = 2.0  # §6: the rolling rate-limit window, seconds
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
DAILY_LEFT = "x-daily-ratelimit-token-remaining"  # §6: observed, undocumented, optional
WRITES_LEFT = "x-daily-requests-left"  # §6: POST/PUT fair use, API-token calls only
FAIR_USE_WRITES = 10_000  # §6: POST/PUT requests per user per day
TEAMS_PATH = "/legacyTeams"  # §10: /v1/teams moved here on 2022-07-11
FLOW_ITEMS = "dealChange"  # §11: the deal updates that are field changes
ACTIVITY_TYPES_PATH = "/activityTypes"  # §12 (v1: no v2 list of activity types)
CUSTOM_FIELD_KEY = re.compile(r"^[0-9a-f]{40}$")  # §2: custom fields are 40-char hashes
DEAL_STATUSES = ("open", "won", "lost", "deleted")  # §2, §4
WEBHOOK_ACTIONS = ("create", "change", "delete")  # §5 (v2)
GOAL_INTERVALS = ("weekly", "monthly", "quarterly", "yearly")  # §7


def deal_page(base: str, deal_id: str) -> str:
    """§13: a deal's page in the web app, `{company domain}/deal/{id}`."""
    return f"{base.rstrip('/')}/deal/{deal_id}"


def v1_time(moment: datetime) -> str:
    """§2: v1 timestamps, "YYYY-MM-DD HH:MM:SS" in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def v2_time(moment: datetime) -> str:
    """§2: v2 timestamps, RFC 3339 in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A v1 or v2 timestamp (or a 10-digit epoch, §5) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text[:10]), UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def basic_header(user: str, password: str) -> str:
    """§5: the Authorization header Pipedrive sends with a webhook's credentials."""
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def read_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, colon, password = base64.b64decode(header[6:].strip(),
                                                 validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if colon else None
