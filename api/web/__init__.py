"""The dashboard (docs/dashboard.md): server-rendered pages for people who sign in, in
English and Chinese, beside the API. Pages call the same core functions as the API."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.web import (
    funnel,
    goals,
    hygiene,
    leaderboard,
    operations,
    pipeline,
    scorecards,
    signin,
    statements,
    trends,
)
from api.web.render import ASSETS_URL, STATIC_DIR


def install(app: FastAPI) -> None:
    """The pages at the site's root (/, /login, /leaderboard, ...) and their stylesheet."""
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC_DIR), name="assets")
    app.include_router(signin.router)
    app.include_router(leaderboard.router)
    app.include_router(goals.router)
    app.include_router(operations.router)
    app.include_router(trends.router)
    app.include_router(pipeline.router)
    app.include_router(statements.router)
    app.include_router(hygiene.router)
    app.include_router(funnel.router)
    app.include_router(scorecards.router)


__all__ = ["install"]
