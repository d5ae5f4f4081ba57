"""API keys: created with the key shown once; only its sha256 is kept."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.access import caller
from api.deps import SessionDep
from api.errors import ApiError
from api.listing import FILES, Id, ListParams, list_response
from api.schemas import Answer
from core import apikeys
from core.queries import api_keys_listing
from core.security import parse_scopes

router = APIRouter(prefix="/api-keys", tags=["api keys"], dependencies=[Depends(caller("admin"))])


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    scopes: list[str] = Field(
        default_factory=lambda: ["read"],
        description="read, write, push, admin (admin > push > write > read)",
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return parse_scopes(value)


class ApiKeyPublic(Answer):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="Shown once; store it now.")


class ApiKeyPage(Answer):
    data: list[ApiKeyPublic]
    next_cursor: str | None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    data = {name: row[name] for name in ApiKeyPublic.model_fields if name != "scopes"}
    return {**data, "scopes": [s for s in str(row["scopes"]).split(",") if s]}


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_key(body: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    row, key = apikeys.create_key(session, name=body.name, scopes=body.scopes)
    session.commit()
    return ApiKeyCreated(**_public(row.model_dump()), key=key)


@router.get("", response_model=ApiKeyPage, responses=FILES,
            summary="List API keys (never the keys themselves)")
def list_keys(
    request: Request, params: Annotated[ListParams, Query()], session: SessionDep
) -> Response:
    return list_response(request, session, params, api_keys_listing(), name="api-keys",
                         columns=ApiKeyPublic.model_fields, public=_public)


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
def revoke_key(key_id: Id, session: SessionDep) -> Response:
    try:
        apikeys.revoke_key(session, key_id)
    except apikeys.KeyNotFound as exc:
        raise ApiError(404, str(exc)) from None
    session.commit()
    return Response(status_code=204)
