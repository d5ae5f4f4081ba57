"""What the Acme API and its sandbox agree on: the path prefix, the code of a refused
token, and the one timestamp format (UTC, whole seconds: text order is time order)."""

from datetime import UTC, datetime

API = "/v1"
UNAUTHORIZED = "unauthorized"
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP)


def parse_stamp(text: str) -> datetime:
    """A timestamp of the API as an aware datetime; ValueError for anything else."""
    return datetime.strptime(text, STAMP).replace(tzinfo=UTC)
