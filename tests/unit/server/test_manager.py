"""SandboxManager on its own: timeouts expire, start() re-attaches or cleans up after a restart, close() keeps
sandboxes running."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from server_fakes import FakeRuntime, FakeTemplates, settle

from corral.config import Settings
from corral.db import Database, SandboxRecord
from corral.db.models import utcnow
from corral.sandboxes import CreateRequest, SandboxManager


async def create(manager: SandboxManager, timeout: int = 300, team: str = "t1") -> str:
    from corral.server.keys import ensure_team
    team_id = ensure_team(manager.db, team)
    return (await manager.create(CreateRequest(team_id=team_id, template="base", timeout_s=timeout))).id


def state(db: Database, sandbox_id: str) -> str:
    with db.session() as s:
        row = s.get(SandboxRecord, sandbox_id)
        assert row is not None
        return row.state


async def test_timeout_expiry_kills(manager: SandboxManager, runtimes: dict[str, FakeRuntime], db: Database) -> None:
    short = await create(manager, timeout=1)
    long = await create(manager, timeout=300)
    await asyncio.sleep(1.3)
    await settle(manager)
    assert manager.route(short) is None and state(db, short) == "killed"
    assert short in runtimes["gvisor"].destroyed
    assert manager.route(long) is not None and state(db, long) == "running"


async def test_set_timeout_reschedules(manager: SandboxManager, db: Database) -> None:
    sid = await create(manager, timeout=1)
    team = _team(db, sid)
    manager.set_timeout(sid, team, 60)  # the 1 s timer must be replaced, not kept
    await asyncio.sleep(1.3)
    assert state(db, sid) == "running" and manager.route(sid) is not None
    manager.set_timeout(sid, team, 0)
    await asyncio.sleep(0.1)
    await settle(manager)
    assert state(db, sid) == "killed"


def _team(db: Database, sandbox_id: str) -> str:
    with db.session() as s:
        row = s.get(SandboxRecord, sandbox_id)
        assert row is not None
        return row.team_id


async def test_touch_records_activity_only_for_live(manager: SandboxManager) -> None:
    sid = await create(manager)
    manager.touch(sid)
    manager.touch("x" * 20)
    assert sid in manager._last_activity and "x" * 20 not in manager._last_activity


async def test_close_leaves_sandboxes_running(manager: SandboxManager, runtimes: dict[str, FakeRuntime],
                                              db: Database) -> None:
    sid = await create(manager, timeout=1)
    await manager.close()
    await asyncio.sleep(1.3)  # the timer was cancelled: nothing expires while the server is down
    assert sid in runtimes["gvisor"].alive and state(db, sid) == "running"
    assert not runtimes["gvisor"].destroyed


async def test_restart_reattaches_and_cleans_up(settings: Settings, runtimes: dict[str, FakeRuntime],
                                                templates: FakeTemplates, db: Database) -> None:
    first = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await first.start()
    survivor = await create(first, timeout=300)
    crashed = await create(first, timeout=300)
    expired = await create(first, timeout=300)
    killed_but_left = await create(first, timeout=300)
    await first.close()

    rt = runtimes["gvisor"]
    rt.alive.discard(crashed)                  # its processes died with the host; state left on disk
    with db.session() as s:                    # ran out its timeout while the server was down
        row = s.get(SandboxRecord, expired)
        assert row is not None
        row.end_at = utcnow() - timedelta(seconds=5)
        gone = s.get(SandboxRecord, killed_but_left)
        assert gone is not None
        gone.state = "killed"                  # killed, but the teardown never finished
    orphan = "o" * 20
    rt.leftovers.add(orphan)                   # runtime state with no DB row at all

    second = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await second.start()
    await settle(second)
    route = second.route(survivor)
    assert route is not None and route.socket_path == rt.handle_for(survivor).socket_path
    assert route.secure and route.envd_access_token
    assert state(db, survivor) == "running" and survivor not in rt.destroyed
    for sid in (crashed, expired):
        assert second.route(sid) is None and state(db, sid) == "killed" and sid in rt.destroyed
    assert killed_but_left in rt.destroyed and orphan in rt.destroyed
    assert await rt.list_sandbox_ids() == [survivor]
    # The re-attached sandbox still has a live timer.
    second.set_timeout(survivor, _team(db, survivor), 0)
    await asyncio.sleep(0.1)
    await settle(second)
    assert state(db, survivor) == "killed"
    await second.close()


async def test_restart_without_runtime_marks_killed(settings: Settings, runtimes: dict[str, FakeRuntime],
                                                    templates: FakeTemplates, db: Database) -> None:
    first = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await first.start()
    from corral.server.keys import ensure_team
    team_id = ensure_team(db, "t1")
    sid = (await first.create(CreateRequest(team_id=team_id, template="fast", timeout_s=300))).id
    await first.close()
    second = SandboxManager(settings, {"gvisor": runtimes["gvisor"]}, templates, db=db)  # type: ignore[arg-type]
    await second.start()
    await settle(second)
    assert second.route(sid) is None and state(db, sid) == "killed"
    await second.close()


async def test_cancelled_create_leaves_nothing(manager: SandboxManager, runtimes: dict[str, FakeRuntime],
                                               db: Database) -> None:
    runtimes["gvisor"].create_delay = 5
    task = asyncio.ensure_future(create(manager))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    spec_ids = list(runtimes["gvisor"].specs)
    assert spec_ids and set(spec_ids) <= set(runtimes["gvisor"].destroyed)
    with db.session() as s:
        assert s.query(SandboxRecord).count() == 0
    assert not manager._routes


async def test_leftovers_listed_by_both_backends_are_torn_down_once_at_a_time(
        settings: Settings, runtimes: dict[str, FakeRuntime], templates: FakeTemplates, db: Database) -> None:
    import server_fakes
    server_fakes.OVERLAPS.clear()
    first = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await first.start()
    recorded = await create(first)  # a gvisor sandbox, killed but its teardown never ran
    await first.close()
    with db.session() as s:
        row = s.get(SandboxRecord, recorded)
        assert row is not None
        row.state = "killed"
    orphan = "p" * 20
    for rt in runtimes.values():  # both backends see both directories (a shared sandboxes/ dir)
        rt.leftovers |= {orphan, recorded}
    second = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await second.start()
    await settle(second)
    assert server_fakes.OVERLAPS == []
    assert runtimes["gvisor"].destroyed.count(recorded) == 1 and recorded not in runtimes["runc"].destroyed
    assert orphan in runtimes["gvisor"].destroyed and orphan in runtimes["runc"].destroyed
    await second.close()


async def test_start_prunes_old_killed_rows(settings: Settings, runtimes: dict[str, FakeRuntime],
                                            templates: FakeTemplates, db: Database) -> None:
    first = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await first.start()
    old, recent, alive = await create(first), await create(first), await create(first)
    team = _team(db, old)
    await first.kill(old, team)
    await first.kill(recent, team)
    await settle(first)
    await first.close()
    with db.session() as s:
        row = s.get(SandboxRecord, old)
        assert row is not None
        row.killed_at = utcnow() - timedelta(days=31)
    second = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await second.start()
    with db.session() as s:
        assert s.get(SandboxRecord, old) is None
        assert s.get(SandboxRecord, recent) is not None and s.get(SandboxRecord, alive) is not None
    await second.close()
