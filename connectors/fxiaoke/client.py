"""One Fxiaoke (纷享销客 / ShareCRM) tenant over HTTP: settings, tokens, the errorCode
envelope, the per-interface rate budget, and the metadata and record reads every
capability uses. The connector's streams (connector.py), callbacks (notifications.py)
and goal push (goals.py) build on it. Every behaviour cites docs/vendors/fxiaoke.md (§n).

Every call is a JSON POST; business errors arrive as HTTP 200 with errorCode != 0,
so responses are classified by errorCode only (§0, §6).
"""

import asyncio
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.base import (
    ApiClient,
    SourceInfo,
)
from connectors.endpoints import Endpoint
from connectors.fxiaoke import mapping
from connectors.fxiaoke.auth import HOSTS, Token, TokenManager
from connectors.fxiaoke.callbacks import CallbackError, key_bytes
from connectors.fxiaoke.wire import (
    APP_TOKEN_EXPIRED,
    BUSY_CODES,
    CALL_LIMIT,
    CORP_NOT_FOUND,
    CUSTOM_QUERY_PATH,
    DAILY_QUOTA,
    DEFAULT_BASE_URL,
    DEPARTMENT_LIST_PATH,
    DESCRIBE_PATH,
    GOAL_OBJECT_FIELDS,
    MAX_LIMIT,
    NO_QUOTA,
    OK,
    PER_SECOND_LIMIT,
    PERMISSION_CODES,
    QUERY_PATH,
    SERVICE_ERROR,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_PATH,
    USER_BY_MOBILE_PATH,
    USER_LIST_PATH,
)
from connectors.http import json_body, raise_for_transient
from core.errors import AuthError, ConfigError, RateLimited, SourceError, TransientError

log = logging.getLogger("crmsync.fxiaoke")

MAX_PAUSES = 30  # consecutive 14001/30004 pauses on one call before the sync gives up
MODIFIED = "last_modified_time"


@dataclass
class RateBudget:
    """§6: 100 calls per 20 s per interface, kept in the ApiClient's SharedLimits: per
    process, or with Redis for every process of the connection together (docs/fxiaoke.md)."""

    calls: int = 100
    window: float = 20.0


RATE = RateBudget()


async def _take_slot(api: ApiClient, key: str) -> None:
    """Wait until one more call on this interface stays within the budget."""
    await api.limits.take(key, RATE.calls, RATE.window)


class FxiaokeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"base_url"})
    """Keys that decide where the secrets go: changing one drops the stored secrets."""

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="The tenant's cloud host (§1.2), e.g. https://open-hwcloud.fxiaoke.com",
    )
    current_open_user_id: str | None = Field(
        default=None, pattern=r"^\S{1,100}$",
        description="The acting CRM admin (FSUID_...); looked up by admin_mobile when unset")
    admin_mobile: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$")
    opportunity_object: Literal["NewOpportunityObj", "OpportunityObj"] = "NewOpportunityObj"
    goals_object: str = Field(default="object_SalesGoal__c",
                              pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
    goals_fields: dict[str, str] = Field(
        default_factory=dict,
        description="API names of goals-object fields not labelled as docs/fxiaoke.md says, "
                    "e.g. {\"target\": \"field_rU4l5__c\"}")
    home_currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)

    @field_validator("goals_fields")
    @classmethod
    def _goal_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(GOAL_OBJECT_FIELDS))
        if unknown:
            raise ValueError(f"goals_fields keys must be among {sorted(GOAL_OBJECT_FIELDS)}, "
                             f"not {unknown}")
        bad = [v for v in value.values() if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", v)]
        if bad:
            raise ValueError(f"goals_fields values must be field API names, not {bad}")
        return value

    @model_validator(mode="after")
    def _acting_user(self) -> "FxiaokeConfig":
        if not self.current_open_user_id and not self.admin_mobile:
            raise ValueError("set current_open_user_id (the CRM admin's FSUID_...) or "
                             "admin_mobile (to look it up)")
        return self

    @property
    def api_base(self) -> str:
        return self.base_url.rstrip("/")

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(f"{self.api_base}{TOKEN_PATH}", HOSTS)]


class FxiaokeSecrets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: SecretStr = Field(min_length=1)
    app_secret: SecretStr = Field(min_length=1)
    permanent_code: SecretStr = Field(min_length=1)
    aes_key: SecretStr | None = None  # §5: callbacks only

    @model_validator(mode="after")
    def _not_blank(self) -> "FxiaokeSecrets":
        for name in ("app_id", "app_secret", "permanent_code"):
            if not getattr(self, name).get_secret_value().strip():
                raise ValueError(f"{name} must not be blank")
        return self

    @field_validator("aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                key_bytes(value.get_secret_value())
            except CallbackError as exc:
                raise ValueError(str(exc)) from None
        return value


class QuotaExhausted(SourceError):
    """§6 30002: the tenant's daily Open API quota is used up."""


class FxiaokeError(SourceError):
    """Any other errorCode (§6), kept so a caller can branch on it (e.g. 10006)."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class _TokenExpired(SourceError):
    pass


class _Throttled(SourceError):
    def __init__(self, message: str, pause: float) -> None:
        super().__init__(message)
        self.pause = pause


def _code(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("errorCode"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def parse(response: httpx.Response) -> dict[str, Any]:
    """Classify a response by errorCode only (§6); messages never carry request bodies."""
    raise_for_transient(response)
    where = response.request.url.path
    if response.status_code != 200:
        raise SourceError(f"Fxiaoke answered HTTP {response.status_code} on {where}")
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError(f"Fxiaoke sent an unexpected body on {where}")
    code = _code(body)
    if code == OK:
        return body
    text = f"Fxiaoke errorCode {code} on {where}: {body.get('errorMessage') or ''}".rstrip(": ")
    if code in BUSY_CODES or code == SERVICE_ERROR:
        raise TransientError(text)
    if code in (TOKEN_EXPIRED, APP_TOKEN_EXPIRED, TOKEN_INVALID):
        raise _TokenExpired(text)
    if code == CALL_LIMIT:
        raise _Throttled(text, RATE.window)
    if code == PER_SECOND_LIMIT:
        raise _Throttled(text, 1.0)
    if code == DAILY_QUOTA:
        raise QuotaExhausted(
            f"{text}. The tenant's daily Open API quota is used up; the data synced so far is "
            "kept and the next sync resumes where this one stopped once the quota resets "
            "(midnight, Asia/Shanghai), or after buying more quota")
    if code == NO_QUOTA:
        raise ConfigError(f"{text}. The tenant has no Open API quota: buy an Open API pack")
    if code in PERMISSION_CODES or code == CORP_NOT_FOUND:
        raise AuthError(f"{text}. Check that the app is authorized for this tenant and that "
                        "the acting user (current_open_user_id) is a CRM admin")
    raise FxiaokeError(text, code)



class FxiaokeClient:
    """Calls to one tenant with its token, acting user, rate budget and retries, and the
    tenant's metadata (deal fields, directory), read once per client."""

    def __init__(self, config: FxiaokeConfig, secrets: FxiaokeSecrets, api: ApiClient) -> None:
        self.config = config
        self.api = api
        self.tokens = TokenManager(config.api_base, secrets.app_id.get_secret_value(),
                                   secrets.app_secret.get_secret_value(),
                                   secrets.permanent_code.get_secret_value())
        self._user: asyncio.Task[str] | None = None
        self._directory: asyncio.Task[mapping.Directory] | None = None
        self._meta: asyncio.Task[mapping.DealMeta] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    # -- HTTP -----------------------------------------------------------------

    async def call(self, path: str, payload: dict[str, Any], *, crm: bool = True) -> dict[str, Any]:
        """POST path with the token fields (§1.1); 20016 refreshes once, 14001 pauses."""
        refreshed, pauses = False, 0
        while True:
            token: Token = await self.tokens.get(self.api)
            body: dict[str, Any] = {"corpAccessToken": token.value, "corpId": token.corp_id}
            if crm:
                body["currentOpenUserId"] = await self.open_user_id()
            body.update(payload)
            try:  # a slot before every attempt: a retried call counts too (§6)
                return await self.api.send("POST", self.config.api_base + path, parse,
                                           json=body, before=partial(
                                               _take_slot, self.api, f"{self.tokens.key}|{path}"))
            except _TokenExpired as exc:  # 20016 / 11014: refresh once
                await self.tokens.forget(self.api, token)
                if refreshed:
                    raise AuthError("Fxiaoke rejected a freshly issued corpAccessToken "
                                    f"({exc}); check the app's credentials") from None
                refreshed = True
            except _Throttled as exc:
                pauses += 1
                if pauses > MAX_PAUSES:
                    raise RateLimited(f"{exc} (still throttled after {MAX_PAUSES} pauses)",
                                      exc.pause) from None
                log.info("Fxiaoke throttled %s; pausing %.1f s", path, exc.pause)
                await asyncio.sleep(exc.pause)

    async def open_user_id(self) -> str:
        if self.config.current_open_user_id:
            return self.config.current_open_user_id
        if self._user is None:
            self._user = asyncio.ensure_future(self._lookup_user())
        return await self._user

    async def _lookup_user(self) -> str:
        """§1.1: /cgi/user/getByMobile -> empList[0].openUserId."""
        body = await self.call(USER_BY_MOBILE_PATH, {"mobile": self.config.admin_mobile},
                               crm=False)
        employees = body.get("empList") or []
        if not employees or not employees[0].get("openUserId"):
            raise ConfigError("no Fxiaoke employee has the admin_mobile given; set "
                              "current_open_user_id or correct admin_mobile")
        return str(employees[0]["openUserId"])

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate, find the acting user, describe the opportunity object, and warn
        when the acting user cannot see the whole company."""
        token = await self.tokens.get(self.api)
        user = await self.open_user_id()
        await self.meta()
        return SourceInfo(home_currency=self.config.home_currency,
                          organization=token.corp_id or None,
                          warnings=await self._visibility_warnings(user))

    async def _visibility_warnings(self, user: str) -> list[str]:
        """§1.1: every call runs with the data permissions of currentOpenUserId, and Fxiaoke
        has no Open API call that names a user's role, so check what the user sees: a user
        without all-data permission sees only their own and their subordinates' records.
        When employees outside that team exist and none of their deals or accounts are
        visible, say so (at most two queries of one row)."""
        users = (await self.directory()).users
        team, grew = {user}, True
        while grew:  # the acting user and everyone below them (leaderId)
            below = {i for i, u in users.items() if (u.raw or {}).get("leaderId") in team}
            grew, team = not below <= team, team | below
        others = sorted(i for i in users if i not in team)
        if not others:
            return []
        owned_by_others = [{"field_name": "owner", "operator": "IN", "field_values": others}]
        for api_name in (self.config.opportunity_object, "AccountObj"):
            if await self.query(api_name, owned_by_others, [], limit=1):
                return []
        return [f"the acting user {user} sees no deal or account owned by the "
                f"{len(others)} employees outside their own team: Fxiaoke runs every call "
                "with that user's data permissions, so records may be missing. Set "
                "current_open_user_id (or admin_mobile) to a CRM administrator, or give "
                "this user the all-data (全公司) permission on accounts and opportunities."]

    def meta(self) -> "asyncio.Task[mapping.DealMeta]":
        if self._meta is None:
            self._meta = asyncio.ensure_future(self._describe_deals())
        return self._meta

    async def _describe_deals(self) -> mapping.DealMeta:
        body = await self.call(DESCRIBE_PATH, {"apiName": self.config.opportunity_object,
                                               "includeDetail": True})
        fields = mapping.describe_fields(body)
        if not fields:
            raise SourceError(f"Fxiaoke describe of {self.config.opportunity_object} returned "
                              "no fields")
        return mapping.deal_meta(fields)

    def directory(self) -> "asyncio.Task[mapping.Directory]":
        if self._directory is None:
            self._directory = asyncio.ensure_future(self._read_directory())
        return self._directory

    async def _read_directory(self) -> mapping.Directory:
        """§3: departments, then every user under the root department(s), deduplicated."""
        depts = mapping.departments(await self.call(DEPARTMENT_LIST_PATH, {}, crm=False))
        directory = mapping.Directory()
        for root in mapping.root_departments(depts):
            body = await self.call(
                USER_LIST_PATH,
                {"departmentId": int(root) if root.isdigit() else root, "fetchChild": True},
                crm=False)
            for raw in body.get("userList") or []:
                if isinstance(raw, dict) and raw.get("openUserId"):
                    record = mapping.user(raw, depts)
                    directory.users[record.remote_id] = record
        return directory


    async def get_record(self, api_name: str, data_id: str) -> dict[str, Any]:
        """One record by id (§2 /data/get): callbacks carry no field values (§5)."""
        path = "/cgi/crm/custom/v2/data/get" if api_name.endswith("__c") else \
            "/cgi/crm/v2/data/get"
        body = await self.call(path, {"data": {"dataObjectApiName": api_name,
                                               "objectDataId": data_id}})
        record = body.get("data")
        if not isinstance(record, dict) or not record.get("_id"):
            raise FxiaokeError(f"Fxiaoke returned no {api_name} record {data_id}", None)
        return record

    async def record_for(self, api_name: str, raw: dict[str, Any]) -> Any:
        """Map one record of AccountObj or the opportunity object (as a sync would)."""
        if api_name == "AccountObj":
            return mapping.account(raw, await self.directory())
        if api_name == self.config.opportunity_object:
            return mapping.deal(raw, await self.meta(), await self.directory(),
                                self.config.home_currency)
        raise ConfigError(f"crmsync does not sync Fxiaoke object {api_name}")

    async def query(self, api_name: str, filters: list[dict[str, Any]],
                    orders: list[dict[str, Any]], limit: int = MAX_LIMIT
                    ) -> list[dict[str, Any]]:
        """One page of /data/query (§2); mixed key casing is the vendor's."""
        path = CUSTOM_QUERY_PATH if api_name.endswith("__c") else QUERY_PATH
        data = {"dataObjectApiName": api_name, "find_explicit_total_num": False,
                "search_query_info": {"limit": limit, "offset": 0, "filters": filters,
                                      "orders": orders}}
        body = await self.call(path, {"data": data})
        found = body.get("data")
        result: dict[str, Any] = found if isinstance(found, dict) else {}
        rows = result.get("dataList") or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("_id")
                                                 for r in rows):
            raise SourceError(f"Fxiaoke {api_name} query returned records without _id")
        return rows
