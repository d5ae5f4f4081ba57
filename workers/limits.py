"""Vendor budgets shared through Redis by every crmsync process (connectors.http.SharedLimits).

With CRMSYNC_REDIS_URL set, API replicas, workers and `crmsync sync` share one in-flight
cap per connection, one call budget per vendor interface and one access token per
credentials, so together they stay within what the vendor allows (docs/vendors/zoho.md §1, §7;
docs/vendors/fxiaoke.md §1.2, §6), and the turns of syncs of one vendor account
(workers.jobs.account_turn). Each check is one Lua script (atomic) timed by the Redis
server's clock. Every key expires: a process killed mid-call leaks its in-flight slot for at most
`lease` seconds, a refresh lock for at most `lock_ttl` and a sync's turn for at most the
lease its job gave. Keys carry hashes, never
secrets; token values are encrypted with the app's SecretBox (CRMSYNC_SECRET_KEY).
"""

import asyncio
import math
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from redis.asyncio import Redis

from connectors.http import WAITING_ANSWERED, Memo
from core.security import SecretBox

PREFIX = "crmsync:limits:"
TOKEN_COPY_SECONDS = 60.0
"""How long a process uses its decrypted copy of a shared access token before it reads
Redis again (get_token): a job's every request used to read and decrypt it."""
COPIES_MAX = 4096  # tokens a process keeps copies of

# KEYS[1] slots (zset member -> lease end, ms); ARGV limit, lease ms, member. 1 if taken.
_SLOT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] calls (zset member -> time, us); ARGV limit, window us, member.
# 0 if the call fits (and is recorded), else the microseconds until the oldest call leaves.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

# KEYS[1] calls (as in _TAKE); ARGV the places to date now (re-added if out of the window).
_RESTAMP = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""

# KEYS[1] turns (member -> lease end, ms), KEYS[2] the line (member -> ticket), KEYS[3] the
# line's places (member -> end, ms), KEYS[4] the members sent back to wait (member ->
# ticket; unlike a place, kept until the member has a turn or leaves, or the account is
# idle for the lease); ARGV limit, lease ms, member, ticket, pace ms.
# {0, 0} if the member has a turn (taken or renewed), else {its place in the line (1: next),
# ms after which to ask again}: SharedLimits.admit.
_ADMIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local limit, lease, pace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
local ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. ARGV[4])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or limit - redis.call('ZCARD', KEYS[1]) > ahead then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {0, 0}
end
local wait = math.min(math.floor(lease / 2), pace * math.ceil((ahead + 1) / limit))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[3], now + wait + pace, ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[2], lease + pace)
redis.call('PEXPIRE', KEYS[3], lease + pace)
redis.call('PEXPIRE', KEYS[4], lease + pace)
return {ahead + 1, wait}
"""

# KEYS as in _ADMIT; ARGV the member, how many to answer. Its turn and place given back;
# the members sent back to wait, lowest tickets first: SharedLimits.leave.
_LEAVE = """
for i = 1, 4 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[2]) - 1)
"""

# Delete KEYS[1] only if it still holds ARGV[1] (a lock's owner, a token's ciphertext).
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLimits:
    """connectors.http.SharedLimits in Redis: the same budgets for every process."""

    def __init__(self, url: str, box: SecretBox, *, lease: float = 120.0,
                 lock_ttl: float = 60.0, poll: float = 0.02) -> None:
        self.url, self.box = url, box
        self.memo = Memo()  # metadata stays per process: it holds live objects
        self._copies: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (expiry, token)
        self.lease, self.lock_ttl, self.poll = lease, lock_ttl, poll
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary())

    @property
    def redis(self) -> Redis:
        """This event loop's client (a redis.asyncio connection belongs to one loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = Redis.from_url(self.url)
        return client

    async def _eval(self, script: str, key: str | Sequence[str], *args: str | int | bytes
                    ) -> Any:
        keys = [key] if isinstance(key, str) else list(key)
        values = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
        pending = self.redis.eval(script, len(keys), *keys, *values)
        return await cast(Awaitable[Any], pending)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    @asynccontextmanager
    async def slot(self, key: str, limit: int) -> AsyncIterator[None]:
        name, member = PREFIX + key, secrets.token_hex(8)
        lease_ms = int(self.lease * 1000)
        while True:  # polled: slots free up in milliseconds, and a lease may just run out
            if await self._eval(_SLOT, name, limit, lease_ms, member):
                break
            await asyncio.sleep(self.poll)
        try:
            yield
        finally:
            await self.redis.zrem(name, member)

    async def take(self, key: str, limit: int, window: float) -> str:
        name, member = PREFIX + "rate:" + key, secrets.token_hex(8)
        while True:
            wait = int(await self._eval(_TAKE, name, limit, int(window * 1e6), member))
            if not wait:
                return member
            await asyncio.sleep(max(self.poll, wait / 1e6))

    async def restamp(self, key: str, window: float, places: Sequence[str]) -> None:
        if places:
            await self._eval(_RESTAMP, PREFIX + "rate:" + key, math.ceil(window * 1000),
                             *places)

    async def admit(self, key: str, limit: int, member: str, ticket: int, lease: float,
                    pace: float) -> tuple[int, float]:
        place, wait_ms = await self._eval(_ADMIT, self._turn_keys(key), limit,
                                          max(1, int(lease * 1000)), member, ticket,
                                          max(1, int(pace * 1000)))
        return int(place), int(wait_ms) / 1000

    async def leave(self, key: str, member: str) -> list[str]:
        waiting = await self._eval(_LEAVE, self._turn_keys(key), member, WAITING_ANSWERED)
        return [m.decode() if isinstance(m, bytes) else m for m in waiting]

    @staticmethod
    def _turn_keys(key: str) -> tuple[str, str, str, str]:
        name = PREFIX + "turns:" + key
        return name, name + ":line", name + ":places", name + ":waiting"

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        name, owner = PREFIX + "lock:" + key, secrets.token_hex(8)
        while True:
            if await self.redis.set(name, owner, nx=True, px=int(self.lock_ttl * 1000)):
                break
            await asyncio.sleep(self.poll)
        try:
            yield
        finally:
            await self._eval(_DELETE_IF, name, owner)

    async def get_token(self, key: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The shared token, or this process's copy of it: read from Redis (and decrypted)
        at most once per TOKEN_COPY_SECONDS per key, never past the shared one's expiry.
        A token another process replaced meanwhile is still the vendor's until it expires;
        one the vendor refuses is read `fresh` (CachedTokenAuth), then replaced."""
        now = time.monotonic()
        expiry, copy = self._copies.get(key, (0.0, None))
        if not fresh and copy is not None and now < expiry:
            return copy
        self._copies.pop(key, None)
        name = PREFIX + "token:" + key
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.pttl(name)
            sealed, left_ms = await pipe.execute()
        if sealed is None:
            return None
        try:
            value = self.box.open(sealed.decode())
        except ValueError:  # sealed with another CRMSYNC_SECRET_KEY: fetch a new token
            return None
        self._copy(key, value, left_ms / 1000 if left_ms and left_ms > 0 else 0.0)
        return value

    def _copy(self, key: str, value: dict[str, Any], ttl: float) -> None:
        now = time.monotonic()
        if len(self._copies) >= COPIES_MAX:  # expired ones first, then the oldest
            for old in [k for k, (expiry, _) in self._copies.items() if expiry <= now]:
                del self._copies[old]
            while len(self._copies) >= COPIES_MAX:
                del self._copies[next(iter(self._copies))]
        if ttl > 0:
            self._copies[key] = (now + min(ttl, TOKEN_COPY_SECONDS), value)

    async def put_token(self, key: str, value: dict[str, Any], ttl: float) -> None:
        if ttl > 0:
            await self.redis.set(PREFIX + "token:" + key, self.box.seal(value),
                                 px=max(1, int(ttl * 1000)))
            self._copies.pop(key, None)
            self._copy(key, value, ttl)

    async def drop_token(self, key: str, value: dict[str, Any]) -> None:
        if self._copies.get(key, (0.0, None))[1] == value:
            del self._copies[key]
        name = PREFIX + "token:" + key
        sealed = await self.redis.get(name)
        if sealed is not None and self._opens_to(sealed, value):
            await self._eval(_DELETE_IF, name, sealed)

    def _opens_to(self, sealed: bytes, value: dict[str, Any]) -> bool:
        try:
            return self.box.open(sealed.decode()) == value
        except ValueError:
            return True  # unreadable here: drop it as well
