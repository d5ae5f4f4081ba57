"""Stages an incremental sync reads unchanged are not rewritten (core.sync.WHOLE_READ), on
both databases against the Zoho sandbox over HTTP: a renamed stage is written by the next
sync, a full sync writes every stage, and so does an incremental sync while a full sync of
the stream is unfinished (its tombstones need every row seen)."""

from datetime import datetime

from sqlalchemy import select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app as create_sandbox
from core import store
from core.db import session_scope
from core.models import Stage
from core.types import Stream
from tests.integration.zoho_helpers import (
    add_connection,
    history_backfilled,
    make_context,
    run_row,
    sync,
)


def stages(engine, connection_id: int) -> dict[str, tuple[str, datetime]]:
    with session_scope(engine) as session:
        rows = session.scalars(select(Stage).where(Stage.connection_id == connection_id))
        return {row.remote_id: (row.name, row.last_synced_at) for row in rows
                if row.deleted_at is None}


async def test_unchanged_stages_are_not_rewritten_a_renamed_one_is(engine, db_url):
    company = generate_company(seed=9, deals=20)
    ctx = make_context(engine, db_url)
    with BackgroundServer(create_sandbox(company)) as sandbox:
        cid = add_connection(ctx, sandbox.url)
        history_backfilled(ctx.engine, cid)
        await sync(ctx, cid, "full")
        first = stages(engine, cid)
        assert len(first) == len(company.stages)

        run = await sync(ctx, cid, "incremental")
        assert stages(engine, cid) == first  # not rewritten: last_synced_at as it was
        assert run_row(engine, run).counts["stages"] == {
            "fetched": len(first), "upserted": len(first), "deleted": 0}  # counted as seen

        renamed = company.stages[0]
        [rid] = [rid for rid, (name, _) in first.items() if name == renamed.name]
        renamed.name = "Renamed in the CRM"
        await sync(ctx, cid, "incremental")
        after = stages(engine, cid)
        assert after[rid][0] == "Renamed in the CRM" and after[rid][1] > first[rid][1]
        assert set(after) == set(first)

        # a full sync of the stream left unfinished: every stage is written again
        with session_scope(engine) as session:
            state = store.get_state(session, connection_id=cid, stream=Stream.STAGES)
            state["full_started_at"] = datetime.now().astimezone().isoformat()
            store.set_state(session, connection_id=cid, stream=Stream.STAGES, state=state)
        await sync(ctx, cid, "incremental")
        assert all(synced > after[rid][1] for rid, (_, synced) in stages(engine, cid).items())

        await sync(ctx, cid, "full")  # and a full sync always
        assert len(stages(engine, cid)) == len(company.stages)
