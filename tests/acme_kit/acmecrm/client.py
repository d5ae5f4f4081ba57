"""One Acme account over HTTP: settings, the error envelope and the calls, with the
stages read once per client. The streams (connector.py) build on it."""

from typing import Any, ClassVar

import httpx
from acmecrm import mapping
from acmecrm.wire import API, UNAUTHORIZED
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import (
    ApiClient,
    AuthError,
    ConfigError,
    SourceError,
    SourceInfo,
    StageRecord,
)
from connectors.endpoints import Endpoint
from connectors.http import json_body, raise_for_transient

HOSTS = ("api.acmecrm.example",)
"""Where Acme's API lives: the token goes there without the operator allowing it."""


class AcmeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"base_url"})
    """The token goes to `base_url`: changing it drops the stored secrets."""

    base_url: str = Field(default="https://api.acmecrm.example",
                          pattern=r"^https?://[^\s/]+(:\d+)?$")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(self.base_url, HOSTS)]


class AcmeSecrets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(min_length=1)


class AcmeClient:
    """Calls to one account with its token, the connection's in-flight cap and retries."""

    def __init__(self, config: AcmeConfig, secrets: AcmeSecrets, api: ApiClient) -> None:
        self.config, self.api = config, api
        self._token = secrets.token.get_secret_value()
        self._stages: list[StageRecord] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET {base_url}/v1{path}, after checking that the token may go there."""
        await self.api.endpoints.acheck(self.config.base_url, HOSTS)
        return await self.api.send("GET", f"{self.config.base_url}{API}{path}", parse_response,
                                   params=params,
                                   headers={"Authorization": f"Bearer {self._token}"})

    async def check(self) -> SourceInfo:
        """The token works; the account's name and home currency (GET /v1/me)."""
        company = (await self.get("/me")).get("company") or {}
        return SourceInfo(home_currency=company.get("currency"),
                          organization=company.get("name"))

    async def stages(self) -> list[StageRecord]:
        if self._stages is None:
            body = await self.get("/stages")
            self._stages = [mapping.stage(s) for s in body.get("data") or []]
        return self._stages


def parse_response(response: httpx.Response) -> Any:
    """The body of a 200, or an error from the envelope {"error": {"code", "message"}}."""
    raise_for_transient(response)
    body = json_body(response)
    if response.status_code == 200:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or f"HTTP {response.status_code}")
    message = str(error.get("message") or "")
    if response.status_code == 401 or code == UNAUTHORIZED:
        raise AuthError(f"Acme refused the API token: {message}")
    text = f"Acme {code}: {message} ({response.request.method} {response.request.url.path})"
    if response.status_code == 403:
        raise ConfigError(text)
    raise SourceError(text)
