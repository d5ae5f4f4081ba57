"""`crmsync demo`: a simulated tenant of every CRM with a sandbox, synced, with goals
pushed into each, a summary, and the API and the dashboard serving it all."""

import asyncio
import socket
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import uvicorn
from rich.table import Table
from sqlalchemy import select
from sqlmodel import Session, col

from api.app import create_app
from api.chat_sandbox import SANDBOX_ROBOTS, ChatSandbox, sandbox_robots
from api.chat_sandbox import create_app as create_chat_app
from api.connections import (
    ConnectionInput,
    ConnectionPatch,
    create_connection,
    update_connection,
)
from cli.admin import create_api_key
from cli.context import checked_context
from cli.output import console, fail
from cli.run import run_sync_with_progress
from cli.sandboxes import option_parameter, with_parameters
from cli.users import welcome_url
from connectors.base import Sandbox, SandboxOption
from connectors.registry import sandboxes
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from core import accounts
from core.accounts import AccountError, LinkPurpose, Role
from core.config import Settings, get_settings
from core.db import session_scope
from core.digests import channels
from core.digests.content import build_digest
from core.digests.schedule import latest_moment
from core.goals import targets as goals
from core.incentives import periods, statements
from core.incentives.calendar import period_of
from core.metrics import currency
from core.metrics import definitions as metrics
from core.metrics.periods import today
from core.models import Connection, Deal, User
from core.queries import store_summary
from core.types import utcnow
from workers.context import JobContext
from workers.digests import send_now
from workers.jobs import push_goals

SHARED_REPS = slice(1, 4)  # reps who sell in both CRMs (same emails): one owner in metrics


def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Exit after the sync.")] = False,
    port: Annotated[int, typer.Option(
        help="Port of the API on 127.0.0.1 (0: any free port).")] = 8000,
    deals: Annotated[int, typer.Option(help="Deals in the simulated org.")] = 2500,
    seed: Annotated[int, typer.Option(help="Seed of the simulated company.")] = 42,
    chat_port: Annotated[int, typer.Option(
        help="Port of the chat robot sandbox on 127.0.0.1 (0: any free port).")] = 0,
    **sandbox_options: Any,
) -> None:
    """The whole product on this machine: a simulated tenant of every CRM with a sandbox
    (some reps work in all of them), a sync of each, goals pushed into each, the API and
    the dashboard (with sign-in links for a manager and a rep)."""
    listener = _listen("127.0.0.1", port)  # before anything: the curls must reach this port
    port = listener.getsockname()[1]
    settings = get_settings()
    ctx = checked_context(settings)
    console.rule("[bold]crmsync demo")
    console.print(f"store: {settings.database_url}")
    company = generate_company(seed=seed, deals=deals)
    shared = company.reps[SHARED_REPS]
    rates = dict(company.currencies)  # before a one-currency org converts the company
    started: list[tuple[str, Sandbox, Any, BackgroundServer]] = []
    chat: BackgroundServer | None = None
    try:
        for i, (provider, sandbox) in enumerate(sandboxes().items()):
            # the first CRM's company is the home one; the others share some of its reps
            tenant = company if i == 0 else generate_company(
                seed=seed + i, deals=deals // 2,
                shared_reps=[(r.first_name, r.last_name) for r in shared])
            kwargs: dict[str, Any] = {}
            for option in sandbox.options:
                if option.demo:
                    kwargs.update(option.apply(sandbox_options[_demo_option(provider, option)]))
            sandbox_app_ = sandbox.create_app(tenant, **kwargs)
            server = BackgroundServer(sandbox_app_).start()
            started.append((provider, sandbox, sandbox_app_, server))
            settings.allow_endpoints = ",".join(  # the sandbox may receive the credentials
                filter(None, (settings.allow_endpoints, f"{server.host}:{server.port}")))
            console.print(f"{sandbox.demo_name} on {server.url} "
                          f"({deals if i == 0 else deals // 2:,} deals, seed {seed + i})")
        console.print(f"in every CRM: {', '.join(r.full_name for r in shared)}")
        connections = [(provider, _demo_connection(ctx, provider, server.url), sandbox)
                       for provider, sandbox, _, server in started]
        for _, connection_id, sandbox in connections:
            console.print(f"connection {connection_id}: {sandbox.demo_name}; full sync:")
            if not asyncio.run(run_sync_with_progress(ctx, connection_id, full=True)):
                raise typer.Exit(code=1)
            _print_summary(ctx, connection_id)
            # rates as soon as the home currency is known: a CRM whose deals carry no rate
            # (converted with the FX table when stored, core.store) needs them for its sync
            _demo_fx_rates(ctx, settings, rates)
        _demo_plan(ctx, settings, *_demo_goals(ctx, settings))
        robots = sandbox_robots()
        chat = BackgroundServer(create_chat_app(robots), port=chat_port).start()
        settings.allow_endpoints = ",".join(  # the digests' robots are on this machine
            filter(None, (settings.allow_endpoints, f"{chat.host}:{chat.port}")))
        _demo_digests(ctx, settings, chat.url, robots)
        key = create_api_key(ctx, "demo admin", ["admin"])
        base = f"http://127.0.0.1:{port}"
        console.print(f"\nadmin API key (shown once): [bold]{key}[/bold]\n")
        q_start, q_end = _this_quarter()
        for call in (f"{base}/api/v1/users", f"{base}/api/v1/deals?status=won&limit=5",
                     f"{base}/api/v1/deals?format=csv",
                     f"{base}/api/v1/metrics/summary?start={q_start}&end={q_end}"
                     "&group_by=owner&sort=-attainment"):
            print(f"curl -H 'Authorization: Bearer {key}' '{call}'")
        _demo_dashboard(ctx, settings, base)
        console.print(f"\nAPI docs: {base}/docs")
        if no_serve:
            return
        # Live changes: sandboxes that push callbacks without a subscription call the API.
        for (provider, connection_id, _), (_, sandbox, running, _) in zip(
                connections, started, strict=True):
            if sandbox.set_callback_url is not None:
                sandbox.set_callback_url(
                    running, f"{base}/api/v1/webhooks/{provider}/{connection_id}")
        console.print(f"serving the API on {base} (Ctrl+C stops)")
        uvicorn.Server(uvicorn.Config(create_app(settings, ctx=ctx, schedule=True),
                                      log_level="warning")).run(sockets=[listener])
    finally:
        listener.close()
        if chat is not None:
            chat.stop()
        for *_, server in reversed(started):
            server.stop()


def _demo_option(provider: str, option: SandboxOption) -> str:
    """The demo's parameter for a sandbox option: `--<provider>-<name>`."""
    return f"{provider}_{option.name}".replace("-", "_")


command = with_parameters(demo, [
    option_parameter(_demo_option(provider, option), option)
    for provider, sandbox in sandboxes().items() for option in sandbox.options if option.demo])
"""`demo` with `--<provider>-<name>` for each sandbox option offered on the demo."""


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or one line saying the port is
    taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise fail(f"port {port} on {host} is not free ({exc.strerror}): stop what uses it, "
                   "or pass --port with another port (--port 0 picks a free one)") from None
    return listener


def _demo_fx_rates(ctx: JobContext, settings: Settings, rates: dict[str, Decimal]) -> None:
    """The sandbox company's rates into the FX table (home-currency units per 1 of each), so
    the Fxiaoke tenant's CNY reports in the Zoho org's currency. Rates set before are kept."""
    with session_scope(ctx.engine) as session:
        reporting = currency.reporting_currency(session, settings)
        known = {r.code for r in currency.list_rates(session)}
        if reporting not in rates:
            return
        for code, per_home in rates.items():
            if code != reporting and code not in known:
                currency.set_rate(session, code, (rates[reporting] / per_home).quantize(
                    Decimal("1e-10")))


def _demo_goals(ctx: JobContext, settings: Settings) -> tuple[list[str], str]:
    """This quarter's bookings goal for every active rep who owns deals (last quarter's
    bookings + 10%, rounded up to 1,000; users who own none, such as an integration user,
    get no goal), pushed into every CRM's goals; the leaderboard. Returns the reps' emails and
    the reporting currency."""
    start, end = _this_quarter()
    last_end = start - timedelta(days=1)
    with session_scope(ctx.engine) as session:
        last = metrics.summary(session, start=date(last_end.year, last_end.month - 2, 1),
                               end=last_end, group_by=metrics.GroupBy.OWNER, settings=settings)
        sellers = set(session.scalars(select(col(Deal.owner_email)).where(
            col(Deal.deleted_at).is_(None)).distinct()))
        active = {u.email for u in session.scalars(select(User).where(
            col(User.active), col(User.deleted_at).is_(None))) if u.email and u.email in sellers}
    lines = ["owner_email,metric,period_start,period_end,target"]
    for row in last["data"]:
        if row["owner_email"] in active:
            target = max(Decimal(10_000), -(-row["bookings"] * Decimal("1.1") // 1000) * 1000)
            lines.append(f"{row['owner_email']},bookings,{start},{end},{target:f}")
    with session_scope(ctx.engine) as session:
        done = goals.import_goals(session, "\n".join(lines), settings)
    pushed = asyncio.run(push_goals(ctx))
    counts = "; ".join(f"connection {item['connection_id']}: " + ", ".join(
        f"{n} {s}" for s, n in sorted(item["counts"].items())) for item in pushed["connections"])
    console.print(f"\ngoals for {start} to {end}: {done['created']} new, {done['updated']} "
                  f"changed, {done['unchanged']} as before; pushed to the CRMs' goal objects: "
                  f"{counts}")
    with session_scope(ctx.engine) as session:
        board = metrics.summary(session, start=start, end=end, group_by=metrics.GroupBy.OWNER,
                                settings=settings)
    table = Table(title=f"leaderboard {start} to {end} ({board['currency']})")
    for column in ("rep", "bookings", "goal", "attainment"):
        table.add_column(column, justify="left" if column == "rep" else "right")
    for row in metrics.sort_rows(board["data"], "-attainment", metrics.GroupBy.OWNER):
        if row["goal"] is not None:
            share = f"{row['attainment'] * 100:.1f} %" if row["attainment"] is not None else ""
            table.add_row(row["owner_name"] or row["owner_email"], f"{row['bookings']:,.2f}",
                          f"{row['goal']:,.2f}", share)
    console.print(table)
    return [line.split(",")[0] for line in lines[1:]], str(board["currency"])


def _demo_plan(ctx: JobContext, settings: Settings, reps: list[str], currency: str) -> None:
    """A commission plan for the reps with a goal (docs/incentives.md): quota from their
    goal, marginal tiers with an accelerator above quota, a SPIFF on new business; this
    quarter's statements."""
    if not reps:
        return
    start, _ = _this_quarter()
    period = period_of("quarter", start, settings.fiscal_year_start_month)
    document = "\n".join([
        "key: demo-sales", "name: Demo sales plan",
        "members: {people: [" + ", ".join(reps) + "]}",
        f"effective: {{from: {start.isoformat()}}}", "period: quarter",
        f"currency: {currency}", "quota: goal",
        "tiers:", "  - {to: 0.5, rate: 0.03}", "  - {to: 1.0, rate: 0.06}",
        "  - {rate: 0.10}", "clawback_days: 90", ""])
    with session_scope(ctx.engine) as session:
        statements.save_plan(session, document)
        periods.record_adjustments(session, settings, today=today(settings))
        data = statements.statements(session, settings, period)
    table = Table(title=f"commissions {period.label}, plan demo-sales ({len(data)} reps)")
    for column in ("rep", "credited", "attainment", "payout"):
        table.add_column(column, justify="left" if column == "rep" else "right")
    for item in sorted(data, key=lambda s: -s["payout"])[:10]:
        share = f"{item['attainment'] * 100:.1f} %" if item["attainment"] is not None else ""
        table.add_row(str(item["name"] or item["email"]), f"{item['measure']:,.2f}", share,
                      f"{item['payout']:,.2f} {item['currency']}")
    console.print(table)


DEMO_CHANNELS = (  # name, platform, language, team ("East": a team of the Pipedrive sandbox)
    ("demo East (WeCom)", "wecom", "zh", "East"),
    ("demo everyone (Slack)", "slack", "en", None),
    ("demo everyone (DingTalk, signed)", "dingtalk", "zh", None),
)


def _demo_digests(ctx: JobContext, settings: Settings, chat_url: str,
                  robots: ChatSandbox) -> None:
    """Digest channels to the chat robot sandbox's robots (weekly, Monday 09:00), each sent
    its latest week's digest once; what each robot received, with the leaderboard's top
    line."""
    with session_scope(ctx.engine) as session:
        teams = {t for t in session.scalars(select(col(User.team)).distinct()) if t}
        for name, chosen, language, team in DEMO_CHANNELS:
            path, secret = SANDBOX_ROBOTS[chosen]
            fields = {"language": language, "cadence": "weekly", "day": 0, "hour": 9,
                      "team": team if team in teams else None}
            try:  # a second run: this run's robot URL (another port)
                channels.update_channel(
                    session, ctx.secrets, int(channels.find_channel(session, name).id or 0),
                    url=chat_url + path, secret=secret, **fields)
            except channels.ChannelNotFound:
                channels.create_channel(session, ctx.secrets, url=chat_url + path,
                                        secret=secret, name=name, platform=chosen, **fields)
    console.print(f"\ndigests: chat robot sandbox (WeCom, DingTalk, Feishu, Slack) on {chat_url}")
    for name, chosen, _, _ in DEMO_CHANNELS:
        outcome = asyncio.run(send_now(ctx, name))
        if not outcome.ok:
            raise fail(f"digest to {name}: {outcome.error}")
        with session_scope(ctx.engine) as session:
            channel = channels.find_channel(session, name)
            moment = latest_moment(channels.schedule_of(channel), utcnow(), settings.timezone)
            digest = build_digest(session, settings, language=channel.language,
                                  cadence=channel.cadence, start=moment.start,
                                  end=moment.end, team=channel.team, sections=("leaderboard",))
        got = sum(1 for r in robots.received if r["platform"] == chosen)
        top = (f"top: {digest.reps[0].label} {digest.reps[0].bookings} {digest.currency} "
               f"({digest.reps[0].deals_won} won)") if digest.reps else "no deals won"
        print(f"  {chosen} robot got {got} message ({name}: {digest.subtitle}); {top}")
    first = DEMO_CHANNELS[0][0]
    print(f"  the message again: crmsync digest preview '{first}'; send again while the demo "
          f"serves: CRMSYNC_ALLOW_ENDPOINTS={urlsplit(chat_url).netloc} crmsync digest send "
          f"'{first}'; received: {chat_url}/_sandbox/received")


def _demo_dashboard(ctx: JobContext, settings: Settings, base: str) -> None:
    """A manager who sees every team and the rep with the most bookings this quarter, as
    dashboard users, with a one-time link each (a second run gives them fresh links)."""
    start, end = _this_quarter()
    with session_scope(ctx.engine) as session:
        board = metrics.summary(session, start=start, end=end, group_by=metrics.GroupBy.OWNER,
                                settings=settings)
        reps = [r for r in metrics.sort_rows(board["data"], "-bookings", metrics.GroupBy.OWNER)
                if r["owner_email"] and r["person_id"] is not None]
        domain = reps[0]["owner_email"].split("@")[1] if reps else "example.com"
        links = [("manager (every team)", _demo_user(session, f"manager@{domain}",
                                                     Role.MANAGER, name="Demo Manager"))]
        if reps:
            rep = reps[0]
            links.append((f"rep {rep['owner_name']} (only their own numbers)", _demo_user(
                session, rep["owner_email"], Role.REP, person_id=rep["person_id"])))
    console.print(f"\ndashboard: {base}/ (one-time sign-in links, valid for 3 days):")
    for who, token in links:
        print(f"  {who}: {welcome_url(base, token)}")


def _demo_user(session: Session, email: str, role: Role, *, name: str = "",
               person_id: int | None = None) -> str:
    """A one-time link for the dashboard user `email`, added with `role` if new."""
    try:
        user = accounts.find_user(session, email)
    except AccountError:
        user = accounts.add_user(session, email=email, role=role, name=name,
                                 person_id=person_id)
    return accounts.create_link(session, user, LinkPurpose.INVITE)


def _this_quarter() -> tuple[date, date]:
    now = date.today()
    first = date(now.year, 3 * ((now.month - 1) // 3) + 1, 1)
    after = date(first.year + (first.month == 10), (first.month + 2) % 12 + 1, 1)
    return first, after - timedelta(days=1)


def _demo_connection(ctx: JobContext, provider: str, sandbox_url: str) -> int:
    """The demo's connection to a provider's sandbox, pointed at this run's sandbox port."""
    sandbox = sandboxes()[provider]
    name, config, secrets = sandbox.demo_name, sandbox.config(sandbox_url), dict(sandbox.secrets)
    with session_scope(ctx.engine) as session:
        existing = session.scalars(
            select(Connection).where(col(Connection.name) == name)).first()
        if existing is None:
            public = create_connection(session, ctx.secrets, ConnectionInput(
                provider=provider, name=name, config=config, secrets=secrets),
                endpoints=ctx.endpoints)
        else:
            public = update_connection(session, ctx.secrets, existing,
                                       ConnectionPatch(config=config, secrets=secrets),
                                       endpoints=ctx.endpoints)
        return int(public["id"])


def _print_summary(ctx: JobContext, connection_id: int) -> None:
    with session_scope(ctx.engine) as session:
        numbers = store_summary(session, connection_id)
        connection = session.get(Connection, connection_id)
        home_currency = connection.home_currency if connection else ""
    table = Table(title="synced into the store", show_header=False)
    table.add_row("active reps", f"{numbers['reps']:,}")
    table.add_row("accounts", f"{numbers['accounts']:,}")
    table.add_row("deals", f"{numbers['deals']:,}")
    table.add_row("won deals", f"{numbers['won_deals']:,}")
    won = numbers["won_amount"] or Decimal(0)
    table.add_row("won amount", f"{won:,.2f} {home_currency}")
    console.print(table)
