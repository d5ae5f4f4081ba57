"""GET /ops/prometheus: crmsync's metrics in the Prometheus text format (an API key with
the read scope, or a signed-in admin).

Figures come from the database at scrape time (core.prometheus), so scraping any
one API replica covers the work of every worker.
"""

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.access import caller
from api.deps import SessionDep
from core.prometheus import CONTENT_TYPE, prometheus_text

router = APIRouter(tags=["operations"], dependencies=[Depends(caller("read", users="admin"))])


@router.get("/ops/prometheus", summary="Metrics for Prometheus (text format 0.0.4)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def prometheus(session: SessionDep) -> Response:
    return Response(prometheus_text(session), media_type=CONTENT_TYPE)
