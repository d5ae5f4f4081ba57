"""`crmsync digest ...`: scheduled digests to team chats (docs/digests.md): the channels
(chat robots), a preview of the exact message, a send now, and the chat robot sandbox."""

import asyncio
import json
from typing import Annotated

import typer
import uvicorn
from rich.table import Table

from api.chat_sandbox import SANDBOX_ROBOTS, create_app, sandbox_robots
from cli.context import checked_context
from cli.output import console, fail, when
from core.db import session_scope
from core.digests import channels
from core.digests.content import LANGUAGES, SECTIONS
from core.digests.platforms import PLATFORMS
from workers.digests import preview, send_now

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
channels_app = typer.Typer(help="The chat robots digests go to.", no_args_is_help=True)
app.add_typer(channels_app, name="channels")

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@channels_app.command("add")
def channels_add(
    name: Annotated[str, typer.Option(help="A name for the channel (unique).")],
    platform: Annotated[str, typer.Option(help=", ".join(PLATFORMS))],
    url: Annotated[str, typer.Option(
        prompt="Webhook URL", hide_input=True, envvar="CRMSYNC_DIGEST_URL",
        help="The robot's webhook URL (asked for when not given; it holds the key).")],
    secret: Annotated[str | None, typer.Option(
        envvar="CRMSYNC_DIGEST_SECRET",
        help="DingTalk 加签 / Feishu signature secret, when the robot has one.")] = None,
    language: Annotated[str, typer.Option(help=" or ".join(LANGUAGES))] = "en",
    monthly: Annotated[bool, typer.Option(
        "--monthly/--weekly", help="Monthly on --day 1-28, or weekly on --day 0 (Monday)"
        "-6.")] = False,
    day: Annotated[int, typer.Option(help="Weekday 0-6 (weekly) or day 1-28 (monthly).")] = 0,
    hour: Annotated[int, typer.Option(help="Hour 0-23 in CRMSYNC_TIMEZONE.")] = 9,
    team: Annotated[str | None, typer.Option(help="Only this team (default: everyone).")]
    = None,
    section: Annotated[list[str] | None, typer.Option(
        help=f"Sections (repeatable): {', '.join(SECTIONS)}; default all.")] = None,
) -> None:
    """Add a digest channel; the URL and secret are stored encrypted."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            channel = channels.create_channel(
                session, ctx.secrets, url=url, secret=secret, name=name, platform=platform,
                language=language, cadence="monthly" if monthly else "weekly", day=day,
                hour=hour, team=team, sections=section or list(SECTIONS))
            shown = channels.public(ctx.secrets, channel)
    except channels.ChannelError as exc:
        raise fail(str(exc)) from None
    console.print(f"digest channel {shown['id']} ({shown['name']}) added: {_when(shown)}")


@channels_app.command("list")
def channels_list() -> None:
    """The digest channels, when they send and how the last send went."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        rows = [channels.public(ctx.secrets, c) for c in channels.channels(session)]
    table = Table("id", "name", "platform", "host", "language", "schedule", "team",
                  "last sent", "last error")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["platform"], r["host"] or "", r["language"],
                      _when(r) + ("" if r["enabled"] else " (off)"), r["team"] or "everyone",
                      when(r["last_sent_at"]), r["last_error"] or "")
    console.print(table)


@channels_app.command("remove")
def channels_remove(channel: Annotated[str, typer.Argument(help="Id or name.")]) -> None:
    """Remove a digest channel (and its delivery history)."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            found = channels.find_channel(session, channel)
            channels.delete_channel(session, int(found.id or 0))
    except channels.ChannelNotFound as exc:
        raise fail(str(exc)) from None
    console.print(f"digest channel {channel} removed")


@app.command("preview")
def digest_preview(channel: Annotated[str, typer.Argument(help="Id or name.")]) -> None:
    """Print the exact message body the channel's robot would get now (nothing is sent)."""
    ctx = checked_context()
    try:
        body = preview(ctx, channel)
    except (channels.ChannelNotFound, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


@app.command("send")
def digest_send(
    channel: Annotated[str, typer.Argument(help="Id or name.")],
    test: Annotated[bool, typer.Option(help="Title it as a test message.")] = False,
) -> None:
    """Send the channel's digest of its latest period now."""
    ctx = checked_context()
    try:
        outcome = asyncio.run(send_now(ctx, channel, test=test))
    except (channels.ChannelNotFound, ValueError) as exc:
        raise fail(str(exc)) from None
    if not outcome.ok:
        raise fail(outcome.error or "not sent")
    console.print(f"digest sent to {channel}")


@app.command("sandbox")
def digest_sandbox(
    port: Annotated[int, typer.Option()] = 8790,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Simulated WeCom, DingTalk, Feishu and Slack robots that verify signatures and
    formats like the real ones (one robot each, credentials printed)."""
    base = f"http://{host}:{port}"
    adds = "".join(f"  {name:<8} --url '{base}{path}'" + (f" --secret {secret}" if secret else "")
                   + "\n" for name, (path, secret) in SANDBOX_ROBOTS.items())
    console.print(f"chat robot sandbox on {base}; set CRMSYNC_ALLOW_ENDPOINTS={host}:{port} "
                  f"for crmsync, then add channels with:\n{adds}"
                  f"What they received: {base}/_sandbox/received", highlight=False)
    uvicorn.run(create_app(sandbox_robots()), host=host, port=port, log_level="info",
                access_log=False)


def _when(row: dict[str, object]) -> str:
    day, hour = int(str(row["day"])), int(str(row["hour"]))
    if row["cadence"] == "weekly":
        return f"weekly, {DAYS[day]} {hour:02}:00"
    return f"monthly, day {day} {hour:02}:00"
