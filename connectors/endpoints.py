"""Where a connection may send its credentials: the one host policy.

A URL that receives credentials (a token endpoint, the API host a token is used on) is
accepted when its host is

1. one of the vendor's documented hosts (`vendor` patterns given by the connector),
   over https on the default port; or
2. listed explicitly by the operator (CRMSYNC_ALLOW_ENDPOINTS: `host` or `host:port`,
   IPv6 as `[::1]` or `[::1]:port`): accepted whatever it resolves to, loopback and
   private addresses included; or
3. matched by an operator wildcard (`*.example.com`: subdomains only; `*`: any host):
   accepted only when every address the name resolves to is public, so loopback,
   private, link-local and other special addresses (IPv4 and IPv6) are refused unless
   the host is listed explicitly.

An entry without a port matches every port. Vendor hosts are not resolved (their DNS
is the vendor's); wildcard-matched names are resolved on every check (the verdict is
kept for a minute).
"""

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

from core.errors import ConfigError

SETTING = "CRMSYNC_ALLOW_ENDPOINTS"
VERDICT_TTL = 60.0  # seconds a wildcard host's address check is reused


class EndpointRefused(ConfigError):
    """A URL that would receive credentials is not allowed (the message says how to allow)."""


@dataclass(frozen=True)
class Endpoint:
    """A URL a connection sends credentials to, and the vendor's documented host patterns."""

    url: str
    vendor: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    host: str  # lower case; "*" or "*.suffix" for wildcards; IPv6 compressed, no brackets
    port: int | None

    @property
    def explicit(self) -> bool:
        return "*" not in self.host

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        return _host_matches(self.host, host)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _parse_entry(text: str) -> _Entry:
    raw, port = text.strip(), None
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket:
            raise ValueError(f"{SETTING}: {text!r} lacks its closing ]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{SETTING}: cannot read {text!r}")
            port = rest[1:]
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    else:
        host = raw
    host = _normal_host(host)
    label = host[2:] if host.startswith("*.") else host
    if not host or (host != "*" and ("*" in label or not _valid_host(label))):
        raise ValueError(f"{SETTING}: {text!r} is not a host, host:port, *.domain or *")
    if port is None:
        return _Entry(host, None)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{SETTING}: {text!r} has a bad port")
    return _Entry(host, int(port))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return all(0 < len(lbl) < 64 and lbl.replace("-", "").isalnum() and lbl.isascii()
               for lbl in labels)


def _unsafe(address: str) -> bool:
    """True for loopback, private, link-local, unspecified, reserved and multicast addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


class EndpointPolicy:
    """The operator's allow-list (CRMSYNC_ALLOW_ENDPOINTS) applied to credential URLs.

    `EndpointPolicy()` allows the vendors' documented hosts only."""

    def __init__(self, entries: Iterable[_Entry] = ()) -> None:
        self.entries = tuple(entries)
        self._verdicts: dict[tuple[str, int], tuple[float, str | None]] = {}

    @staticmethod
    def parse(text: str | None) -> "EndpointPolicy":
        """The policy for a comma-separated allow-list; ValueError names a bad entry."""
        return _parsed(text or "")

    def check(self, url: str, vendor: Sequence[str]) -> None:
        """Raise EndpointRefused unless `url` may receive credentials (resolves names)."""
        host, port, resolve = self._decide(url, vendor)
        if resolve and self._verdict(host, port) is None:
            try:
                infos: Any = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:  # UnicodeError: not an IDNA name
                infos = exc
            self._record(host, port, infos)
        if resolve:
            self._enforce(host, port)

    async def acheck(self, url: str, vendor: Sequence[str]) -> None:
        """check() for async code: the name is resolved without blocking the event loop."""
        host, port, resolve = self._decide(url, vendor)
        if resolve and self._verdict(host, port) is None:
            try:
                infos: Any = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:  # UnicodeError: not an IDNA name
                infos = exc
            self._record(host, port, infos)
        if resolve:
            self._enforce(host, port)

    def _decide(self, url: str, vendor: Sequence[str]) -> tuple[str, int, bool]:
        """(host, port, whether its addresses must be checked); raises if not allowed."""
        try:
            parsed = httpx.URL(url)
            host = _normal_host(parsed.host)  # IDNA is decoded here
        except (httpx.InvalidURL, TypeError, UnicodeError):
            raise EndpointRefused(f"{url!r} is not a URL") from None
        if parsed.scheme not in ("http", "https") or not host:
            raise EndpointRefused(f"{url!r} is not an http(s) URL")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        shown = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if any(e.explicit and e.matches(host, port) for e in self.entries):
            return host, port, False
        if any(_host_matches(p, host) for p in vendor):
            if parsed.scheme == "https" and port == 443:
                return host, port, False
            if not any(e.matches(host, port) for e in self.entries):
                raise EndpointRefused(f"{parsed.scheme}://{shown} is not allowed: the "
                                      "vendor's hosts are reached over https on port 443")
        if any(e.matches(host, port) for e in self.entries):
            return host, port, True
        raise EndpointRefused(
            f"{shown} is not one of the vendor's documented hosts; to send credentials "
            f"there, allow it with {SETTING}={host if ':' not in host else f'[{host}]'}")

    def _verdict(self, host: str, port: int) -> str | None:
        """"" (allowed) or the refusal, while fresh; None when the name must be resolved."""
        expiry, error = self._verdicts.get((host, port), (0.0, ""))
        return error if time.monotonic() < expiry else None

    def _record(self, host: str, port: int, infos: Any) -> None:
        if isinstance(infos, (OSError, UnicodeError)):
            error = f"{host} cannot be resolved ({type(infos).__name__}); it is not allowed"
        else:
            bad = [str(i[4][0]) for i in infos if _unsafe(str(i[4][0]))]
            error = (f"{host} resolves to {bad[0]}, not a public address (loopback, "
                     "private, link-local or reserved); "
                     f"list the host explicitly in {SETTING} to allow it") if bad else ""
        self._verdicts[(host, port)] = (time.monotonic() + VERDICT_TTL, error)

    def _enforce(self, host: str, port: int) -> None:
        error = self._verdict(host, port)
        if error:
            raise EndpointRefused(error)


@lru_cache(maxsize=32)
def _parsed(text: str) -> EndpointPolicy:
    return EndpointPolicy(_parse_entry(part) for part in text.split(",") if part.strip())


__all__ = ["SETTING", "Endpoint", "EndpointPolicy", "EndpointRefused"]
