"""Signing in and out, setting a password through a one-time link, and the language."""

import math
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from api.access import SESSION_COOKIE
from api.deps import EngineDep
from api.web import guard
from api.web.i18n import LANG_COOKIE, LANGUAGES, text
from api.web.render import PageRoute, error_page, language, local_path, redirect, render
from core import accounts
from core.accounts import MAX_PASSWORD, MIN_PASSWORD
from core.db import session_scope

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HOME = "/leaderboard"
FormText = Annotated[str, Form()]
MAX_EMAIL = 320
LANG_MAX_AGE = 365 * 24 * 3600


@router.get("/")
def home(request: Request) -> Response:
    return redirect(HOME if guard.current(request) else "/login")


def _login_form(request: Request, *, status: int = 200, error: str = "", email: str = "",
                next_url: str = HOME, notice: str = "") -> Response:
    token = guard.form_token(request)
    response = render(request, "login.html", status=status, csrf=token, error=error,
                      email=email, next_url=next_url, notice=notice)
    guard.keep_form_token(response, request, token)
    return response


@router.get("/login")
def login_page(request: Request, after: Annotated[str, Query(alias="next")] = "",
               signed_out: Annotated[str, Query(alias="signed-out")] = "") -> Response:
    next_url = local_path(after, HOME)
    if guard.current(request) is not None:
        return redirect(next_url)
    lang = language(request)
    return _login_form(request, next_url=next_url,
                       notice=text(lang, "login.signed_out") if signed_out else "")


@router.post("/login")
def login(request: Request, engine: EngineDep, email: FormText = "", password: FormText = "",
          csrf: FormText = "", after: Annotated[str, Form(alias="next")] = "") -> Response:
    """Sign in: a session cookie and off to `next`; or the form again, saying why not."""
    lang = language(request)
    if not guard.form_token_ok(request, csrf):
        return error_page(request, 403, "error.refused.title", text(lang, "error.csrf"))
    next_url = local_path(after, HOME)
    address = request.client.host if request.client else ""
    email = email.strip()[:MAX_EMAIL]
    wait = 0
    cookie = ""
    with session_scope(engine) as session:  # a failure is recorded: commit it too
        try:
            user = accounts.authenticate(session, email, password, address=address)
        except accounts.LoginRefused:
            pass
        except accounts.TooManyAttempts as exc:
            wait = exc.retry_after
        else:
            cookie, _ = accounts.open_session(session, user)
    if cookie:
        signed_in = redirect(next_url)
        guard.set_session(signed_in, request, cookie)
        return signed_in
    if wait:
        message = (text(lang, "login.throttled_minutes", n=math.ceil(wait / 60)) if wait > 60
                   else text(lang, "login.throttled_seconds", n=wait))
        response = _login_form(request, status=429, error=message, email=email,
                               next_url=next_url)
        response.headers["Retry-After"] = str(wait)
        return response
    return _login_form(request, status=401, error=text(lang, "login.wrong"), email=email,
                       next_url=next_url)


@router.post("/logout")
def logout(request: Request, engine: EngineDep, csrf: FormText = "") -> Response:
    signed = guard.current(request)
    if signed is None:
        return redirect("/login")
    if not guard.session_token_ok(signed, csrf):
        return error_page(request, 403, "error.refused.title",
                          text(language(request), "error.csrf"), signed=signed)
    with session_scope(engine) as session:
        accounts.close_session(session, request.cookies.get(SESSION_COOKIE))
    response = redirect("/login?signed-out=1")
    guard.clear_session(response, request)
    return response


def _welcome_form(request: Request, email: str, *, status: int = 200,
                  error: str = "") -> Response:
    token = guard.form_token(request)
    response = render(request, "welcome.html", status=status, csrf=token, error=error,
                      email=email, min_length=MIN_PASSWORD)
    guard.keep_form_token(response, request, token)
    return response


def _dead_link(request: Request) -> Response:
    return error_page(request, 410, "welcome.title", text(language(request), "welcome.dead"))


@router.get("/welcome/{token}")
def welcome_page(request: Request, token: str, engine: EngineDep) -> Response:
    """The form to set a password through a one-time link (showing it spends nothing)."""
    with session_scope(engine) as session:
        user = accounts.link_user(session, token)
        email = user.email if user is not None else ""
    if user is None:
        return _dead_link(request)
    return _welcome_form(request, email)


@router.post("/welcome/{token}")
def welcome(request: Request, token: str, engine: EngineDep, password: FormText = "",
            confirm: FormText = "", csrf: FormText = "") -> Response:
    """Set the password (the link then stops working) and sign in."""
    lang = language(request)
    if not guard.form_token_ok(request, csrf):
        return error_page(request, 403, "error.refused.title", text(lang, "error.csrf"))
    with session_scope(engine) as session:
        user = accounts.link_user(session, token)
        if user is None:
            return _dead_link(request)
        email = user.email
        problem = ""
        if len(password) < MIN_PASSWORD:
            problem = text(lang, "welcome.too_short", n=MIN_PASSWORD)
        elif len(password) > MAX_PASSWORD:
            problem = text(lang, "welcome.too_long", n=MAX_PASSWORD)
        elif password != confirm:
            problem = text(lang, "welcome.mismatch")
        if problem:
            return _welcome_form(request, email, status=400, error=problem)
        try:
            user = accounts.use_link(session, token, password)
        except accounts.LoginRefused:  # spent meanwhile
            return _dead_link(request)
        cookie, _ = accounts.open_session(session, user)
    response = redirect(HOME)
    guard.set_session(response, request, cookie)
    return response


@router.get("/language")
def switch_language(request: Request, chosen: Annotated[str, Query(alias="set")] = "",
                    back: Annotated[str, Query(alias="next")] = "") -> Response:
    """Remember the language chosen (a cookie) and go back to the page."""
    response = redirect(local_path(back, HOME))
    if chosen in LANGUAGES:
        response.set_cookie(LANG_COOKIE, chosen, max_age=LANG_MAX_AGE, path="/",
                            secure=request.url.scheme == "https", samesite="lax")
    return response
