"""The Pipedrive JSON of the synthetic company (docs/vendors/pipedrive.md §2, §4, §8).

The provider-neutral company has won and lost *stages*; Pipedrive has none (§4): a deal in
one is a deal whose `status` is won or lost, kept in the last open stage it reached, with
`won_time` / `lost_time` on its close date. Lost stages other than the plain one become the
deal's `lost_reason`. Custom fields (§2) are keyed by 40-character hashes derived from the
company name, so they differ per company as Pipedrive's do.
"""

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from connectors.sandbox.dataset import (
    Account,
    Activity,
    Company,
    Deal,
    Deletion,
    Rep,
    StageDef,
)
from connectors.sandbox.stamps import utc_text

TEAMS_SINCE = datetime(2020, 1, 1, tzinfo=UTC)  # when the sandbox's teams were made (guess)
# §12: the activity types a company starts with, then one custom type (no synthetic
# activity has it: the neutral company's kinds are the built-in call, meeting and task)
ACTIVITY_TYPES = (("Call", "call", "call"), ("Meeting", "meeting", "meeting"),
                  ("Task", "task", "task"), ("Deadline", "deadline", "deadline"),
                  ("Email", "email", "email"), ("Lunch", "lunch", "lunch"))
CUSTOM_TYPE = ("Product demo", "product_demo", "camera")

DEAL_FIELDS = ("Region", "Lead channel")  # custom deal fields (guess: any company has some)
ORG_FIELDS = ("Industry",)  # §2: organizations have no standard industry field
REGIONS = ("EMEA", "Americas", "APAC")
CHANNELS = ("Inbound", "Outbound", "Partner", "Event")
PLAIN_LOST = ("Closed Lost",)  # lost stages that mean no particular reason


def v1_time(moment: datetime) -> str:
    """§2: v1 timestamps, "YYYY-MM-DD HH:MM:SS" in UTC (connectors.pipedrive.wire's, built
    cheaply: every record read writes several)."""
    return utc_text(moment, " ")


def v2_time(moment: datetime) -> str:
    """§2: v2 timestamps, RFC 3339 in UTC (as connectors.pipedrive.wire writes them)."""
    return utc_text(moment) + "Z"


def field_key(company: Company, name: str) -> str:
    """A custom field's 40-character hash key, stable for the company (§2)."""
    return hashlib.sha1(f"{company.name}\0{name}".encode()).hexdigest()


@dataclass
class Wire:
    """Builds Pipedrive JSON for one company; lookups are rebuilt when the company changes."""

    company: Company
    pipeline_ids: dict[str, int] = field(default_factory=dict)
    currency_ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pipeline_ids = {name: i + 1 for i, name in enumerate(self.company.pipelines())}
        self.currency_ids = {code: i + 1 for i, code in enumerate(sorted(self.company.currencies))}

    # ---- users, currencies, fields ----------------------------------------------------------
    def user(self, rep: Rep) -> dict[str, Any]:
        """§2: a v1 user."""
        return {"id": int(rep.id), "name": rep.full_name, "email": rep.email,
                "active_flag": rep.active, "is_deleted": False,
                "is_admin": 1 if rep is self.company.manager else 0,
                "default_currency": self.company.home_currency, "timezone_name": "UTC",
                "role_id": 1, "lang": 1, "locale": "en_US",
                "created": v1_time(rep.created_at), "modified": v1_time(rep.modified_at),
                "last_login": None, "has_created_company": rep is self.company.manager}

    def teams(self) -> list[dict[str, Any]]:
        """§10: /v1/legacyTeams, one team per distinct team of the company's reps (ids by
        name order), its members' ids in `users`, managed by the company's manager."""
        names = sorted({r.team for r in self.company.reps if r.team})
        manager = int(self.company.manager.id)
        return [{"id": i + 1, "name": name, "description": f"{name} sales team",
                 "manager_id": manager, "active_flag": 1, "deleted_flag": 0,
                 "add_time": v1_time(TEAMS_SINCE), "created_by_user_id": manager,
                 "users": [int(r.id) for r in self.company.reps if r.team == name]}
                for i, name in enumerate(names)]

    def currencies(self) -> list[dict[str, Any]]:
        """§8: the company's currencies (ids stable by code order)."""
        return [{"id": cid, "code": code, "name": code, "decimal_points": 0 if code == "JPY" else 2,
                 "symbol": code, "active_flag": True, "is_custom_flag": False}
                for code, cid in self.currency_ids.items()]

    def fields(self, kind: str) -> list[dict[str, Any]]:
        """§2: /v1/dealFields or /v1/organizationFields: a few standard fields, then custom."""
        standard = ("title", "value", "currency") if kind == "deal" else ("name", "owner_id")
        rows = [{"id": i + 1, "key": key, "name": key.replace("_", " ").title(),
                 "field_type": "varchar", "edit_flag": False} for i, key in enumerate(standard)]
        for name in DEAL_FIELDS if kind == "deal" else ORG_FIELDS:
            rows.append({"id": len(rows) + 1, "key": field_key(self.company, name), "name": name,
                         "field_type": "varchar", "edit_flag": True})
        return rows

    # ---- pipelines and stages ---------------------------------------------------------------
    def open_stages(self, pipeline: str | None = None) -> list[StageDef]:
        return [s for s in self.company.stages if s.category == "open"
                and pipeline in (None, s.pipeline)]

    def pipeline(self, name: str) -> dict[str, Any]:
        stamp = v2_time(datetime(2020, 1, 1, tzinfo=UTC))
        return {"id": self.pipeline_ids[name], "name": name, "order_nr": self.pipeline_ids[name],
                "is_deleted": False, "is_deal_probability_enabled": True,
                "add_time": stamp, "update_time": stamp}

    def stage(self, stage: StageDef) -> dict[str, Any]:
        stamp = v2_time(datetime(2020, 1, 1, tzinfo=UTC))
        return {"id": int(stage.id), "order_nr": stage.order, "name": stage.name,
                "is_deleted": False, "deal_probability": stage.probability,
                "pipeline_id": self.pipeline_ids[stage.pipeline], "is_deal_rot_enabled": False,
                "days_to_rotten": None, "add_time": stamp, "update_time": stamp}

    def kept_stage(self, deal: Deal) -> StageDef:
        """The stage a deal shows: its own when open, else the last open stage it was in."""
        return self.shown_stages(deal)[-1][0]

    def shown_stages(self, deal: Deal) -> list[tuple[StageDef, datetime]]:
        """The open stages a deal showed, in order, with when it entered each (§4: won and
        lost are statuses, so a move into one keeps the stage before it)."""
        stages = self.company.stage_by_id
        shown: list[tuple[StageDef, datetime]] = []
        for move in deal.history:
            stage = stages[move.stage_id]
            if stage.category == "open" and (not shown or shown[-1][0].id != stage.id):
                shown.append((stage, move.changed_at))
        if not shown:  # created won or lost: its pipeline's last open stage, from creation
            last = self.open_stages(stages[deal.stage_id].pipeline)[-1]
            shown.append((last, deal.created_at))
        return shown

    def flow(self, deal: Deal) -> list[dict[str, Any]]:
        """§11: the deal's updates of object `dealChange`, newest first (guess: the order
        the web app shows): its creation (an `add_time` change, guess), each move between
        the stages it showed (`stage_id`) and each outcome (`status`), from the neutral
        company's stage history (Deal.history)."""
        number, stages = int(deal.id), self.company.stage_by_id
        changes: list[tuple[datetime, str, Any, Any]] = [
            (deal.created_at, "add_time", None, v1_time(deal.created_at))]
        shown = self.shown_stages(deal)
        for (before, _), (after, at) in itertools.pairwise(shown):
            changes.append((at, "stage_id", int(before.id), int(after.id)))
        status = "open"
        for move in deal.history:
            category = stages[move.stage_id].category
            if category != status:
                changes.append((move.changed_at, "status", status, category))
                status = category
        changes.sort(key=lambda c: c[0])
        rows = []
        for i, (at, key, old, new) in enumerate(changes):
            stamp = v1_time(at)
            rows.append({"object": "dealChange", "timestamp": stamp, "data": {
                "id": number % 10_000_000 * 100 + i, "item_id": number,
                "user_id": int(deal.owner_id), "field_key": key,
                "old_value": None if old is None else str(old),
                "new_value": None if new is None else str(new), "log_time": stamp,
                "change_source": "app", "is_bulk_update_flag": False}})
        return rows[::-1]

    # ---- organizations and deals ------------------------------------------------------------
    def organization(self, account: Account) -> dict[str, Any]:
        """§2: a v2 organization; its industry is a custom field."""
        return {"id": int(account.id), "name": account.name, "owner_id": int(account.owner_id),
                "add_time": v2_time(account.created_at),
                "update_time": v2_time(account.modified_at), "is_deleted": False,
                "visible_to": 3, "label_ids": [], "address": None,
                "custom_fields": {field_key(self.company, "Industry"): account.industry}}

    def deal(self, deal: Deal) -> dict[str, Any]:
        """§2, §4: a v2 deal."""
        company = self.company
        stage = company.stage_by_id[deal.stage_id]
        shown = self.kept_stage(deal)
        status = stage.category
        outcome_at = None
        if status != "open":  # won_time / lost_time on the close date (§4)
            moved = next((m.changed_at for m in reversed(deal.history)
                          if m.stage_id == deal.stage_id), deal.modified_at)
            outcome_at = v2_time(datetime.combine(deal.close_date, moved.time(), UTC)
                                 if moved else datetime.combine(deal.close_date, time(12), UTC))
        number = int(deal.id)
        return {
            "id": number, "title": deal.name, "owner_id": int(deal.owner_id),
            "person_id": None, "org_id": int(deal.account_id) if deal.account_id else None,
            "pipeline_id": self.pipeline_ids[stage.pipeline], "stage_id": int(shown.id),
            "value": float(deal.amount), "currency": deal.currency, "status": status,
            "probability": deal.probability,
            "add_time": v2_time(deal.created_at), "update_time": v2_time(deal.modified_at),
            "stage_change_time": v2_time(deal.history[-1].changed_at) if deal.history else None,
            "won_time": outcome_at if status == "won" else None,
            "lost_time": outcome_at if status == "lost" else None,
            "close_time": outcome_at,
            "lost_reason": stage.name if status == "lost" and stage.name not in PLAIN_LOST
            else None,
            "expected_close_date": deal.close_date.isoformat(),
            "is_deleted": False, "is_archived": False, "visible_to": 3, "label_ids": [],
            "origin": "ManuallyCreated",
            "custom_fields": {field_key(company, "Region"): REGIONS[number % len(REGIONS)],
                              field_key(company, "Lead channel"): CHANNELS[number % len(CHANNELS)]},
        }

    def deleted_deal(self, deletion: Deletion, last: Deal | None) -> dict[str, Any]:
        """§3: a deal of `status=deleted`: its last state, `is_deleted`, the deletion as
        update_time (guess)."""
        if last is not None:
            body = self.deal(last)
        else:  # deleted before this sandbox started: only what the deletion kept
            owner = deletion.created_by or self.company.manager.id
            body = {"id": int(deletion.id), "title": deletion.display_name or "",
                    "owner_id": int(owner), "person_id": None, "org_id": None,
                    "pipeline_id": 1, "stage_id": int(self.open_stages()[0].id), "value": 0,
                    "currency": self.company.home_currency, "probability": None,
                    "add_time": v2_time(deletion.deleted_at), "won_time": None,
                    "lost_time": None, "close_time": None, "custom_fields": {}}
        body.update(status="deleted", is_deleted=True, update_time=v2_time(deletion.deleted_at))
        return body

    # ---- activities (§12) -------------------------------------------------------------------
    def activity_types(self) -> list[dict[str, Any]]:
        stamp = v1_time(TEAMS_SINCE)
        return [{"id": i + 1, "order_nr": i + 1, "name": name, "key_string": key,
                 "icon_key": icon, "color": None, "active_flag": True,
                 "is_custom_flag": (name, key, icon) == CUSTOM_TYPE, "add_time": stamp,
                 "update_time": stamp}
                for i, (name, key, icon) in enumerate((*ACTIVITY_TYPES, CUSTOM_TYPE))]

    def activity(self, activity: Activity) -> dict[str, Any]:
        """§12: a v2 activity. The neutral company's notes are not activities in Pipedrive
        (they are /v1/notes) and are never rendered. A task is due on a date (no
        due_time); calls and meetings start at due_date + due_time, HH:MM in UTC, and last
        `duration` HH:MM: Pipedrive keeps minutes, not seconds. A held call or meeting was
        marked done when it was last changed (guess: the neutral company keeps no such
        time for them)."""
        start, kind = activity.start, activity.kind
        done_at = activity.completed_at or (activity.modified_at if activity.done else None)
        seconds = activity.duration_seconds
        return {
            "id": int(activity.id), "subject": activity.subject, "type": kind,
            "owner_id": int(activity.owner_id), "creator_user_id": int(activity.owner_id),
            "is_deleted": False, "add_time": v2_time(activity.created_at),
            "update_time": v2_time(activity.modified_at),
            "deal_id": int(activity.deal_id) if activity.deal_id else None, "lead_id": None,
            "person_id": None,
            "org_id": int(activity.account_id) if activity.account_id else None,
            "project_id": None, "due_date": start.date().isoformat(),
            "due_time": None if kind == "task" else start.strftime("%H:%M"),
            "duration": None if seconds is None else
            f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}",
            "busy": kind == "meeting", "done": activity.done,
            "marked_as_done_time": v2_time(done_at) if activity.done and done_at else None,
            "location": None, "participants": [], "conference_meeting_client": None,
            "conference_meeting_url": None, "conference_meeting_id": None,
            "public_description": None, "priority": None, "note": None}

    def deleted_activity(self, deletion: Deletion, last: Activity | None) -> dict[str, Any]:
        """§12: an activity marked deleted: its last state with is_deleted, and its
        update_time unchanged (deleting does not bump it, singer-io/tap-pipedrive#60); one
        whose last state the company did not keep has only what the deletion recorded, and
        its deletion time as update_time (guess)."""
        if last is not None:
            return {**self.activity(last), "is_deleted": True}
        owner = int(deletion.created_by or self.company.manager.id)
        stamp = v2_time(deletion.deleted_at)
        return {"id": int(deletion.id), "subject": deletion.display_name,
                "type": deletion.kind or "task", "owner_id": owner, "creator_user_id": owner,
                "is_deleted": True, "add_time": stamp, "update_time": stamp, "deal_id": None,
                "org_id": None, "person_id": None, "due_date": deletion.deleted_at.date()
                .isoformat(), "due_time": None, "duration": None, "done": False,
                "marked_as_done_time": None}
