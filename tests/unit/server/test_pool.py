"""Warm pools through the SandboxManager over FakeRuntimes: hand-out, refill, demand sizing, drain, no reuse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from server_fakes import FakeRuntime, FakeTemplates, settle

from corral.config import Settings
from corral.db import Database
from corral.pool import POOL_DIR, pool_member_ids, spec_for
from corral.sandboxes import CreateRequest, SandboxManager
from corral.server.keys import ensure_team


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def pool_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", domain="corral.test", max_timeout_s=3600, pool_size=2, pool_max=4)


@pytest.fixture
async def pooled(pool_settings: Settings, runtimes: dict[str, FakeRuntime], templates: FakeTemplates,
                 db: Database) -> AsyncIterator[SandboxManager]:
    mgr = SandboxManager(pool_settings, runtimes, templates, db=db, warm_pool=True)  # type: ignore[arg-type]
    assert mgr.pool is not None
    mgr.pool.check_interval_s = 0.05
    await mgr.start()
    yield mgr
    await mgr.close(drain_s=5)


def ready(mgr: SandboxManager, template: str = "base", runtime: str = "gvisor") -> list[str]:
    assert mgr.pool is not None
    pool = mgr.pool.pools.get((template, runtime))
    return [h.sandbox_id for h in pool.ready] if pool else []


async def create(mgr: SandboxManager, **kw: object) -> str:
    team = ensure_team(mgr.db, "t1")
    return (await mgr.create(CreateRequest(team_id=team, template="base", timeout_s=300, **kw))).id  # type: ignore[arg-type]


async def test_prewarms_hands_out_and_refills(pooled: SandboxManager, runtimes: dict[str, FakeRuntime],
                                              pool_settings: Settings) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    warm = ready(pooled)
    assert not runtimes["gvisor"].init_bodies  # a pool member is never /init'ed before it is handed out
    assert pool_member_ids(pool_settings.data_dir) == set(warm)
    markers = [json.loads((pool_settings.data_dir / POOL_DIR / sid).read_text()) for sid in warm]
    assert all(m["ready"] and m["runtime"] == "gvisor" and m["template"] == "base" for m in markers)
    sid = await create(pooled, env_vars={"FOO": "bar"}, secure=True)
    assert sid == warm[0] and sid not in ready(pooled)
    assert sid not in pool_member_ids(pool_settings.data_dir)
    body = runtimes["gvisor"].init_bodies[sid]
    assert body["envVars"] == {"FOO": "bar"} and body["accessToken"]
    assert [r.id for r in pooled.list(ensure_team(pooled.db, "t1"))] == [sid]  # members are never listed
    await until(lambda: len(ready(pooled)) == 2)


async def test_never_reuses_a_sandbox(pooled: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    handed: list[str] = []
    for _ in range(6):
        sid = await create(pooled)
        assert sid not in handed
        handed.append(sid)
        await pooled.kill(sid, ensure_team(pooled.db, "t1"))
    await settle(pooled)
    assert not set(handed) & set(ready(pooled))
    assert len(runtimes["gvisor"].specs) == len(set(runtimes["gvisor"].specs))


async def test_demand_grows_pool_to_max(pooled: SandboxManager) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    await asyncio.gather(*(create(pooled) for _ in range(6)))
    assert pooled.pool is not None and pooled.pool.target(("base", "gvisor")) == 4
    await until(lambda: len(ready(pooled)) == 4)


async def test_other_keys_pool_on_demand(pooled: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    assert ready(pooled, runtime="runc") == []  # not prewarmed
    await create(pooled, metadata={"corral.runtime": "runc"})  # a miss: cold create, and the key gets a pool
    await until(lambda: len(ready(pooled, runtime="runc")) == 2)


async def test_rebuild_drains(pooled: SandboxManager, runtimes: dict[str, FakeRuntime],
                              templates: FakeTemplates) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    old = ready(pooled)
    templates.get("base").created_at = "rebuilt"  # type: ignore[attr-defined]
    await until(lambda: set(old) <= set(runtimes["gvisor"].destroyed))
    await until(lambda: len(ready(pooled)) == 2)
    assert not set(old) & set(ready(pooled))
    sid = await create(pooled)
    assert sid not in old


async def test_rebuild_seen_at_take(pooled: SandboxManager, runtimes: dict[str, FakeRuntime],
                                    templates: FakeTemplates) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    assert pooled.pool is not None
    pooled.pool.check_interval_s = 3600  # only the create itself can notice the rebuild
    old = ready(pooled)
    templates.get("base").created_at = "rebuilt"  # type: ignore[attr-defined]
    assert await create(pooled) not in old


async def test_dead_member_falls_back_to_cold(pooled: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    dead = ready(pooled)[0]
    runtimes["gvisor"].servers.pop(dead).close()  # its agent is gone
    runtimes["gvisor"]._socket(dead).unlink()
    sid = await create(pooled)
    assert sid != dead and pooled.route(sid) is not None
    await settle(pooled)
    assert dead in runtimes["gvisor"].destroyed


async def test_close_destroys_members_keeps_handed_out(pool_settings: Settings, runtimes: dict[str, FakeRuntime],
                                                       templates: FakeTemplates, db: Database) -> None:
    mgr = SandboxManager(pool_settings, runtimes, templates, db=db, warm_pool=True)  # type: ignore[arg-type]
    await mgr.start()
    await until(lambda: len(ready(mgr)) == 2)
    sid = await create(mgr)
    await until(lambda: len(ready(mgr)) == 2)
    members = ready(mgr)
    await mgr.close(drain_s=5)
    assert set(members) <= set(runtimes["gvisor"].destroyed)
    assert sid in runtimes["gvisor"].alive
    assert pool_member_ids(pool_settings.data_dir) == set()


async def test_pool_size_zero_disables(tmp_path: Path, runtimes: dict[str, FakeRuntime], templates: FakeTemplates,
                                       db: Database) -> None:
    settings = Settings(data_dir=tmp_path / "d0", pool_size=0)
    mgr = SandboxManager(settings, runtimes, templates, db=db, warm_pool=True)  # type: ignore[arg-type]
    await mgr.start()
    await asyncio.sleep(0.1)
    assert not runtimes["gvisor"].specs
    await create(mgr)
    await asyncio.sleep(0.1)
    assert len(runtimes["gvisor"].specs) == 1
    await mgr.close(drain_s=5)


async def test_total_cap_over_all_keys(tmp_path: Path, runtimes: dict[str, FakeRuntime], templates: FakeTemplates,
                                       db: Database) -> None:
    settings = Settings(data_dir=tmp_path / "d1", pool_size=2, pool_max_total=3)
    mgr = SandboxManager(settings, runtimes, templates, db=db, warm_pool=True)  # type: ignore[arg-type]
    await mgr.start()
    await until(lambda: len(ready(mgr)) == 2)
    await create(mgr, metadata={"corral.runtime": "runc"})  # the runc key wants 2 more: only 1 fits
    await until(lambda: len(ready(mgr, runtime="runc")) == 1)
    await asyncio.sleep(0.2)
    assert len(ready(mgr)) + len(ready(mgr, runtime="runc")) == 3
    await mgr.close(drain_s=5)


async def test_miss_waits_for_running_refill(pooled: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    runtimes["gvisor"].create_delay = 0.3  # refills are now slow: the third create finds one running
    first, second = await create(pooled), await create(pooled)
    await asyncio.sleep(0.05)
    running_refill = list(runtimes["gvisor"].specs)[-1]
    third = await create(pooled)
    assert len({first, second, third}) == 3
    assert third == running_refill  # no cold create: it got the sandbox of the refill that was running
    assert third not in pool_member_ids(pooled.settings.data_dir)


async def test_one_waiter_per_refill_others_go_cold(pooled: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    await until(lambda: len(ready(pooled)) == 2)
    runtimes["gvisor"].create_delay = 0.3
    await asyncio.gather(create(pooled), create(pooled))
    await asyncio.sleep(0.05)
    ids = await asyncio.gather(create(pooled), create(pooled), create(pooled))
    assert len(set(ids)) == 3
    assert all(pooled.route(i) is not None for i in ids)


class FakeNetwork:
    """Records policy applies and forgets; `fail` makes apply raise (an nft error)."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, object]] = []
        self.forgotten: list[str] = []
        self.fail = False

    async def apply(self, sandbox_id: str, sandbox_dir: Path, policy: object) -> None:
        if self.fail:
            raise RuntimeError("nft failed")
        self.applied.append((sandbox_id, policy))

    def forget(self, sandbox_id: str) -> None:
        self.forgotten.append(sandbox_id)

    @staticmethod
    def has_network(sandbox_dir: Path) -> bool:
        return True


async def test_members_wait_with_the_default_policy(pool_settings: Settings, runtimes: dict[str, FakeRuntime],
                                                    templates: FakeTemplates, db: Database) -> None:
    from corral.net.policy import EgressPolicy

    net = FakeNetwork()
    mgr = SandboxManager(pool_settings, runtimes, templates, db=db, warm_pool=True,  # type: ignore[arg-type]
                         network=net)  # type: ignore[arg-type]
    assert mgr.pool is not None
    mgr.pool.check_interval_s = 0.05
    await mgr.start()
    try:
        await until(lambda: len(ready(mgr)) == 2)
        assert {sid for sid, _ in net.applied} == set(ready(mgr))
        assert all(p == EgressPolicy() for _, p in net.applied)
        applied = len(net.applied)
        default_sid = await create(mgr)                  # the default policy: no second apply on the create path
        assert default_sid not in [sid for sid, _ in net.applied[applied:]]
        await until(lambda: len(ready(mgr)) == 2)
        strict = EgressPolicy(allow_internet=False)
        strict_sid = await create(mgr, egress=strict)    # another policy: applied before /init
        assert (strict_sid, strict) in net.applied
        net.fail = True                                   # a member whose policy cannot be set is discarded
        await create(mgr)
        await asyncio.sleep(0.3)
        assert len(ready(mgr)) < 2
    finally:
        await mgr.close(drain_s=5)
    assert net.forgotten                                  # drained members are forgotten by the network service


async def test_close_while_a_member_is_being_prepared_destroys_it(
        pool_settings: Settings, runtimes: dict[str, FakeRuntime], templates: FakeTemplates, db: Database) -> None:
    """A member whose policy apply is still running at stop is in no pool yet: it must not be left behind."""
    gate = asyncio.Event()

    class SlowNetwork(FakeNetwork):
        async def apply(self, sandbox_id: str, sandbox_dir: Path, policy: object) -> None:
            self.applied.append((sandbox_id, policy))
            await gate.wait()  # never set: close() arrives first

    net = SlowNetwork()
    mgr = SandboxManager(pool_settings, runtimes, templates, db=db, warm_pool=True,  # type: ignore[arg-type]
                         network=net)  # type: ignore[arg-type]
    await mgr.start()
    await until(lambda: len(net.applied) == 1)
    preparing = net.applied[0][0]
    assert preparing in runtimes["gvisor"].alive and not ready(mgr)
    await mgr.close(drain_s=5)
    assert preparing in runtimes["gvisor"].destroyed
    assert preparing not in runtimes["gvisor"].alive
    assert pool_member_ids(pool_settings.data_dir) == set()


async def test_members_of_a_template_with_a_start_command_are_restores_of_its_snapshot(
        pool_settings: Settings, runtimes: dict[str, FakeRuntime], db: Database) -> None:
    """Such members come from the template's memory snapshot (its start command runs in them already): the create
    only /inits them with the request's env vars and token. While there is no snapshot, there are no members."""
    from server_fakes import FakeTemplate

    templates = FakeTemplates(FakeTemplate(id="base"), FakeTemplate(id="ci", start_cmd="serve", ready_cmd="check"))
    rt = runtimes["gvisor"]
    rt.ready_exit_codes = [0] * 50
    mgr = SandboxManager(pool_settings, runtimes, templates, db=db, warm_pool=True)  # type: ignore[arg-type]
    assert mgr.pool is not None
    mgr.pool.check_interval_s = 0.05
    mgr.pool.refill_backoff_s = 0.05
    snapshot_ready = False

    def restore_spec(template: object, runtime_name: str, sandbox_id: str) -> object:
        # The fake runtime cannot restore: a spec marked like a restore stands for one.
        return spec_for(pool_settings, template, sandbox_id) if snapshot_ready else None  # type: ignore[arg-type]

    mgr.pool.restore_spec = restore_spec  # type: ignore[assignment]
    await mgr.start()
    try:
        team = ensure_team(mgr.db, "t1")
        cold = (await mgr.create(CreateRequest(team_id=team, template="ci", timeout_s=300))).id  # demand: a pool
        assert [body["process"]["args"] for body, _ in rt.started[cold]] == [["-l", "-c", "serve"], ["-c", "check"]]
        await asyncio.sleep(0.3)
        assert ready(mgr, "ci") == []  # no snapshot: a cold member would run the start command on the create path
        snapshot_ready = True
        await until(lambda: len(ready(mgr, "ci")) == 2)
        member = ready(mgr, "ci")[0]
        assert member not in rt.started and member not in rt.init_bodies
        sid = (await mgr.create(CreateRequest(team_id=team, template="ci", timeout_s=300, env_vars={"A": "1"},
                                              secure=True))).id
        assert sid == member
        assert sid not in rt.started  # the start command was not run again
        assert rt.init_bodies[sid]["envVars"] == {"A": "1"} and rt.init_bodies[sid]["accessToken"]
        # Members that run a start command cost real memory: a burst does not grow their pool past pool_size.
        for _ in range(4):
            await mgr.create(CreateRequest(team_id=team, template="ci", timeout_s=300))
        await asyncio.sleep(0.5)
        assert mgr.pool.target(("ci", "gvisor")) == pool_settings.pool_size
        assert len(ready(mgr, "ci")) <= pool_settings.pool_size
    finally:
        await mgr.close(drain_s=5)
