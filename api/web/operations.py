"""The Operations page (admins only; anyone else gets 403, also by URL): the connections
with their last and next sync, errors and a "sync now" button, webhook health, the stage
history backfill of each connection whose CRM keeps it (deals read, last run, error, and a
"backfill stage history" button), and the
API keys (create, with the key shown once; revoke), and the digest channels with their last
send and a "send test" button (docs/digests.md). docs/dashboard.md.

The same core and job functions as the API's routes: "sync now" enqueues the job POST
/api/v1/connections/{id}/sync enqueues, the backfill button the job of POST
/api/v1/connections/{id}/stage-history/backfill; keys are made and revoked by core.apikeys, as
/api/v1/api-keys and `crmsync apikey` do; a test digest is sent by workers.digests.send_now,
as POST /api/v1/digests/{id}/test does. Connection secrets are never read here; of a digest
channel's sealed webhook only the host is shown.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from anyio import from_thread
from babel.dates import format_datetime
from fastapi import APIRouter, Form, Query, Request, Response
from sqlalchemy import func, select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from api.connections import backfill_state
from api.deps import JobQueue, JobsDep, SessionDep, SettingsDep, get_jobs, get_secret_box
from api.web import guard
from api.web.goals import capabilities_of
from api.web.i18n import NOTHING, Formats, text
from api.web.render import PageRoute, error_page, language, redirect, render
from core import apikeys
from core.accounts import SignedIn
from core.config import Settings
from core.digests import channels as digest_channels
from core.digests.render import Outcome
from core.models import ApiKey, Connection, DigestChannel, SyncRun
from core.security import SCOPES, SecretBox, SecretsUnreadable
from core.types import SyncMode, utcnow
from core.webhooks import WebhookHealth, webhook_health
from workers.digests import send_now
from workers.schedule import load_schedules, next_sync_at

router = APIRouter(route_class=PageRoute, include_in_schema=False)
FormText = Annotated[str, Form()]
SCHEDULED = (SyncMode.FULL, SyncMode.INCREMENTAL)
RECENT_RUNS = 10
MAX_KEYS = 500


@dataclass
class ConnectionLine:
    id: int
    name: str
    provider: str
    status: str
    last_sync: str  # when the newest scheduled-mode run finished (or started)
    last_outcome: str  # its status: queued, running, succeeded, failed; "" for none
    last_records: str  # records it fetched from the CRM
    next_sync: str
    error: str  # the connection's last error, else that of its newest run
    health: WebhookHealth
    last_received: str
    channel_expiry: str
    last_rejection: str


BACKFILL_STATES = ("never", "running", "finished", "stopped")  # ops.backfill.<state>


@dataclass
class BackfillLine:
    """A connection whose CRM keeps stage history, and where its backfill stands."""

    id: int
    name: str
    provider: str
    progress: str  # deals read of live deals
    state: str  # one of BACKFILL_STATES
    last_run: str
    error: str


@dataclass
class RunLine:
    id: int
    connection: str
    mode: str
    status: str
    started: str
    finished: str
    records: str
    error: str


@dataclass
class KeyLine:
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created: str
    last_used: str
    revoked: str


@dataclass
class DigestLine:
    id: int
    name: str
    platform: str
    host: str
    language: str
    schedule: str
    team: str
    last_sent: str
    error: str


def records_of(counts: dict[str, Any] | None) -> int | None:
    """Records a run fetched from the CRM, over its streams (counts[stream]["fetched"])."""
    if not counts:
        return None
    return sum(int(c.get("fetched", 0)) for c in counts.values() if isinstance(c, dict))


class When:
    """Timestamps in CRMSYNC_TIMEZONE, as the language writes them."""

    def __init__(self, fmt: Formats, settings: Settings) -> None:
        self.fmt, self.zone = fmt, ZoneInfo(settings.timezone)

    def __call__(self, value: datetime | None) -> str:
        if value is None:
            return NOTHING
        return format_datetime(value, "medium", tzinfo=self.zone, locale=self.fmt.locale)


def _connections(session: Session, when: When, lang: str) -> list[ConnectionLine]:
    connections = list(session.scalars(select(Connection).order_by(col(Connection.id))))
    ids = [int(c.id or 0) for c in connections]
    newest = (select(func.max(col(SyncRun.id))).where(col(SyncRun.mode).in_(SCHEDULED))
              .group_by(col(SyncRun.connection_id)))
    runs = {r.connection_id: r for r in session.scalars(
        select(SyncRun).where(col(SyncRun.id).in_(newest)))}
    now = utcnow()
    schedules = {s.connection_id: s for s in load_schedules(session)}
    health = webhook_health(session, ids, now=now)
    out = []
    for c in connections:
        cid = int(c.id or 0)
        run = runs.get(cid)
        schedule = schedules.get(cid)
        upcoming = next_sync_at(schedule, now) if schedule else None
        records = records_of(run.counts) if run else None
        if upcoming is None:
            next_text = text(lang, "ops.waiting_for_admin")
        elif upcoming <= now:
            next_text = text(lang, "ops.due_now")
        else:
            next_text = when(upcoming)
        h = health[cid]
        out.append(ConnectionLine(
            cid, c.name, c.provider, str(c.status),
            when(run.finished_at or run.started_at or run.created_at) if run else NOTHING,
            str(run.status) if run else "",
            when.fmt.number(records) if records is not None else NOTHING,
            next_text, c.last_error or (run.error if run and run.error else "") or "",
            h, when(h.last_received_at),
            _channels(h, c.provider, when, lang),
            h.last_rejection or ""))
    return out


def _channels(health: WebhookHealth, provider: str, when: When, lang: str) -> str:
    """The first expiry of the connection's notification channels; "no channel yet" when
    its connector subscribes to channels but has none; "–" when it has no such thing."""
    if health.channels:
        return when(health.channel_expires_at)
    if "channels" in capabilities_of(provider):
        return text(lang, "ops.no_channels")
    return NOTHING


def _backfills(session: Session, jobs: JobQueue, when: When) -> list[BackfillLine]:
    """Connections whose provider keeps stage history, and where their backfill stands: what
    GET /api/v1/connections/{id}/stage-history answers (api.connections.backfill_state: the
    job runner says whether one is running), as a state of BACKFILL_STATES."""
    out = []
    for c in session.scalars(select(Connection).order_by(col(Connection.id))):
        if "stage_history" not in capabilities_of(c.provider):
            continue
        s = from_thread.run(backfill_state, session, jobs, int(c.id or 0))
        state = ("running" if s.running else "never" if s.started_at is None
                 else "finished" if s.finished else "stopped")
        out.append(BackfillLine(
            int(c.id or 0), c.name, c.provider,
            f"{when.fmt.number(s.deals_done)} / {when.fmt.number(s.deals_total)}",
            state, when(s.started_at), s.last_error or ""))
    return out


def _runs(session: Session, when: When) -> list[RunLine]:
    names = {c.id: c.name for c in session.scalars(select(Connection))}
    stmt = select(SyncRun).order_by(col(SyncRun.id).desc()).limit(RECENT_RUNS)
    out = []
    for run in session.scalars(stmt):
        records = records_of(run.counts)
        out.append(RunLine(int(run.id or 0), names.get(run.connection_id, ""), str(run.mode),
                           str(run.status), when(run.started_at), when(run.finished_at),
                           when.fmt.number(records) if records is not None else NOTHING,
                           run.error or ""))
    return out


def _keys(session: Session, when: When) -> list[KeyLine]:
    stmt = select(ApiKey).order_by(col(ApiKey.id).desc()).limit(MAX_KEYS)
    return [KeyLine(int(k.id or 0), k.name, k.prefix, [s for s in k.scopes.split(",") if s],
                    when(k.created_at), when(k.last_used_at), when(k.revoked_at)
                    if k.revoked_at else "") for k in session.scalars(stmt)]


def _digests(session: Session, box: SecretBox, when: When, lang: str) -> list[DigestLine]:
    out = []
    for channel in digest_channels.channels(session):
        error = channel.last_error or ""
        try:
            host = digest_channels.public(box, channel)["host"] or NOTHING
        except SecretsUnreadable as exc:
            host, error = NOTHING, str(exc)
        schedule = text(lang, f"ops.digest_{channel.cadence}", hour=f"{channel.hour:02}:00",
                        day=text(lang, f"ops.weekday.{channel.day}")
                        if channel.cadence == "weekly" else channel.day)
        out.append(DigestLine(int(channel.id or 0), channel.name, channel.platform, host,
                              channel.language, schedule,
                              channel.team or text(lang, "ops.digest_everyone"),
                              when(channel.last_sent_at), error))
    return out


def _page(request: Request, session: Session, settings: Settings, signed: SignedIn, *,
          status: int = 200, notice: str = "", error: str = "", new_key: str = "",
          key_name: str = "", key_scopes: tuple[str, ...] = ("read",)) -> Response:
    """The page; in a worker thread (a sync route, or run_in_threadpool), as it asks the job
    runner on the event loop (_backfills)."""
    lang = language(request)
    when = When(Formats(lang), settings)
    return render(request, "operations.html", status=status, signed=signed, nav="operations",
                  connections=_connections(session, when, lang),
                  backfills=_backfills(session, get_jobs(request), when),
                  runs=_runs(session, when), keys=_keys(session, when), scopes=SCOPES,
                  digests=_digests(session, get_secret_box(request), when, lang),
                  notice=notice, error=error, new_key=new_key, key_name=key_name,
                  key_scopes=key_scopes, zone=settings.timezone)


def _admin(request: Request, csrf: str | None = None) -> SignedIn | Response:
    """The signed-in admin (with a form's CSRF token when `csrf` is given), or the page
    that says no: sign in, 403."""
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    lang = language(request)
    if not signed.viewer.is_admin:
        return error_page(request, 403, "error.refused.title", text(lang, "ops.admins_only"),
                          signed=signed)
    if csrf is not None and not guard.session_token_ok(signed, csrf):
        return error_page(request, 403, "error.refused.title", text(lang, "error.csrf"),
                          signed=signed)
    return signed


@router.get("/operations")
def operations(request: Request, session: SessionDep, settings: SettingsDep,
               run: Annotated[str, Query()] = "", revoked: Annotated[str, Query()] = "",
               backfill: Annotated[str, Query()] = "") -> Response:
    signed = _admin(request)
    if isinstance(signed, Response):
        return signed
    lang = language(request)
    notice = ""
    if run.isdigit():
        notice = text(lang, "ops.sync_queued", run=int(run))
    elif revoked.isdigit():
        notice = text(lang, "ops.key_revoked", id=int(revoked))
    elif backfill.isdigit() and len(backfill) < 10:
        chosen = session.get(Connection, int(backfill))
        notice = text(lang, "ops.backfill_queued", name=chosen.name) if chosen else ""
    return _page(request, session, settings, signed, notice=notice)


async def _admin_and_connection(request: Request, session: Session, csrf: str,
                                connection_id: str, valid: bool = True
                                ) -> tuple[SignedIn, Connection] | Response:
    """The signed-in admin (CSRF-checked) and the connection a form names, or the page that
    says no (403, or 404 for no such connection or when the rest of the form is not
    `valid`)."""
    signed = await run_in_threadpool(_admin, request, csrf)
    if isinstance(signed, Response):
        return signed
    chosen = session.get(Connection, int(connection_id)) if connection_id.isdigit() and \
        len(connection_id) < 10 else None
    if chosen is None or not valid:
        return error_page(request, 404, "error.not_found.title",
                          text(language(request), "error.not_found"), signed=signed)
    return signed, chosen


@router.post("/operations/sync")
async def sync_now(request: Request, session: SessionDep, jobs: JobsDep,
                   csrf: FormText = "", connection_id: FormText = "",
                   mode: FormText = SyncMode.INCREMENTAL) -> Response:
    """Queue a sync of the connection: the job the API's sync route enqueues (a sync
    already queued or running is answered instead of a second one)."""
    found = await _admin_and_connection(request, session, csrf, connection_id,
                                        mode in SCHEDULED)
    if isinstance(found, Response):
        return found
    _, chosen = found
    run_id = await jobs.enqueue_sync(int(chosen.id or 0), SyncMode(mode))
    return redirect(f"/operations?run={run_id}")


@router.post("/operations/backfill")
async def backfill_now(request: Request, session: SessionDep, settings: SettingsDep,
                       jobs: JobsDep, csrf: FormText = "", connection_id: FormText = ""
                       ) -> Response:
    """Queue the connection's stage history backfill: the job POST
    /api/v1/connections/{id}/stage-history/backfill enqueues (it resumes where the last one
    stopped); one already queued or running is said so (409)."""
    found = await _admin_and_connection(request, session, csrf, connection_id)
    if isinstance(found, Response):
        return found
    signed, chosen = found
    lang = language(request)
    if "stage_history" not in capabilities_of(chosen.provider):
        return error_page(request, 404, "error.not_found.title", text(lang, "error.not_found"),
                          signed=signed)
    if await jobs.enqueue_backfill(int(chosen.id or 0)):
        return redirect(f"/operations?backfill={int(chosen.id or 0)}")
    return await run_in_threadpool(_page, request, session, settings, signed, status=409,
                                   error=text(lang, "ops.backfill_busy", name=chosen.name))


@router.post("/operations/keys")
async def create_key(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """A new API key, shown on the answer only (never stored, never shown again)."""
    form = await request.form()
    scopes = tuple(str(s) for s in form.getlist("scopes"))
    name = str(form.get("name", ""))
    csrf = str(form.get(guard.CSRF_FIELD, ""))
    return await run_in_threadpool(_create_key, request, session, settings, csrf, name, scopes)


def _create_key(request: Request, session: Session, settings: Settings, csrf: str, name: str,
                scopes: tuple[str, ...]) -> Response:
    signed = _admin(request, csrf)
    if isinstance(signed, Response):
        return signed
    lang = language(request)
    if not name.strip() or len(name.strip()) > apikeys.MAX_NAME:
        problem = text(lang, "ops.key_bad_name", n=apikeys.MAX_NAME)
    elif not scopes or any(s not in SCOPES for s in scopes):
        problem = text(lang, "ops.key_bad_scopes")
    else:
        row, key = apikeys.create_key(session, name=name, scopes=list(scopes))
        session.commit()
        return _page(request, session, settings, signed, status=201, new_key=key,
                     notice=text(lang, "ops.key_created", name=row.name))
    return _page(request, session, settings, signed, status=422, error=problem,
                 key_name=name[:apikeys.MAX_NAME], key_scopes=scopes)


@router.post("/operations/keys/{key_id}/revoke")
def revoke_key(request: Request, session: SessionDep, key_id: str,
               csrf: FormText = "") -> Response:
    signed = _admin(request, csrf)
    if isinstance(signed, Response):
        return signed
    try:
        if not key_id.isdigit() or len(key_id) > 10:
            raise apikeys.KeyNotFound(key_id)
        apikeys.revoke_key(session, int(key_id))
    except apikeys.KeyNotFound:
        return error_page(request, 404, "error.not_found.title",
                          text(language(request), "error.not_found"), signed=signed)
    session.commit()
    return redirect(f"/operations?revoked={int(key_id)}")


@router.post("/operations/digests/{channel_id}/test")
async def test_digest(request: Request, session: SessionDep, settings: SettingsDep,
                      channel_id: str, csrf: FormText = "") -> Response:
    """Send the channel's digest now, titled as a test; the page says how it went (the
    platform's refusal, e.g. a signature mismatch, word for word)."""
    signed = await run_in_threadpool(_admin, request, csrf)
    if isinstance(signed, Response):
        return signed
    lang = language(request)
    channel = session.get(DigestChannel, int(channel_id)) \
        if channel_id.isdigit() and len(channel_id) < 10 else None
    if channel is None:
        return error_page(request, 404, "error.not_found.title", text(lang, "error.not_found"),
                          signed=signed)
    try:
        outcome = await send_now(request.app.state.ctx, channel_id, test=True)
    except ValueError as exc:  # no rate for a currency, unreadable secrets
        outcome = Outcome(ok=False, error=str(exc))
    session.expire_all()  # the send recorded last_sent_at / last_error in its own session
    if outcome.ok:
        notice, problem = text(lang, "ops.digest_sent", name=channel.name), ""
    else:
        notice, problem = "", text(lang, "ops.digest_failed", name=channel.name,
                                   error=outcome.error or "")
    return await run_in_threadpool(_page, request, session, settings, signed, notice=notice,
                                   error=problem)


__all__ = ["BACKFILL_STATES", "records_of", "router"]

