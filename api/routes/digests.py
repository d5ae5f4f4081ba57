"""Digest channels (admins): the chat robots scheduled digests go to (core/digests/,
docs/digests.md). The webhook URL and signing secret are write-only: answers show the
URL's host and whether the robot signs, never the URL or the secret."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from api.access import caller
from api.deps import SecretBoxDep, SessionDep
from api.errors import ApiError
from api.listing import Id
from api.schemas import Answer
from core.digests import channels
from core.digests.content import LANGUAGES, SECTIONS
from core.digests.platforms import PLATFORMS
from workers.digests import preview, send_now

router = APIRouter(prefix="/digests", tags=["digests"], dependencies=[Depends(caller("admin"))])

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ChannelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal[LANGUAGES] | None = None  # type: ignore[valid-type]
    cadence: Literal["weekly", "monthly"] | None = None
    day: int | None = Field(default=None, description="weekly: 0 (Monday) to 6; monthly: 1-28")
    hour: int | None = Field(default=None, description="0-23, in CRMSYNC_TIMEZONE")
    team: str | None = Field(default=None, max_length=200,
                             description="only this team's people; null: everyone")
    sections: list[Literal[SECTIONS]] | None = None  # type: ignore[valid-type]
    enabled: bool | None = None
    url: SecretStr | None = Field(default=None, description="the robot's webhook URL "
                                  "(write-only)")
    secret: SecretStr | None = Field(default=None, description="DingTalk / Feishu signing "
                                     "secret (write-only)")


class ChannelCreate(ChannelFields):
    name: Name
    platform: Literal[tuple(PLATFORMS)]  # type: ignore[valid-type]
    url: SecretStr


class ChannelPatch(ChannelFields):
    name: Name | None = None


class ChannelPublic(Answer):
    id: int
    name: str
    platform: str
    language: str
    cadence: str
    day: int
    hour: int
    team: str | None
    sections: list[str]
    enabled: bool
    host: str | None
    signed: bool
    created_at: datetime
    updated_at: datetime
    last_sent_at: datetime | None
    last_error: str | None


class ChannelList(Answer):
    data: list[ChannelPublic]


class SendResult(Answer):
    ok: bool
    error: str | None


def _fields(body: ChannelFields) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True, exclude={"url", "secret"})
    return {k: v for k, v in values.items() if v is not None or k == "team"}


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


@router.post("", status_code=201, response_model=ChannelPublic)
def create_channel(body: ChannelCreate, session: SessionDep, box: SecretBoxDep) -> Any:
    try:
        channel = channels.create_channel(session, box, url=body.url.get_secret_value(),
                                          secret=_secret(body.secret), **_fields(body))
    except channels.ChannelError as exc:
        raise ApiError(422, str(exc)) from None
    session.commit()
    return channels.public(box, channel)


@router.get("", response_model=ChannelList)
def list_channels(session: SessionDep, box: SecretBoxDep) -> Any:
    return {"data": [channels.public(box, c) for c in channels.channels(session)]}


@router.patch("/{channel_id}", response_model=ChannelPublic)
def update_channel(channel_id: Id, body: ChannelPatch, session: SessionDep,
                   box: SecretBoxDep) -> Any:
    try:
        channel = channels.update_channel(session, box, channel_id, url=_secret(body.url),
                                          secret=_secret(body.secret), **_fields(body))
    except channels.ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except channels.ChannelError as exc:
        raise ApiError(422, str(exc)) from None
    session.commit()
    return channels.public(box, channel)


@router.delete("/{channel_id}", status_code=204)
def delete_channel(channel_id: Id, session: SessionDep) -> Response:
    try:
        channels.delete_channel(session, channel_id)
    except channels.ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    session.commit()
    return Response(status_code=204)


@router.get("/{channel_id}/preview", summary="The message body the robot would get now")
def preview_channel(channel_id: Id, request: Request) -> dict[str, Any]:
    try:
        return preview(request.app.state.ctx, str(channel_id))
    except channels.ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None


@router.post("/{channel_id}/test", response_model=SendResult,
             summary="Send a test digest (the latest period's) now")
async def test_channel(channel_id: Id, request: Request) -> Any:
    try:
        outcome = await send_now(request.app.state.ctx, str(channel_id), test=True)
    except channels.ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    return {"ok": outcome.ok, "error": outcome.error}
