"""The Connector protocol every CRM plugin implements, its optional capabilities, and the
types they share (docs/connectors.md).

A connector is built per sync run from a connection's validated config and
secrets, and an ApiClient (connectors/http.py) that it never builds itself.

Capabilities, each declared by the connector class and checked by the registry when it
loads (connectors/registry.py):

- streams (required): `Connector`, reading users, stages, accounts, deals and deletions;
- webhooks: `WebhookReceiver`, verifying callbacks and resolving their events;
- channels: `NotificationChannels`, subscribing, renewing and removing the CRM-side
  subscriptions that call the webhook route;
- goals: `GoalPusher`, writing sales goals into the CRM;
- stage_history: `StageHistory`, reading the stage moves the CRM itself keeps per deal
  (backfilled by the workers' `backfill_stage_history` job; docs/evaluation.md);
- sandbox: a `Sandbox` object in the class attribute `sandbox`: a simulated CRM for the
  command line, the demo and the contract suite;
- commands: `CommandLine`, extra `crmsync <provider> ...` commands (credential helpers);
- links: `RecordLinks`, the web address of a deal's record in the CRM (the dashboard's
  links);
- activities: the optional `activities` stream (calls, meetings, tasks, notes as
  ActivityRecord, deletions with entity "activities"), read by a `_read_activities(cursor)`
  (`activity_deletions = "full"` on a connector whose CRM lets only a full read see a
  deleted activity, e.g. one that does not bump its modification time; default
  "incremental")
  method like the required streams (`read_stream`); connectors.registry.streams_of lists the
  streams a sync reads.
"""

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel

from connectors.http import ApiClient
from core.errors import AuthError, ConfigError, RateLimited, SourceError, TransientError
from core.records import (
    STREAMS,
    AccountRecord,
    ActivityRecord,
    DealRecord,
    Deletion,
    GoalDeletion,
    GoalOut,
    GoalResult,
    Page,
    PushResult,
    SourceInfo,
    StageChangeRecord,
    StageRecord,
    UserRecord,
)

__all__ = [
    "STREAMS",
    "AccountRecord",
    "ActivityRecord",
    "ApiClient",
    "AuthError",
    "Channel",
    "CommandLine",
    "ConfigError",
    "Connector",
    "DealRecord",
    "Deletion",
    "GoalDeletion",
    "GoalOut",
    "GoalPusher",
    "GoalResult",
    "GoalResults",
    "NotificationChannels",
    "Page",
    "PushResult",
    "RateLimited",
    "Sandbox",
    "SandboxOption",
    "SharedAccount",
    "SourceError",
    "SourceInfo",
    "StageChangeRecord",
    "StageHistory",
    "StageRecord",
    "TransientError",
    "UserRecord",
    "WebhookIntake",
    "WebhookReceiver",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookSecrets",
    "read_stream",
    "stage_changes",
]


def read_stream(connector: object, vendor: str, stream: str,
                cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
    """`Connector.read` by convention: the pages of `stream` from the connector's method
    `_read_<stream>(cursor)` (the cursor {} when None); ConfigError for another stream."""
    reader = getattr(connector, f"_read_{stream}", None) if stream in STREAMS else None
    if reader is None:
        raise ConfigError(f"{vendor} has no stream {stream!r}")
    pages: AsyncIterator[Page] = reader(cursor or {})
    return pages


class Connector(Protocol):
    """A CRM plugin. Registered under the entry-point group `crmsync.connectors`."""

    name: ClassVar[str]
    """Entry-point name, also the connection's `provider`."""
    config_model: ClassVar[type[BaseModel]]
    """Non-secret per-connection settings, validated when a connection is saved."""
    secrets_model: ClassVar[type[BaseModel]]
    """Credentials, stored encrypted and never echoed."""
    max_in_flight: ClassVar[int]
    """Cap on concurrent requests for one connection (the vendor's concurrency budget)."""

    def __init__(self, config: Any, secrets: Any, api: ApiClient) -> None: ...

    @property
    def api_calls(self) -> int: ...

    async def check(self) -> SourceInfo:
        """Authenticate and read the account's basics (home currency). Raises AuthError."""
        ...

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Pages of a stream (users, stages, accounts, deals, deletions; activities with that
        capability) from a cursor."""
        ...


# -- webhooks (docs/webhooks.md: POST /webhooks/{provider}/{connection_id}) ----------------


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A vendor callback as it arrived: raw body (size-checked already), headers, query,
    and the method and full URL the vendor called (for signatures over the URL: the
    public URL, CRMSYNC_PUBLIC_URL, when set, else the URL this server saw)."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    method: str = "POST"
    url: str = ""

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; WebhookRejected 400 (not JSON) or 422 (not an object)."""
        try:
            body = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise WebhookRejected(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise WebhookRejected(422, "the body must be a JSON object")
        return body


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    """What a connector may check a callback against: the connection's decrypted secrets
    and its notification channels (channel id -> verification token)."""

    secrets: Mapping[str, Any]
    channels: Mapping[str, str]


@dataclass(slots=True)
class WebhookIntake:
    """Verified events, each `(dedupe_key, payload)`, and the exact answer to send back
    (some vendors want an acknowledgement body of their own)."""

    events: list[tuple[str, dict[str, Any]]]
    body: bytes = b'{"status":"ok"}'
    content_type: str = "application/json"
    delivery: str | None = None
    """For vendors that retry an event with a fresh signature (Fxiaoke): a fingerprint of
    this exact delivery. A delivery stored before is a replay: refused with 409, nothing
    stored. A new delivery of a stored event is acknowledged and stores nothing new."""


class WebhookRejected(Exception):
    """A callback that must not be stored: bad JSON (400), bad shape (422), failed
    verification (401/403). The message is safe to return (it never repeats secrets)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class WebhookReceiver(Protocol):
    """The optional webhook capability of a connector (checked with isinstance on the class)."""

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        """Verify a callback and split it into events. Raises WebhookRejected. Pure: no I/O."""
        ...

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        """The store changes stored events stand for, as (stream, page) pairs: re-read
        records from the CRM (current state) and deletions to tombstone."""
        ...


@runtime_checkable
class SharedAccount(Protocol):
    """Optional: the connection's calls spend budgets of a vendor account that other
    connections may share (the same company connected more than once), and a sync of it
    mostly waits for them. The workers then run at most `account_turns` such syncs of one
    account at a time; another one goes back to the queue for its turn instead of holding
    a worker's slot while it waits (workers.jobs.account_turn, docs/operations.md)."""

    @property
    def account_key(self) -> str:
        """The account, the same for every connection of it (a hash, never a secret)."""
        ...

    def account_turns(self, incremental: bool) -> int:
        """How many syncs of the account (incremental ones, or full ones) to run at once;
        0: as many as come."""
        ...


@runtime_checkable
class RecordLinks(Protocol):
    """Optional connector capability: where a person opens a deal's record in the CRM's
    own web app (the dashboard links every deal it lists there).

    Pure, no I/O: built from the connection's validated config and the deal's remote id.
    None when the CRM documents no such address or the config lacks what it needs (the
    dashboard then shows no link)."""

    @classmethod
    def deal_url(cls, config: BaseModel, remote_id: str) -> str | None: ...


@runtime_checkable
class GoalPusher(Protocol):
    """Optional connector capability: write sales goals into the CRM (docs/goals.md).

    core.goals decides what to send (goals new or changed since their last push) and
    what to delete; the connector only talks to its CRM. Provider-neutral contract:

    - `goals`: upsert each one, found by `GoalOut.key` (stable for the goal's life), so
      pushing an edited goal updates the CRM record made for it and never duplicates it.
      The rep is `owner_remote_id` (that CRM's user id; None for a company-wide goal).
    - `deletions`: delete the CRM records `GoalDeletion.remote_id`; a record already gone
      counts as deleted.
    - Return one PushResult per goal and per deletion, by goal_id: status `inserted` or
      `updated` with the CRM record's `remote_id`, `deleted`, or `error` with the vendor's
      code and message for that record. Batch in the vendor's largest size; read each
      element's own result, not only the HTTP status.
    - Raise core.errors.ConfigError when the CRM cannot hold goals at all (say how to set
      it up), AuthError for credentials; transient errors are retried by the ApiClient.
    """

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]: ...


@runtime_checkable
class StageHistory(Protocol):
    """Optional connector capability: the stage history a CRM keeps per deal (Zoho's
    Stage_History related list), for deals crmsync never saw move. Provider-neutral
    contract: for each of `deal_remote_ids` (at most `stage_history_batch` of them), every
    stage the deal entered with when (StageChangeRecord; the first one from_stage None), in
    any order; a deal the CRM has no history for, or no longer has, gives nothing. Reads as
    few calls as the vendor allows; transient errors are retried by the ApiClient; raise
    AuthError for credentials, SourceError when the CRM refuses."""

    stage_history_batch: ClassVar[int]
    """How many deals one call of read_stage_history takes (the job commits per batch)."""

    async def read_stage_history(
        self, deal_remote_ids: Sequence[str]
    ) -> list[StageChangeRecord]: ...


def stage_changes(deal_remote_id: str,
                  entries: Iterable[tuple[datetime, str]]) -> list[StageChangeRecord]:
    """A deal's history rows (when, the stage name then) as its moves, oldest first: a row
    that repeats the stage it follows is no move (CRMs write a history row for an amount or
    date edit too), the first move's from_stage is None. The rows may come in any order."""
    out: list[StageChangeRecord] = []
    previous: str | None = None
    for at, stage in sorted(entries):
        if stage != previous:
            out.append(StageChangeRecord(deal_remote_id, previous, stage, at))
        previous = stage
    return out


@runtime_checkable
class GoalResults(Protocol):
    """Optional connector capability, beside goal push: read the CRM's own figure for the
    goals it holds (a CRM that tracks goal attainment itself), shown next to crmsync's
    actual (GET /api/v1/goals/{id}: push[].crm_result) so a difference in definitions is
    visible. `remote_ids[i]` is the CRM record of `goals[i]`; return one GoalResult per
    goal (its `error` set when that goal's figure could not be read)."""

    async def goal_results(self, goals: Sequence[GoalOut],
                           remote_ids: Sequence[str]) -> list[GoalResult]: ...


# -- notification channels (docs/webhooks.md, "Renewal") ---------------------------------------


@dataclass(frozen=True, slots=True)
class Channel:
    """A CRM-side subscription that calls `notify_url` (our webhook route) when records
    change. `token` is what the CRM sends back with each notification (stored encrypted,
    handed to `parse_webhook` in WebhookSecrets.channels)."""

    channel_id: str
    token: str
    notify_url: str
    expires_at: datetime
    events: tuple[str, ...] = ()


@runtime_checkable
class NotificationChannels(Protocol):
    """Optional connector capability: CRM notifications that must be subscribed and renewed
    (Zoho's actions/watch). The workers' `renew_channels` job calls these for every
    connection of the provider when CRMSYNC_PUBLIC_URL is set: as soon as a connection is
    created or changed, then hourly. A channel whose `expires_at` is nearer than
    `channel_renew_within` is renewed; one the CRM no longer knows is subscribed anew;
    channels to an old URL are unsubscribed."""

    channel_renew_within: ClassVar[timedelta]
    """Renew a channel once it expires sooner than this (more than the hourly check)."""

    async def subscribe_channel(self, notify_url: str) -> Channel:
        """Subscribe a new channel calling `notify_url`; the channel as the CRM granted it."""
        ...

    async def renew_channel(self, channel: Channel) -> Channel:
        """Extend a channel; the channel as renewed. Raises SourceError when the CRM no
        longer knows it (the job then subscribes a new one)."""
        ...

    async def unsubscribe_channels(self, channel_ids: Sequence[str]) -> None:
        """Stop these channels calling us. Raises SourceError when the CRM refuses."""
        ...


# -- sandbox (connectors/sandbox/: the provider-neutral kit) --------------------------------


@dataclass(frozen=True, slots=True)
class SandboxOption:
    """A command-line option of a sandbox (`crmsync sandbox <provider> --<name>`), turned
    into keyword arguments of its app factory by `apply`. `demo=True` also offers it on
    `crmsync demo` as `--<provider>-<name>`."""

    name: str
    help: str
    default: bool | int | float | str | None = False
    kind: type = bool
    apply: Callable[[Any], dict[str, Any]] = lambda _: {}
    demo: bool = False


@dataclass(frozen=True)
class Sandbox:
    """A connector's simulated CRM (its `sandbox` class attribute), used by `crmsync
    sandbox <provider>`, `crmsync demo` and the contract suite (tests/contract/).

    `create_app(company, **options)` builds the ASGI app for a synthetic company
    (connectors.sandbox.dataset.Company, or None for one made from `seed` and `deals`
    keyword arguments); `config(url)` and `secrets` are what a connection to a sandbox on
    `url` uses. `set_callback_url(app, url)` (vendors that push callbacks without a
    subscription) tells a running app where to send them."""

    title: str
    """What it simulates, for people: "a simulated Example CRM org"."""
    create_app: Callable[..., Any]
    config: Callable[[str], dict[str, Any]]
    secrets: Mapping[str, str]
    demo_name: str
    """The name of the demo's connection to it."""
    default_port: int = 8400
    options: tuple[SandboxOption, ...] = ()
    demo_rank: int = 100
    """The demo starts sandboxes in this order; the first one's company is the home one
    (its currency and FX rates); the others share some of its reps."""
    set_callback_url: Callable[[Any, str], None] | None = None
    notes: str = ""
    """Anything else a person connecting to it must know (printed by the command line)."""


@runtime_checkable
class CommandLine(Protocol):
    """Optional connector capability: commands under `crmsync <provider>` (e.g. turning a
    grant code into a refresh token). `add_connection` is `crmsync connections add`."""

    @classmethod
    def command_line(cls, add_connection: Callable[..., None]) -> Any:
        """A typer.Typer with the provider's commands."""
        ...
