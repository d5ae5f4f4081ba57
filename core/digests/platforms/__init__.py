"""The chat platforms a digest can go to, one module each: its message format, how a
request is signed, what its answers mean and its limits (docs/vendors/chat.md).
These are chat robots, not CRMs: they live here, outside connectors/."""

from collections.abc import Mapping
from datetime import datetime
from types import ModuleType
from typing import Protocol, cast

from core.digests.content import Digest
from core.digests.platforms import dingtalk, feishu, slack, wecom
from core.digests.render import Body, Outcome


class Platform(Protocol):
    NAME: str
    HOSTS: tuple[str, ...]
    """The vendor's hosts a webhook URL may point to (others: CRMSYNC_ALLOW_ENDPOINTS)."""
    RATE: tuple[int, float]
    """At most this many messages per this many seconds per robot."""
    SIGNED: bool
    """Whether the robot can require a signature (a secret besides the URL)."""

    def message(self, digest: Digest) -> Body: ...

    def request(self, url: str, secret: str | None, body: Body, now: datetime,
                idempotency: str) -> tuple[str, Body]: ...

    def outcome(self, status: int, headers: Mapping[str, str], text: str) -> Outcome: ...

    def check_url(self, url: str) -> None: ...


PLATFORMS: dict[str, Platform] = {
    m.NAME: cast(Platform, m) for m in (wecom, dingtalk, feishu, slack)
    if isinstance(m, ModuleType)}


def platform(name: str) -> Platform:
    """The platform called `name`; ValueError naming the known ones."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}") from None
