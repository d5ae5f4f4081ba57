"""Rendering the dashboard's pages: the Jinja2 templates, the language of a request, and
the headers every page carries (no framing, no other origin's scripts or styles, no
caching of private numbers, no referrer to other sites)."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.listing import decode_cursor
from api.web.i18n import HTML_LANG, LANG_COOKIE, LANGUAGES, Formats, pick_language, text
from core.accounts import SignedIn

TEMPLATES = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
ASSETS_URL = "/assets"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}



@dataclass(frozen=True)
class Column:
    """A heading of a table (the data_table macro of macros.html): its text, its classes,
    and optionally a tooltip, a text for screen readers only (a column of buttons), or a
    link with its tooltip and the column's sort order (aria-sort)."""

    label: str
    css: str = ""
    title: str = ""
    hidden: bool = False
    href: str = ""
    link_title: str = ""
    sort: str | None = None  # ascending, descending


_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.globals["column"] = Column


class PageRoute(APIRoute):
    """A page: its answer, whatever it is (a page, a redirect, an error page), carries
    PAGE_HEADERS."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(PAGE_HEADERS)
            return response

        return page


def language(request: Request) -> str:
    """The `lang` cookie's language, else the browser's (Accept-Language)."""
    return pick_language(request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))


def render(request: Request, template: str, *, status: int = 200,
           signed: SignedIn | None = None, nav: str = "", **context: Any) -> HTMLResponse:
    """`template` in the request's language. Every template gets t() (the messages),
    fmt (formats), lang, the signed-in user and its CSRF token (for the sign-out form),
    and `nav`, the menu entry of the page."""
    lang = language(request)
    other = next(code for code in LANGUAGES if code != lang)

    def t(key: str, **values: Any) -> str:
        return text(lang, key, **values)

    html = _env.get_template(template).render(
        t=t, fmt=Formats(lang), lang=lang, html_lang=HTML_LANG[lang], assets=ASSETS_URL,
        other_lang=other, other_html_lang=HTML_LANG[other], nav=nav,
        signed=signed, viewer=signed.viewer if signed else None,
        here=_here(request), **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, message: str, *,
               signed: SignedIn | None = None) -> HTMLResponse:
    """An error as a page: `title` a message key, `message` already in the language."""
    return render(request, "error.html", status=status, signed=signed, title_key=title,
                  message=message)


def page_after(request: Request, cursor: str, signed: SignedIn) -> Response | int | None:
    """The position after which a paged list's page starts (None: the first page), from
    its `cursor`; or a 400 page for a cursor no list gave."""
    try:
        return decode_cursor(cursor)
    except RequestValidationError:
        return error_page(request, 400, "error.bad_request.title",
                          text(language(request), "error.bad_page"), signed=signed)


def _here(request: Request) -> str:
    """This page's path and query (where the language switch comes back to)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def local_path(value: str | None, default: str) -> str:
    """`value` when it is a path on this site (so a redirect to it stays here), else
    `default`."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) \
            and "\n" not in value and "\r" not in value and len(value) <= 2000:
        return value
    return default


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


__all__ = ["ASSETS_URL", "STATIC_DIR", "Column", "PageRoute", "error_page", "language",
           "local_path", "page_after", "redirect", "render"]
