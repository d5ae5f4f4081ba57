"""The FastAPI application: create_app() and its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors, web
from api.deps import JobQueue
from api.errors import ERRORS
from api.limits import BodyLimitMiddleware
from api.routes import (
    connections,
    digests,
    fx,
    goals,
    health,
    history,
    hygiene,
    incentives,
    keys,
    metrics,
    ops,
    people,
    records,
    sync_runs,
    webhooks,
)
from api.webhook_path import WebhookPath
from api.webhook_path import takes as takes_webhook
from core import collector
from core.config import Settings, get_settings
from core.db import prepare_database
from workers.context import JobContext, build_context
from workers.queue import ArqRunner
from workers.runner import InProcessRunner

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"


class Api(FastAPI):
    """FastAPI with the webhook intake's thin path (api.webhook_path) in front: vendors'
    callbacks skip the framework's routing and request handling.

    The path sits at the top of the middleware stack, and while FastAPI's own OpenTelemetry
    instrumentation is off (checked when the stack is built, at the first request) callbacks
    are handed to it before FastAPI.__call__, whose per-request check of that
    instrumentation cost about a third of a callback's CPU."""

    webhook_path: WebhookPath | None = None
    untraced = False

    def build_middleware_stack(self) -> ASGIApp:
        self.webhook_path = WebhookPath(super().build_middleware_stack())
        telemetry = getattr(self, "_native_telemetry", None)
        self.untraced = telemetry is None or not telemetry.enabled()
        return self.webhook_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.untraced and self.webhook_path is not None:
            if self.root_path:  # as FastAPI.__call__ does
                scope["root_path"] = self.root_path
            if takes_webhook(scope):
                scope["app"] = self  # as Starlette.__call__ does
                await self.webhook_path.intake(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, ctx: JobContext | None = None,
               schedule: bool = False) -> FastAPI:
    """The API. `ctx` (tests, demo) supplies the engine, secrets and CRM transport to use.

    `schedule` (crmsync serve): without Redis, run the sync schedule in-process too.
    """
    settings = settings or (ctx.settings if ctx else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        job_ctx = ctx or build_context(settings, migrate_sqlite=False)
        try:
            prepare_database(job_ctx.engine)
            runner = await build_jobs(job_ctx, settings)
            if schedule and isinstance(runner, InProcessRunner):
                runner.start_scheduler()
            app.state.settings = settings
            app.state.engine = job_ctx.engine
            app.state.secrets = job_ctx.secrets
            app.state.ctx = job_ctx
            app.state.jobs = runner
            # once it has loaded; jobs running in this process (no Redis) are a worker's
            collector.tune(collector.WORKER_YOUNG if isinstance(runner, InProcessRunner)
                           else collector.API_YOUNG)
            try:
                yield
            finally:
                await runner.close()
                await job_ctx.clients.aclose()  # the jobs run here kept HTTP clients
        finally:
            if ctx is None:
                job_ctx.engine.dispose()

    app = Api(
        title="crmsync",
        version="0.1.0",
        summary="CRM data (users, accounts, stages, deals) synced into one store.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
    )
    install_docs(app)
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware)  # outermost: a 413 before anything is parsed
    app.include_router(health.router)
    app.include_router(ops.router)
    for module in (connections, sync_runs, records, history, keys, fx, metrics, webhooks,
                   goals, people, incentives, hygiene, digests):
        app.include_router(module.router, prefix=API_PREFIX)
    web.install(app)
    return app


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) from the copies in api/static (no CDN: the
    pages work offline and where public CDNs are blocked)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url), title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png")

    @app.get("/redoc", include_in_schema=False, response_class=HTMLResponse)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=str(app.openapi_url), title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False)


async def build_jobs(ctx: JobContext, settings: Settings) -> JobQueue:
    """Jobs go to arq workers through Redis when settings.redis_url is set, else they run
    in-process (the embedded default)."""
    if settings.redis_url:
        return await ArqRunner.connect(ctx, settings.redis_url)
    return InProcessRunner(ctx)


