"""The Hygiene page: the open deals that break a sales hygiene rule now, counted per rule
and per rep, and listed (all, or one rule's) with links to their records in the CRM.

Every figure comes from core.hygiene (hygiene_summary, hygiene_items), the functions of
the API's /hygiene/summary and /hygiene, for the people the user chose among those they
see (api.web.focus: a rep their own deals, a manager their teams', an admin everyone's)."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from api.deps import SessionDep, SettingsDep
from api.listing import encode_cursor
from api.web.focus import choices, deal_links, label, signed_focus
from api.web.i18n import text
from api.web.render import PageRoute, error_page, language, page_after, render
from core.hygiene import RULES, hygiene_items, hygiene_summary, rules
from core.queries import fetch_page

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 50


@router.get("/hygiene")
def hygiene_page(
    request: Request, session: SessionDep, settings: SettingsDep,
    show: Annotated[str, Query()] = "", rule: Annotated[str, Query()] = "",
    cursor: Annotated[str, Query()] = "",
) -> Response:
    found = signed_focus(request, session, show)
    if isinstance(found, Response):
        return found
    signed, focus = found
    lang = language(request)
    rule = rule.strip()
    if rule and rule not in RULES:
        return error_page(request, 400, "error.bad_request.title",
                          text(lang, "error.bad_rule"), signed=signed)
    after = page_after(request, cursor, signed)
    if isinstance(after, Response):
        return after
    states = rules(session)
    summary = hygiene_summary(session, settings=settings, people=focus.people)
    listing = hygiene_items(session, settings=settings, people=focus.people, rule=rule or None)
    deals, next_after = fetch_page(session, listing, after=after, limit=PAGE_SIZE)
    base = {**({"show": focus.choice.value} if focus.choice.value else {}),
            **({"rule": rule} if rule else {})}

    def href(**changes: str) -> str:
        query = {k: v for k, v in {**base, **changes}.items() if v}
        return "/hygiene" + (f"?{urlencode(query)}" if query else "") + "#deals"

    return render(
        request, "hygiene.html", signed=signed, nav="hygiene",
        form={"show": focus.choice.value, "rule": rule},
        options=choices(session, signed.viewer), who=label(lang, focus), summary=summary,
        thresholds={s.key: s.threshold for s in states},
        disabled=text(lang, "list.separator").join(
            text(lang, f"hygiene.short.{s.key}") for s in states if not s.enabled),
        rule=rule, deals=deals,
        links=deal_links(session, deals), href=href,
        first_href=href() if after is not None else None,
        next_href=href(cursor=encode_cursor(next_after)) if next_after else None)


__all__ = ["router"]
