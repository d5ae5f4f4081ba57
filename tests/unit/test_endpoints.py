"""Where stored CRM credentials may go: the host policy (connectors/endpoints.py), the
checks before a token request or a data call, and the connection rules (API and CLI)."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import respx
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlmodel import Session

from connectors.endpoints import EndpointPolicy, EndpointRefused
from connectors.fxiaoke import FxiaokeConfig, FxiaokeConnector, FxiaokeSecrets
from connectors.fxiaoke.sandbox.state import SANDBOX_AES_KEY
from connectors.http import ApiClient, RetryPolicy, build_client, tls_context
from connectors.zoho import ZohoConfig, ZohoConnector, ZohoSecrets
from connectors.zoho import auth as zoho_auth
from connectors.zoho.auth import ACCOUNTS_HOSTS, API_HOSTS
from core.errors import SourceError
from core.models import Connection
from tests.api_support import ZOHO_SECRETS, running_api
from tests.cli_support import in_process, user_env

FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.01)
URL = "/api/v1/connections"
ZOHO = {"provider": "zoho", "name": "Zoho EU", "config": {"dc": "eu"}, "secrets": ZOHO_SECRETS}
NEW_ZOHO = {"client_id": "new-client", "client_secret": "new-secret-9f2",
            "refresh_token": "new-refresh-77"}
FX_SECRETS = {"app_id": "FSAID_1", "app_secret": "fx-app-secret-41",
              "permanent_code": "fx-permanent-code-52", "aes_key": SANDBOX_AES_KEY}
FXIAOKE = {"provider": "fxiaoke", "name": "Fx", "secrets": FX_SECRETS,
           "config": {"admin_mobile": "13800130000"}}


def refused(policy: EndpointPolicy, url: str, vendor: tuple[str, ...] = ACCOUNTS_HOSTS) -> str:
    with pytest.raises(EndpointRefused) as caught:
        policy.check(url, vendor)
    return str(caught.value)


# -- the policy ----------------------------------------------------------------------------

def test_vendor_hosts_over_https_only_and_nothing_else_by_default():
    policy = EndpointPolicy()
    policy.check("https://accounts.zoho.com.cn/oauth/v2/token", ACCOUNTS_HOSTS)
    policy.check("https://accounts.zohocloud.ca/oauth/v2/token", ACCOUNTS_HOSTS)
    policy.check("https://content.zohoapis.eu", API_HOSTS)
    policy.check("https://zohoapis.com.au", API_HOSTS)
    assert "https on port 443" in refused(policy, "http://accounts.zoho.com/oauth/v2/token")
    assert "https on port 443" in refused(policy, "https://accounts.zoho.com:8443/")
    message = refused(policy, "https://accounts.zoho.com.evil.example/oauth/v2/token")
    assert "CRMSYNC_ALLOW_ENDPOINTS=accounts.zoho.com.evil.example" in message
    assert "not one of the vendor's documented hosts" in refused(policy, "https://zohoapis.eu",
                                                                   ACCOUNTS_HOSTS)
    refused(policy, "https://www.zohoapis.eu.evil.example", API_HOSTS)
    refused(policy, "https://evilzohoapis.com", API_HOSTS)
    refused(policy, "file:///etc/passwd")


def test_an_explicit_entry_allows_that_host_even_on_loopback_and_only_its_port():
    policy = EndpointPolicy.parse(" 127.0.0.1:8400 , crm.internal.example,[::1]")
    policy.check("http://127.0.0.1:8400/oauth/v2/token", ACCOUNTS_HOSTS)
    policy.check("http://crm.internal.example:81/x", ACCOUNTS_HOSTS)  # no DNS needed
    policy.check("http://[::1]:9/", ACCOUNTS_HOSTS)
    refused(policy, "http://127.0.0.1:8401/")
    refused(policy, "http://127.0.0.2:8400/")
    refused(policy, "http://sub.crm.internal.example/")


@pytest.mark.parametrize("url", [
    "http://localhost:8400/",             # a name resolving to 127.0.0.1 / ::1
    "http://127.0.0.1/", "http://0.0.0.0/", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://172.16.5.4/", "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data",
    "http://[::1]:8080/", "http://[fe80::1]/", "http://[fd00::5]/",
    "http://[::ffff:127.0.0.1]/", "http://[::]/",
])
def test_a_wildcard_never_allows_loopback_private_or_link_local(url):
    message = refused(EndpointPolicy.parse("*"), url)
    assert "list the host explicitly in CRMSYNC_ALLOW_ENDPOINTS" in message


def test_a_wildcard_allows_public_addresses_and_only_subdomains():
    policy = EndpointPolicy.parse("*.crm.example,*:443")
    policy.check("https://93.184.216.34/", ACCOUNTS_HOSTS)  # a public literal: "*:443"
    refused(policy, "http://93.184.216.34/")  # port 80: no entry matches
    refused(policy, "https://crm.example.invalid/")
    assert "cannot be resolved" in refused(EndpointPolicy.parse("*.invalid"),
                                           "https://nowhere.invalid/")
    refused(EndpointPolicy.parse("*.crm.example"), "https://crm.example/")  # not a subdomain
    for odd in ("http://a..b/", "http://xn--zz.com/", f"http://{'a' * 300}.com/"):
        refused(EndpointPolicy.parse("*"), odd)  # not a URL, or not resolvable
    for loopback in ("http://0x7f.1/", "http://2130706433/", "http://017700000001/"):
        assert "127.0.0.1" in refused(EndpointPolicy.parse("*"), loopback)


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    """A wildcard-matched name is refused when any of its addresses (IPv4 or IPv6) is
    private or link-local, and every check resolves it again once the verdict is stale."""
    answers = {"crm.corp.example": ["93.184.216.34", "fe80::1"],
               "api.corp.example": ["8.8.4.4", "2001:db8::1", "93.184.216.34"],
               "ok.corp.example": ["93.184.216.34", "2606:4700::1111"]}

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET6
        return [(family if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    policy = EndpointPolicy.parse("*.corp.example")
    assert "fe80::1" in refused(policy, "https://crm.corp.example/")
    assert "2001:db8::1" in refused(policy, "https://api.corp.example/")  # documentation range
    policy.check("https://ok.corp.example/", ACCOUNTS_HOSTS)
    answers["ok.corp.example"] = ["10.0.0.8"]  # the name moves to a private address
    policy._verdicts.clear()  # the minute has passed
    assert "10.0.0.8" in refused(policy, "https://ok.corp.example/")


@pytest.mark.parametrize("text", ["http://x", "a b", "*.*.x", "host:99999", "x:y", "[::1",
                                  "*x.example", "exa_mple.com"])
def test_bad_allow_list_entries_are_refused(text):
    with pytest.raises(ValueError, match="CRMSYNC_ALLOW_ENDPOINTS"):
        EndpointPolicy.parse(text)


# -- before credentials are sent -------------------------------------------------------------

@asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 recording every byte it receives (answers HTTP 400)."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        body = b'{"error":"invalid_client","errorCode":20016}'
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], received


def zoho(url: str, policy: EndpointPolicy, client: httpx.AsyncClient) -> ZohoConnector:
    return ZohoConnector(ZohoConfig(accounts_url=url), ZohoSecrets.model_validate(ZOHO_SECRETS),
                         ApiClient(client, retry=FAST, endpoints=policy))


def fxiaoke(url: str, policy: EndpointPolicy, client: httpx.AsyncClient) -> FxiaokeConnector:
    return FxiaokeConnector(
        FxiaokeConfig(base_url=url, current_open_user_id="FSUID_1"),
        FxiaokeSecrets.model_validate(FX_SECRETS), ApiClient(client, retry=FAST, endpoints=policy))


@pytest.mark.parametrize("make", [zoho, fxiaoke])
async def test_a_listener_on_loopback_never_receives_credentials_unless_listed(make):
    async with listener() as (port, received), build_client() as client:
        for allow in ("", "*", "*:" + str(port), "127.0.0.1:1", "localhost"):
            with pytest.raises(EndpointRefused):
                await make(f"http://127.0.0.1:{port}", EndpointPolicy.parse(allow),
                           client).check()
        assert received == []
        with pytest.raises(SourceError):  # listed explicitly: the operator's choice
            await make(f"http://127.0.0.1:{port}", EndpointPolicy.parse(f"127.0.0.1:{port}"),
                       client).check()
        secret = (ZOHO_SECRETS["client_secret"] if make is zoho else FX_SECRETS["app_secret"])
        assert secret.encode() in b"".join(received)


async def test_every_client_verifies_certificates_with_one_context_built_once():
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 100  # the CA bundle (certifi's)
    async with build_client() as one, build_client() as two:
        for client in (one, two):  # httpx's pool holds the context its connections use
            assert client._transport._pool._ssl_context is context  # type: ignore[attr-defined]


async def test_an_api_domain_outside_zoho_never_gets_the_token():
    router = respx.mock(assert_all_called=False)
    token = router.post("https://accounts.zoho.eu/oauth/v2/token").respond(json={
        "access_token": "tok-1", "api_domain": "https://evil.example", "expires_in": 3600})
    evil = router.route(host="evil.example").respond(json={})
    async with router, build_client() as client:
        connector = ZohoConnector(ZohoConfig(dc="eu"), ZohoSecrets.model_validate(ZOHO_SECRETS),
                                  ApiClient(client, retry=FAST))
        with pytest.raises(EndpointRefused, match=r"evil\.example"):
            await connector.check()
        assert token.call_count == 1 and evil.call_count == 0
        # a token cached before the upgrade (or by another process) is checked too
        with pytest.raises(EndpointRefused, match="https on port 443"):
            await connector.auth.save(zoho_auth.Token("tok-2", "http://www.zohoapis.eu", 600))
            await connector.check()
        assert evil.call_count == 0 and token.call_count == 1


@respx.mock
async def test_a_zoho_api_domain_is_used():
    respx.post("https://accounts.zoho.eu/oauth/v2/token").respond(json={
        "access_token": "tok-1", "api_domain": "https://www.zohoapis.eu", "expires_in": 3600})
    currencies = respx.get("https://www.zohoapis.eu/crm/v8/org/currencies").respond(json={
        "currencies": [{"iso_code": "EUR", "is_base": True}]})
    respx.get("https://www.zohoapis.eu/crm/v8/org").respond(json={"org": [{}]})
    async with build_client() as client:
        connector = ZohoConnector(ZohoConfig(dc="eu"), ZohoSecrets.model_validate(ZOHO_SECRETS),
                                  ApiClient(client, retry=FAST))
        assert (await connector.check()).home_currency == "EUR"
    assert currencies.calls[0].request.headers["Authorization"] == "Zoho-oauthtoken tok-1"


# -- saving a connection (API and CLI) -------------------------------------------------------

@pytest.fixture
async def api(sqlite_engine, monkeypatch):
    monkeypatch.setenv("CRMSYNC_ALLOW_ENDPOINTS", "127.0.0.1:8400")
    async with running_api(sqlite_engine) as api:
        yield api


def stored(api, connection_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with Session(api.engine) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        return row.config, api.app.state.secrets.open(row.secrets_encrypted)


def messages(response: httpx.Response) -> dict[str, str]:
    return {d["field"]: d["message"] for d in response.json()["error"]["details"]}


@pytest.mark.parametrize("change", [{"accounts_url": "https://accounts.zoho.com"},
                                    {"dc": "in"}, {"accounts_url": "http://127.0.0.1:8400"}])
async def test_moving_the_token_endpoint_drops_the_stored_secrets(api, change):
    created = (await api.client.post(URL, json=ZOHO)).json()
    before = stored(api, created["id"])
    path = f"{URL}/{created['id']}"

    response = await api.client.patch(path, json={"config": change})
    assert response.status_code == 422, response.text
    key = next(iter(change))
    assert set(messages(response)) == {"secrets.client_id", "secrets.client_secret",
                                       "secrets.refresh_token"}
    assert f"config.{key} changed" in response.json()["error"]["message"]
    response = await api.client.patch(path, json={"config": change, "secrets": {
        "refresh_token": "only-this-one"}})
    assert set(messages(response)) == {"secrets.client_id", "secrets.client_secret"}
    assert stored(api, created["id"]) == before  # nothing changed

    response = await api.client.patch(path, json={"config": change, "secrets": NEW_ZOHO})
    assert response.status_code == 200, response.text
    config, secrets = stored(api, created["id"])
    assert secrets == NEW_ZOHO and config[key] == change[key]
    # other keys keep the secrets, and so does giving the same endpoint again
    response = await api.client.patch(path, json={"config": {**change,
                                                             "sync_interval_minutes": 30}})
    assert response.status_code == 200, response.text
    assert stored(api, created["id"])[1] == NEW_ZOHO


async def test_moving_the_fxiaoke_host_drops_every_stored_secret(api):
    created = (await api.client.post(URL, json=FXIAOKE)).json()
    path = f"{URL}/{created['id']}"
    change = {"base_url": "https://open-hwcloud.fxiaoke.com"}
    response = await api.client.patch(path, json={"config": change})
    assert response.status_code == 422
    assert set(messages(response)) == {"secrets.app_id", "secrets.app_secret",
                                       "secrets.permanent_code"}
    new = {"app_id": "FSAID_2", "app_secret": "s2", "permanent_code": "p2"}
    response = await api.client.patch(path, json={"config": change, "secrets": new})
    assert response.status_code == 200, response.text
    assert stored(api, created["id"])[1] == new  # aes_key too: give it again when needed


@pytest.mark.parametrize(("body", "words"), [
    ({**ZOHO, "config": {"accounts_url": "https://evil.example"}},
     "CRMSYNC_ALLOW_ENDPOINTS=evil.example"),
    ({**ZOHO, "config": {"accounts_url": "http://127.0.0.1:8401"}},
     "CRMSYNC_ALLOW_ENDPOINTS=127.0.0.1"),
    ({**ZOHO, "config": {"accounts_url": "http://[::1]:8400"}},
     "CRMSYNC_ALLOW_ENDPOINTS=[::1]"),
    ({**ZOHO, "config": {"accounts_url": "http://accounts.zoho.com"}}, "https on port 443"),
    ({**FXIAOKE, "config": {**FXIAOKE["config"], "base_url": "http://169.254.169.254"}},
     "CRMSYNC_ALLOW_ENDPOINTS=169.254.169.254"),
])
async def test_a_host_that_is_not_allowed_is_422_and_nothing_is_saved(api, body, words):
    response = await api.client.post(URL, json=body)
    assert response.status_code == 422, response.text
    assert words in messages(response)["config"]
    created = (await api.client.post(URL, json=ZOHO)).json()
    response = await api.client.patch(f"{URL}/{created['id']}", json={
        "config": body["config"] if body is not FXIAOKE else {}, "secrets": NEW_ZOHO})
    if body["provider"] == "zoho":
        assert response.status_code == 422 and words in messages(response)["config"]
        assert stored(api, created["id"]) == (created["config"], ZOHO_SECRETS)
    with Session(api.engine) as session:
        assert session.query(Connection).count() == 1


async def test_an_explicitly_allowed_sandbox_is_saved(api):
    response = await api.client.post(URL, json={
        **ZOHO, "config": {"accounts_url": "http://127.0.0.1:8400"}})
    assert response.status_code == 201, response.text


def test_connections_add_refuses_a_host_in_one_line(tmp_path):
    env = user_env(CRMSYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}",
                   CRMSYNC_SECRET_KEY=Fernet.generate_key().decode(), CRMSYNC_ALLOW_ENDPOINTS="")
    args = ["connections", "add", "zoho", "--name", "z",
            "--no-check", "--config", "accounts_url=http://127.0.0.1:8400",
            *[a for k, v in ZOHO_SECRETS.items() for a in ("--secret", f"{k}={v}")]]
    done = in_process(args, env=env, cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CRMSYNC_ALLOW_ENDPOINTS=127.0.0.1" in lines[0], done.stderr
    assert ZOHO_SECRETS["client_secret"] not in done.stderr + done.stdout
    env["CRMSYNC_ALLOW_ENDPOINTS"] = "127.0.0.1:8400"
    done = in_process(args, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# -- a connection saved before the upgrade: the sync job refuses it --------------------------

async def test_a_stored_connection_to_a_host_not_allowed_fails_its_sync_unsent(sqlite_engine,
                                                                              sqlite_url):
    from connectors.sandbox import generate_company
    from connectors.sandbox.server import BackgroundServer
    from connectors.zoho.sandbox import create_app
    from core.config import Settings
    from core.db import session_scope
    from core.models import SyncRun
    from tests.integration.zoho_helpers import add_connection, make_context, sync

    with BackgroundServer(create_app(generate_company(seed=5, deals=30))) as server:
        ctx = make_context(sqlite_engine, sqlite_url)
        connection_id = add_connection(ctx, server.url)  # straight into the store
        for allow in ("", "*", "localhost"):
            ctx.settings = Settings(database_url=sqlite_url, secret_key=ctx.settings.secret_key,
                                    allow_endpoints=allow)
            with pytest.raises(EndpointRefused, match="CRMSYNC_ALLOW_ENDPOINTS"):
                await sync(ctx, connection_id, "full")
        async with httpx.AsyncClient(base_url=server.url) as sandbox:
            stats = (await sandbox.get("/_sandbox/stats")).json()
        assert stats["token_grants"] == 0 and stats["calls"] == {}, stats
        with session_scope(sqlite_engine) as session:
            runs = list(session.scalars(select(SyncRun)))
            assert {r.status for r in runs} == {"failed"} and len(runs) == 3
            assert "sandbox-client-secret" not in " ".join(r.error or "" for r in runs)

        ctx.settings = Settings(database_url=sqlite_url, secret_key=ctx.settings.secret_key,
                                allow_endpoints=f"127.0.0.1:{server.port}")
        await sync(ctx, connection_id, "full")
        async with httpx.AsyncClient(base_url=server.url) as sandbox:
            assert (await sandbox.get("/_sandbox/stats")).json()["token_grants"] == 1
