"""Helpers for the API tests: a running app over ASGI, API keys, seeded records."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastapi.routing
import httpx
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import Engine

from api.app import create_app
from connectors.http import RetryPolicy, tls_context
from core import store
from core.config import Settings
from core.db import session_scope
from core.models import ApiKey, Connection
from core.records import (
    AccountRecord,
    ActivityRecord,
    DealRecord,
    Deletion,
    StageRecord,
    UserRecord,
)
from core.security import SecretBox, hash_api_key, new_api_key
from core.types import ActivityType, utcnow
from workers.context import JobContext

SECRET = "zz-client-secret-never-echoed-42"
ZOHO_SECRETS = {"client_id": "1000.CLIENTID", "client_secret": SECRET,
                "refresh_token": "1000.refresh-token-value"}
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def zoho_rejects_every_client(request: httpx.Request) -> httpx.Response:
    """A stand-in for Zoho's accounts server that refuses the client (no network)."""
    return httpx.Response(200, json={"error": "invalid_client"})


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    engine: Engine
    admin_key: str

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(url, **kwargs)

    async def all_pages(self, url: str, **params: Any) -> list[dict[str, Any]]:
        """Every row of a list, following next_cursor."""
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await self.client.get(url, params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            rows += body["data"]
            cursor = body["next_cursor"]
            if cursor is None:
                return rows


def make_key(engine: Engine, scopes: str = "admin", *, revoked: bool = False) -> str:
    key = new_api_key()
    with session_scope(engine) as session:
        session.add(ApiKey(name=f"test {scopes}", key_hash=hash_api_key(key), prefix=key[:12],
                           scopes=scopes, revoked_at=utcnow() if revoked else None))
    return key


def real_http() -> httpx.AsyncHTTPTransport:
    """Real HTTP for the app's calls to a sandbox (`running_api(engine, real_http())`), with
    the process's one certificate verification context: httpx builds one per transport,
    about 40 ms of CPU."""
    return httpx.AsyncHTTPTransport(verify=tls_context())


@asynccontextmanager
async def running_api(
    engine: Engine, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Api]:
    """The app with its lifespan running, and a client holding an admin key."""
    secret_key = Fernet.generate_key().decode()
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, secret_key=secret_key, redis_url=None)
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(secret_key),
                     transport=transport or httpx.MockTransport(zoho_rejects_every_client),
                     retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.05))
    app = create_app(settings, ctx=ctx)
    async with app.router.lifespan_context(app):
        admin = make_key(engine, "admin")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test",
            headers={"Authorization": f"Bearer {admin}"},
        ) as client:
            yield Api(client, app, engine, admin)


def add_connection(engine: Engine, name: str = "seeded") -> int:
    with session_scope(engine) as session:
        connection = Connection(provider="zoho", name=name, config={"dc": "com"})
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def seed(engine: Engine, connection_id: int, *, deals: int = 30) -> None:
    """Reps, stages, accounts and `deals` deals; deal i: status cycles open/won/lost,
    owner alternates between two reps, closes on day i of January 2025, modified at T0 + i h.
    The last deal and the last account are tombstoned."""
    reps = [UserRecord("u1", "Ann Lee", "ann@example.com", team="East"),
            UserRecord("u2", "Bob Roy", "bob@example.com", active=False, team="West")]
    stages = [StageRecord("s1", "Qualify", "open", pipeline="Standard", sort_order=1,
                          probability=Decimal("20")),
              StageRecord("s2", "Closed Won", "won", pipeline="Standard", sort_order=2,
                          probability=Decimal("100")),
              StageRecord("s3", "Closed Lost", "lost", pipeline="Standard", sort_order=3,
                          probability=Decimal("0"))]
    accounts = [AccountRecord(f"a{i}", f"Account {i}", industry="Retail",
                              owner_email=reps[i % 2].email, owner_name=reps[i % 2].name,
                              remote_created_at=T0 - timedelta(days=30),
                              remote_modified_at=T0 + timedelta(hours=i))
                for i in range(5)]
    statuses = ("open", "won", "lost")
    rows = [DealRecord(f"d{i:03}", f"Deal {i}", amount=Decimal("1000.25") + i,
                       currency="EUR", exchange_rate=Decimal("0.5"),
                       amount_home=(Decimal("1000.25") + i) / 2,
                       stage=stages[i % 3].name, stage_remote_id=stages[i % 3].remote_id,
                       status=statuses[i % 3], probability=stages[i % 3].probability,
                       close_date=date(2025, 1, 1) + timedelta(days=i),
                       remote_created_at=T0 - timedelta(days=10),
                       remote_modified_at=T0 + timedelta(hours=i),
                       owner_email=reps[i % 2].email.upper() if i == 0 else reps[i % 2].email,
                       owner_name=reps[i % 2].name, account_remote_id=f"a{i % 5}",
                       account_name=f"Account {i % 5}", pipeline="Standard",
                       raw={"id": f"d{i:03}"})
            for i in range(deals)]
    with session_scope(engine) as session:
        for stream, records in (("users", reps), ("stages", stages), ("accounts", accounts),
                                ("deals", rows)):
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records)
    with session_scope(engine) as session:
        store.apply_deletions(session, connection_id=connection_id, deletions=[
            Deletion("deals", f"d{deals - 1:03}", T0 + timedelta(days=400)),
            Deletion("accounts", "a4", T0 + timedelta(days=400)),
        ])


ACTIVITY_KINDS = ("call", "meeting", "task")


def seed_activities(engine: Engine, connection_id: int, *, count: int = 12) -> None:
    """After seed(): `count` activities; activity i: type cycles call/meeting/task, owner
    alternates between the two reps (u1 Ann, u2 Bob), on day i + 1 of January 2025 at 10:00
    UTC (tasks: due that day), done unless i % 4 == 3, linked to deal d00i; the last one is
    deleted."""
    reps = (("u1", "ann@example.com", "Ann Lee"), ("u2", "bob@example.com", "Bob Roy"))
    rows = [ActivityRecord(f"act{i:02}", ActivityType(ACTIVITY_KINDS[i % 3]),
                           occurred_at=T0 + timedelta(days=i, hours=0 if i % 3 == 2 else 10),
                           subject=f"Activity {i}", done=i % 4 != 3,
                           owner_remote_id=reps[i % 2][0], owner_email=reps[i % 2][1],
                           owner_name=reps[i % 2][2], deal_remote_id=f"d{i:03}",
                           remote_modified_at=T0 + timedelta(days=i, hours=12))
            for i in range(count)]
    with session_scope(engine) as session:
        store.upsert_records(session, stream="activities", connection_id=connection_id,
                             records=rows)
        store.apply_deletions(session, connection_id=connection_id, deletions=[
            Deletion("activities", f"act{count - 1:02}", T0 + timedelta(days=400))])


DASHBOARD_PAGES = frozenset({
    ("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"),
    ("GET", "/welcome/{token}"), ("POST", "/welcome/{token}"), ("GET", "/language"),
    ("GET", "/leaderboard"), ("GET", "/leaderboard/deals"), ("MOUNT", "/assets"),
    ("GET", "/trends"), ("GET", "/pipeline"), ("GET", "/statements"), ("GET", "/hygiene"),
    ("GET", "/funnel"), ("GET", "/scorecards")})
"""The dashboard's pages and stylesheet (api/web): HTML for people, not API routes. Their
sign-in, CSRF and scope rules are tested in tests/unit/test_dashboard_pages.py."""
DASHBOARD_PAGES |= frozenset({  # goals and operations pages: test_dashboard_admin_pages.py
    ("GET", "/goals"), ("POST", "/goals"), ("POST", "/goals/import"), ("POST", "/goals/push"),
    ("GET", "/operations"), ("POST", "/operations/sync"), ("POST", "/operations/backfill"),
    ("POST", "/operations/keys"),
    ("POST", "/operations/keys/{key_id}/revoke"),
    ("POST", "/operations/digests/{channel_id}/test")})


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route of the app; ("MOUNT", path) for mounts.
    Newer FastAPI keeps included routers as such in app.routes: their routes are read
    through fastapi.routing.iter_route_contexts."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", iter)
    out = set()
    for route in contexts(app.routes):
        if route.methods is None:
            out.add(("MOUNT", route.path))
        out |= {(method, route.path) for method in (route.methods or ()) if method != "HEAD"}
    return out
