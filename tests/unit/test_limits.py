"""In-process vendor budgets (connectors.http.LocalLimits) and how ApiClient uses them."""

import asyncio

import httpx
import pytest
import respx

from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.zoho import ZohoConfig, ZohoConnector, ZohoSecrets

FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01)


class Counting:
    """A transport that counts the requests in flight at once (each takes `delay`)."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay, self.now, self.most, self.calls = delay, 0, 0, 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.calls += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.now -= 1
        return httpx.Response(200, json={})


async def _hammer(limits: LocalLimits, counting: Counting, keys: list[str | None], cap: int,
                  calls: int = 12) -> None:
    async def one(key: str | None) -> None:
        transport = httpx.MockTransport(counting.handle)
        async with build_client(transport=transport) as client:
            api = ApiClient(client, max_in_flight=cap, retry=FAST, limits=limits, key=key)
            await asyncio.gather(*(api.send("GET", "https://crm.test/x", lambda r: r)
                                   for _ in range(calls)))

    await asyncio.gather(*(one(key) for key in keys))


async def test_two_api_clients_of_one_connection_share_its_in_flight_cap():
    counting = Counting()
    await _hammer(LocalLimits(), counting, ["connection:1", "connection:1"], cap=3)
    assert counting.calls == 24 and counting.most == 3


async def test_other_connections_and_keyless_clients_have_caps_of_their_own():
    counting = Counting()
    await _hammer(LocalLimits(), counting, ["connection:1", "connection:2"], cap=3)
    assert counting.most == 6
    counting = Counting()
    await _hammer(LocalLimits(), counting, [None, None], cap=2)
    assert counting.most == 4


async def test_an_uncapped_call_does_not_wait_for_the_cap():
    release = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            await release.wait()
        return httpx.Response(200, json={})

    async with build_client(transport=httpx.MockTransport(handle)) as client:
        api = ApiClient(client, max_in_flight=1, retry=FAST, limits=LocalLimits(), key="c")
        slow = asyncio.ensure_future(api.send("GET", "https://crm.test/slow", lambda r: r))
        await asyncio.sleep(0.01)
        token = await asyncio.wait_for(
            api.send("POST", "https://crm.test/token", lambda r: r.status_code, capped=False), 1)
        assert token == 200 and not slow.done()
        with pytest.raises(TimeoutError):  # a capped call does wait
            await asyncio.wait_for(api.send("GET", "https://crm.test/x", lambda r: r), 0.05)
        release.set()
        await slow


async def test_take_keeps_to_the_calls_per_window():
    limits, loop = LocalLimits(), asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await limits.take("iface", 3, 0.2)
    assert loop.time() - start < 0.1  # within the budget: no wait
    await limits.take("iface", 3, 0.2)
    assert loop.time() - start >= 0.19  # the fourth waits for the first to leave the window
    await limits.take("other", 3, 0.2)  # another interface has its own budget
    assert loop.time() - start < 0.3


async def test_a_place_dated_when_its_call_ended_keeps_the_next_a_window_behind():
    limits, loop = LocalLimits(), asyncio.get_running_loop()
    start = loop.time()
    places = [await limits.take("search", 2, 0.2) for _ in range(2)]
    await asyncio.sleep(0.1)  # the calls take 0.1 s: the vendor may have got them just now
    await limits.restamp("search", 0.2, places)
    await limits.take("search", 2, 0.2)
    assert loop.time() - start >= 0.29  # a window after the calls ended, not after 0.2
    late = await limits.take("late", 1, 0.05)
    await asyncio.sleep(0.1)  # a call longer than the window: its place had left it
    await limits.restamp("late", 0.05, [late])
    before = loop.time()
    await limits.take("late", 1, 0.05)
    assert loop.time() - before >= 0.04  # dated again at its end, it counts again


async def test_tokens_expire_and_are_dropped_only_when_unchanged():
    limits = LocalLimits()
    await limits.put_token("k", {"value": "a"}, 0.05)
    await limits.put_token("never", {"value": "x"}, 0)  # not usable: not cached
    assert await limits.get_token("k") == {"value": "a"}
    assert await limits.get_token("never") is None
    await limits.drop_token("k", {"value": "old"})  # replaced meanwhile: kept
    assert await limits.get_token("k") == {"value": "a"}
    await limits.drop_token("k", {"value": "a"})
    assert await limits.get_token("k") is None
    await limits.put_token("k", {"value": "b"}, 0.05)
    await asyncio.sleep(0.06)
    assert await limits.get_token("k") is None


async def test_the_lock_lets_one_task_in_at_a_time():
    limits, inside, most = LocalLimits(), [0], [0]

    async def work() -> None:
        async with limits.lock("token:k"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            await asyncio.sleep(0.01)
            inside[0] -= 1

    await asyncio.gather(*(work() for _ in range(5)))
    assert most[0] == 1


@respx.mock
async def test_two_zoho_clients_of_one_process_refresh_the_token_once():
    limits = LocalLimits()  # the process's own, held by its job context
    token = respx.post("https://accounts.zoho.eu/oauth/v2/token").respond(json={
        "access_token": "tok", "api_domain": "https://www.zohoapis.eu", "expires_in": 3600})
    respx.get("https://www.zohoapis.eu/crm/v8/org").respond(json={"org": [{}]})
    config = ZohoConfig(dc="eu")
    secrets = ZohoSecrets(client_id="id", client_secret="secret", refresh_token="refresh")

    async def one() -> None:
        async with build_client() as client:
            api = ApiClient(client, retry=FAST, key="connection:1", limits=limits)
            await asyncio.gather(*(ZohoConnector(config, secrets, api).get("/org")
                                   for _ in range(3)))

    await asyncio.gather(one(), one())
    assert token.call_count == 1
    assert limits.tokens and all("secret" not in key and "refresh" not in key
                                 for key in limits.tokens)
