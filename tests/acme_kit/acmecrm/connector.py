"""The Acme connector: the client (client.py) and its five streams."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

from acmecrm import mapping
from acmecrm.client import AcmeClient, AcmeConfig, AcmeSecrets
from acmecrm.sandbox import SANDBOX
from acmecrm.wire import parse_stamp, stamp
from pydantic import BaseModel

from connectors.base import ConfigError, Page, Sandbox

PAGE_SIZE = 100
OVERLAP = timedelta(seconds=1)


class AcmeConnector(AcmeClient):
    """Reads users, stages, accounts, deals and deletions from one Acme account."""

    name: ClassVar[str] = "acme"
    config_model: ClassVar[type[BaseModel]] = AcmeConfig
    secrets_model: ClassVar[type[BaseModel]] = AcmeSecrets
    max_in_flight: ClassVar[int] = 4
    sandbox: ClassVar[Sandbox] = SANDBOX

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        readers = {"users": self._users, "stages": self._stage_list,
                   "accounts": self._accounts, "deals": self._deals,
                   "deletions": self._deletions}
        if stream not in readers:
            raise ConfigError(f"Acme has no stream {stream!r}")
        return readers[stream](cursor or {})

    async def _users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        body = await self.get("/users")
        yield Page(records=[mapping.user(u) for u in body.get("data") or []], cursor={})

    async def _stage_list(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        yield Page(records=await self.stages(), cursor={})

    async def _accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        async for rows, state in self._walk("/accounts", "updated_at", cursor):
            yield Page(records=[mapping.account(r) for r in rows], cursor=state)

    async def _deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        stages = {s.remote_id: s for s in await self.stages()}
        async for rows, state in self._walk("/deals", "updated_at", cursor):
            yield Page(records=[mapping.deal(r, stages) for r in rows], cursor=state)

    async def _deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        async for rows, state in self._walk("/deleted", "deleted_at", cursor):
            yield Page(deletions=[mapping.deletion(r) for r in rows], cursor=state)

    async def _walk(self, path: str, stamped: str, cursor: dict[str, Any]
                    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Rows oldest change first, page after page (`next_cursor`), each with the
        stream's cursor: the newest `stamped` time read so far (stamps compare as text,
        acmecrm/wire.py). A read from a cursor starts one second before it (an overlap:
        rows sharing that second are read again, never lost)."""
        newest: str | None = cursor.get("since")
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if newest:
            params["since"] = stamp(parse_stamp(newest) - OVERLAP)
        while True:
            body = await self.get(path, params)
            rows: list[dict[str, Any]] = body.get("data") or []
            newest = max([newest or "", *(r[stamped] for r in rows)]) or None
            yield rows, {"since": newest}
            if not body.get("next_cursor"):
                return
            params = {**params, "cursor": body["next_cursor"]}
