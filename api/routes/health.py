"""GET /health: open, for load balancers and orchestrators."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and database reachability")
def health(engine: EngineDep) -> Any:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means the database does not answer
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if engine.url.password:
            reason = reason.replace(str(engine.url.password), "***")
        return JSONResponse({"status": "unavailable", "database": f"error: {reason}"}, 503)
    return {"status": "ok", "database": "ok"}
