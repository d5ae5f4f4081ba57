"""`crmsync zoho ...`: getting the credentials of a Zoho CRM connection (docs/zoho.md).

`exchange-code` turns a Self Client grant code into a refresh token: `POST
{accounts server}/oauth/v2/token` with grant_type=authorization_code, client_id,
client_secret and code (https://www.zoho.com/accounts/protocol/oauth/self-client/
authorization-code-flow.html; https://www.zoho.com/crm/developer/docs/api/v8/
access-refresh.html). The answer holds access_token, refresh_token, api_domain, scope and
expires_in; failures are HTTP 200 with an `error` key, like the refresh grant
(docs/vendors/zoho.md §1). A grant code lives a few minutes (3 by default) and works once.

The command line (cli/main.py) registers `build_app(add_connection)`; `add_connection` is
its `connections add`, called with provider, name, config and secret (key=value lists),
so this package needs nothing from cli/.
"""

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import httpx
import typer

from connectors.endpoints import SETTING, EndpointPolicy, EndpointRefused
from connectors.http import build_client, json_body
from connectors.zoho.auth import ACCOUNTS_HOSTS, ACCOUNTS_SERVERS

DC_ALIASES = {"us": "com", "cn": "com.cn", "au": "com.au"}  # Zoho's short names
SCOPES = (  # what a connection uses: sync, notifications, the goals module (docs/zoho.md)
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.READ",
    "ZohoCRM.org.READ",
    "ZohoCRM.notifications.ALL",
)
CODE_ERRORS = {
    "invalid_code": "Zoho refused the grant code (invalid_code): it has expired (a code "
                    "lives 3 to 10 minutes), was already used, or was mistyped. Generate a "
                    "new one (API console > Self Client > Generate Code) and run this "
                    "command again at once",
    "invalid_client": "Zoho does not know this client (invalid_client): check --client-id "
                      "and --client-secret, and that --dc is the data centre where the Self "
                      "Client was created",
    "invalid_client_secret": "Zoho refused the client secret (invalid_client_secret): copy "
                             "it again from the API console (Self Client > Client Secret)",
}

AddConnection = Callable[..., None]


class ExchangeFailed(Exception):
    """The grant code could not be exchanged; the message says why (never a secret)."""


@dataclass(frozen=True)
class Grant:
    refresh_token: str
    api_domain: str
    scopes: tuple[str, ...]


def token_url(dc: str, accounts_url: str | None = None) -> str:
    """The token endpoint of data centre `dc` (or of `accounts_url`); ValueError for an
    unknown data centre."""
    dc = DC_ALIASES.get(dc, dc)
    if accounts_url:
        return accounts_url.rstrip("/") + "/oauth/v2/token"
    if dc not in ACCOUNTS_SERVERS:
        names = sorted({*ACCOUNTS_SERVERS, *DC_ALIASES})
        raise ValueError(f"unknown data centre {dc!r}: use one of {', '.join(names)}")
    return ACCOUNTS_SERVERS[dc] + "/oauth/v2/token"


async def exchange_code(url: str, client_id: str, client_secret: str, code: str, *,
                        endpoints: EndpointPolicy | None = None,
                        transport: httpx.AsyncBaseTransport | None = None) -> Grant:
    """Exchange a Self Client grant code at `url` (a token endpoint) for a refresh token."""
    await (endpoints or EndpointPolicy()).acheck(url, ACCOUNTS_HOSTS)
    host = httpx.URL(url).host
    async with build_client(transport=transport, timeout=20.0) as client:
        try:  # a form body: the secret and the code never appear in a URL or a log
            response = await client.post(url, data={
                "grant_type": "authorization_code", "client_id": client_id,
                "client_secret": client_secret, "code": code})
        except httpx.HTTPError as exc:
            raise ExchangeFailed(f"cannot reach the Zoho accounts server {host} "
                                 f"({type(exc).__name__})") from None
    return parse_grant(response, host)


def parse_grant(response: httpx.Response, host: str) -> Grant:
    body = json_body(response) if response.content else None
    if not isinstance(body, dict):
        raise ExchangeFailed(f"the Zoho accounts server {host} answered HTTP "
                             f"{response.status_code} without a token")
    error = body.get("error")
    if error:
        if "too many requests" in str(body.get("error_description", "")).lower():
            raise ExchangeFailed("Zoho: too many token requests; wait a minute, generate a "
                                 "new grant code and try again")
        raise ExchangeFailed(CODE_ERRORS.get(str(error), f"Zoho refused the grant code "
                                                          f"({str(error)[:80]})"))
    if not body.get("refresh_token"):
        raise ExchangeFailed("Zoho answered without a refresh token: generate the code in "
                             "the API console's Self Client (Generate Code), not with "
                             "access_type=online")
    return Grant(refresh_token=str(body["refresh_token"]),
                 api_domain=str(body.get("api_domain", "")),
                 scopes=tuple(str(body.get("scope", "")).replace(",", " ").split()))


def missing_scopes(granted: tuple[str, ...]) -> list[str]:
    """SCOPES that `granted` does not cover (a `.ALL` scope covers its `.READ`)."""
    have = {s.lower() for s in granted}
    missing = []
    for scope in SCOPES:
        base = scope.lower().rsplit(".", 1)[0]
        if scope.lower() not in have and f"{base}.all" not in have:
            missing.append(scope)
    return missing


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def build_app(add_connection: AddConnection | None = None) -> typer.Typer:
    """The `zoho` command group; `add_connection` saves a connection (`--name`)."""
    app = typer.Typer(help="Zoho CRM: credentials (docs/zoho.md).", no_args_is_help=True)

    @app.command("exchange-code")
    def exchange_code_command(
        client_id: Annotated[str, typer.Option(help="Self Client > Client Secret tab.")],
        client_secret: Annotated[str, typer.Option(
            envvar="CRMSYNC_ZOHO_CLIENT_SECRET", prompt=True, hide_input=True,
            help="Asked for when not given (or set CRMSYNC_ZOHO_CLIENT_SECRET).")],
        code: Annotated[str, typer.Option(
            prompt="Grant code", help="From Self Client > Generate Code; asked for when "
                                      "not given.")],
        dc: Annotated[str, typer.Option(
            help="Data centre of the Zoho account: com (us), eu, in, com.au (au), jp, "
                 "com.cn (cn), ca, sa, uk, ae.")] = "com",
        name: Annotated[str | None, typer.Option(
            help="Create a connection with this name instead of printing the refresh "
                 "token.")] = None,
        accounts_url: Annotated[str | None, typer.Option(
            help="Another accounts server (sandboxes, private clouds; must be allowed by "
                 f"{SETTING}).")] = None,
    ) -> None:
        """Exchange a Self Client grant code for a refresh token: print it, or with --name
        create the connection. Grant codes expire within minutes: run this right away."""
        try:
            url = token_url(dc.strip().lower(), accounts_url)
            endpoints = EndpointPolicy.parse(os.environ.get(SETTING))
            grant = asyncio.run(exchange_code(url, client_id.strip(), client_secret.strip(),
                                              code.strip(), endpoints=endpoints))
        except (ValueError, EndpointRefused, ExchangeFailed) as exc:
            raise _fail(str(exc)) from None
        missing = missing_scopes(grant.scopes) if grant.scopes else []
        if missing:
            typer.echo(f"warning: the code did not grant {', '.join(missing)}; syncs or "
                       "notifications that need them will fail (docs/zoho.md lists the "
                       "scopes)", err=True)
        if name is None or add_connection is None:
            typer.echo(grant.refresh_token)
            return
        config = [f"dc={DC_ALIASES.get(dc.strip().lower(), dc.strip().lower())}"]
        if accounts_url:
            config.append(f"accounts_url={accounts_url}")
        secrets: list[str] = [f"client_id={client_id.strip()}",
                              f"client_secret={client_secret.strip()}",
                              f"refresh_token={grant.refresh_token}"]
        add_connection(provider="zoho", name=name, config=config, secret=secrets)

    return app

