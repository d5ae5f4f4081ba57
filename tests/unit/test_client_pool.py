"""connectors.http.ClientPool: a process's idle HTTP clients per connection, one job at a time."""

import asyncio

import httpx
import pytest

from connectors.http import ApiClient, ClientPool, build_client


def answering(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"Set-Cookie": "session=abc; Path=/"})

    return httpx.MockTransport(handle)


async def test_a_connection_s_next_job_reuses_its_client_emptied():
    seen: list[httpx.Request] = []
    pool, built = ClientPool(), []

    def build() -> httpx.AsyncClient:
        built.append(build_client(transport=answering(seen)))
        return built[-1]

    async with pool.lease(("c", 1), build) as first:
        api = ApiClient(first)
        await api.send("GET", "https://crm.test/a", lambda r: r)
        assert api.api_calls == 1 and first.cookies.get("session") == "abc"
    assert pool.idle(("c", 1)) == 1
    async with pool.lease(("c", 1), build) as second:
        assert second is first and len(built) == 1
        assert not second.cookies and second.event_hooks == {"request": [], "response": []}
        later = ApiClient(second)  # counts its own job's requests only
        await later.send("GET", "https://crm.test/b", lambda r: r)
        assert later.api_calls == 1 and api.api_calls == 1
    assert "cookie" not in seen[-1].headers  # nothing of the first job went with it
    await pool.aclose()
    assert first.is_closed and pool.idle(("c", 1)) == 0


async def test_jobs_at_once_and_other_connections_get_clients_of_their_own():
    pool = ClientPool()
    async with pool.lease("a", build_client) as one, pool.lease("a", build_client) as two, \
            pool.lease("b", build_client) as other:
        assert len({id(one), id(two), id(other)}) == 3
    assert pool.idle("a") == 2 and pool.idle("b") == 1
    async with pool.lease("b", build_client) as again:
        assert again is other
    await pool.aclose()


async def test_the_pool_is_bounded_and_closes_what_it_drops():
    pool = ClientPool(max_idle=2, per_key=1)
    clients = []
    async with pool.lease("a", build_client) as a1, pool.lease("a", build_client) as a2:
        clients += [a1, a2]
    assert pool.idle("a") == 1 and sum(c.is_closed for c in clients) == 1  # per key
    async with pool.lease("b", build_client) as b, pool.lease("c", build_client) as c:
        clients += [b, c]
    assert pool.idle("a") == 0 and pool.idle("b") == 1 and pool.idle("c") == 1  # oldest out
    assert sum(not c.is_closed for c in clients) == 2
    await pool.aclose()
    assert all(c.is_closed for c in clients)


async def test_clients_idle_past_the_keepalive_are_closed_when_the_next_comes_back():
    now = [0.0]
    pool = ClientPool(idle_for=30.0, clock=lambda: now[0])
    async with pool.lease("a", build_client) as a, pool.lease("b", build_client) as b:
        pass
    now[0] = 20.0
    async with pool.lease("b", build_client) as again:  # b's, used again: fresh from now
        assert again is b
    now[0] = 31.0  # a idle 31 s (its connections' keep-alive is over), b 11 s
    async with pool.lease("c", build_client) as c:
        pass
    assert a.is_closed and pool.idle("a") == 0
    assert not b.is_closed and not c.is_closed and pool.idle("b") == pool.idle("c") == 1
    now[0] = 100.0
    async with pool.lease("b", build_client) as b_again:  # taken before any sweep: reused
        assert b_again is b
    assert c.is_closed and pool.idle("c") == 0 and pool.idle("b") == 1
    await pool.aclose()
    assert b.is_closed


async def test_more_connections_than_the_old_bound_keep_their_clients():
    """300 connections a worker serves within a keep-alive each find their client again (the
    bound was 256: a job of every sixth connection built a new one and opened new
    connections to its CRM)."""
    pool, built = ClientPool(), []

    def build() -> httpx.AsyncClient:
        built.append(build_client())
        return built[-1]

    for _ in range(2):
        for connection in range(300):
            async with pool.lease(connection, build):
                pass
    assert len(built) == 300 and not any(c.is_closed for c in built)
    await pool.aclose()


async def test_a_failed_job_s_client_is_closed_and_none_kept_without_room():
    pool = ClientPool()
    with pytest.raises(RuntimeError):
        async with pool.lease("a", build_client) as failed:
            raise RuntimeError("the job failed")
    assert failed.is_closed and pool.idle("a") == 0
    none = ClientPool(max_idle=0)
    async with none.lease("a", build_client) as client:
        pass
    assert client.is_closed and none.idle("a") == 0


def test_an_ended_event_loop_s_clients_are_not_handed_out():
    pool = ClientPool()

    async def job() -> httpx.AsyncClient:
        async with pool.lease("a", build_client) as client:
            return client

    first = asyncio.run(job())
    second = asyncio.run(job())  # another event loop: the first one's client is unusable
    assert second is not first
    asyncio.run(pool.aclose())
