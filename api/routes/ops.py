"""GET /ops/prometheus: crmsync's metrics in the Prometheus text format (read scope).

Figures come from the database at scrape time (core.prometheus), so scraping any
one API replica covers the work of every worker.
"""

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.deps import SessionDep, require
from core.prometheus import CONTENT_TYPE, prometheus_text

router = APIRouter(tags=["operations"], dependencies=[Depends(require("read"))])


@router.get("/ops/prometheus", summary="Metrics for Prometheus (text format 0.0.4)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def prometheus(session: SessionDep) -> Response:
    return Response(prometheus_text(session), media_type=CONTENT_TYPE)
