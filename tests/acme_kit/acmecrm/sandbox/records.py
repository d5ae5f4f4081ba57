"""The Acme sandbox's read API: /me, /users and /stages whole; /accounts, /deals and
/deleted oldest change first, from `since` (inclusive), `limit` rows a page, the next
page by the `next_cursor` of the one before."""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from acmecrm.sandbox import wire
from acmecrm.sandbox.errors import bad_request
from acmecrm.sandbox.state import AcmeState
from acmecrm.wire import parse_stamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.sandbox.dataset import Deletion, epoch_seconds
from connectors.sandbox.paging import SortedIndex, Window

T = TypeVar("T")
MAX_LIMIT = 200


async def me(request: Request, state: AcmeState) -> Response:
    return JSONResponse(wire.me_json(state.company))


async def users(request: Request, state: AcmeState) -> Response:
    return JSONResponse({"data": [wire.user_json(r) for r in state.company.reps]})


async def stages(request: Request, state: AcmeState) -> Response:
    return JSONResponse({"data": [wire.stage_json(s) for s in state.company.stages]})


async def accounts(request: Request, state: AcmeState) -> Response:
    company = state.company
    return _page(request, state, company.index("accounts", "modified_at").window(),
                 lambda account: wire.account_json(company, account))


async def deals(request: Request, state: AcmeState) -> Response:
    company = state.company
    return _page(request, state, company.index("deals", "modified_at").window(),
                 lambda deal: wire.deal_json(company, deal))


async def deleted(request: Request, state: AcmeState) -> Response:
    index: SortedIndex[Deletion] = SortedIndex(
        state.company.deletions, lambda d: (epoch_seconds(d.deleted_at), d.id))
    return _page(request, state, index.window(), wire.deletion_json)


def _page(request: Request, state: AcmeState, window: Window[T],
          to_json: Callable[[T], dict[str, Any]]) -> Response:
    """The page of `window` the query asks for; a cursor is bound to its path and `since`."""
    query = request.query_params
    since, token = query.get("since"), query.get("cursor")
    try:
        limit = int(query.get("limit") or MAX_LIMIT)
        if since:
            window = window.starting_at((epoch_seconds(parse_stamp(since)), ""))
    except ValueError:
        raise bad_request("limit is a number; since is a time like 2025-01-31T12:00:00Z"
                          ) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit is 1 to {MAX_LIMIT}")
    binding = (("path", request.url.path), ("since", since or ""))
    if token:
        resume = state.cursors.get(token)
        if resume is None or resume.binding != binding or resume.expires_at <= time.time():
            raise bad_request("cursor unknown, expired or from another query")
        page = window.after(resume.last_key, limit, descending=False)
    else:
        page = window.page(0, limit, descending=False)
    next_cursor = None
    if page.more and page.last_key is not None:
        next_cursor, _ = state.cursors.mint(binding=binding, last_key=page.last_key,
                                            served=0, page=0, previous=None)
    return JSONResponse({"data": [to_json(r) for r in page.items], "next_cursor": next_cursor})
