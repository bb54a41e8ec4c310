"""Warm pools through a real server and the stock SDK: no reuse, settings applied, refill, drain on rebuild, no leaks."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox

from corral.config import Settings
from corral.pool import pool_member_ids
from corral.templates.store import TemplateStore
from tests.integration.conftest import point_sdk_at, require_host
from tests.integration.corral_server import BASE_TEMPLATES, CorralServer, leftovers, teardown_server
from tests.integration.sdk.helpers import wait_until

POOL_SIZE = 2


@pytest.fixture(scope="module")
def pool_server() -> Iterator[CorralServer]:
    """A server of its own: the rebuild test rewrites template.json, which must not be the machine's shared one."""
    require_host()
    data_dir = Path(tempfile.mkdtemp(prefix="corral-pool-"))
    tdir = data_dir / "templates" / "base"
    tdir.mkdir(parents=True)
    (tdir / "rootfs").symlink_to(BASE_TEMPLATES / "base" / "rootfs")
    shutil.copy(BASE_TEMPLATES / "base" / "template.json", tdir / "template.json")
    server = CorralServer(data_dir=data_dir)
    server.start(("--pool-size", str(POOL_SIZE)))
    try:
        yield server
    finally:
        teardown_server(server, 100)


@pytest.fixture(scope="module")
def pool_key(pool_server: CorralServer) -> str:
    return pool_server.create_key("pool")


@pytest.fixture
def sdk(pool_server: CorralServer, pool_key: str, monkeypatch: pytest.MonkeyPatch) -> CorralServer:
    point_sdk_at(monkeypatch, pool_server, pool_key)
    assert wait_until(lambda: len(pool_member_ids(pool_server.data_dir)) >= POOL_SIZE, timeout=30)
    return pool_server


def test_no_reuse_between_sandboxes(sdk: CorralServer) -> None:
    first = Sandbox.create()
    try:
        assert first.sandbox_id not in pool_member_ids(sdk.data_dir)
        first.files.write("/home/user/secret.txt", "from the first sandbox")
        first.commands.run("echo dirty > /tmp/dirty")
        boot1 = first.commands.run("cat /proc/sys/kernel/random/boot_id").stdout
    finally:
        first.kill()
    second = Sandbox.create()
    try:
        assert second.sandbox_id != first.sandbox_id
        assert not second.files.exists("/home/user/secret.txt")
        assert second.commands.run("test -e /tmp/dirty || echo clean").stdout.strip() == "clean"
        assert second.commands.run("cat /proc/sys/kernel/random/boot_id").stdout != boot1
        # Nothing ran in it before the user: the only processes are the agent and this command's shell.
        ps = second.commands.run("ps -e -o comm=", user="root").stdout.split()
        assert set(ps) <= {"corral-agent", "bash", "ps"}, ps
    finally:
        second.kill()


def test_settings_apply_to_pooled_sandbox(sdk: CorralServer) -> None:
    sbx = Sandbox.create(metadata={"who": "pool-test"}, envs={"POOL_ENV": "yes"}, timeout=123, secure=True)
    try:
        info = sbx.get_info()
        assert info.metadata["who"] == "pool-test"
        assert 120 <= (info.end_at - info.started_at).total_seconds() <= 124
        assert abs((datetime.now(UTC) - info.started_at).total_seconds()) < 30  # started at claim, not at refill
        assert sbx.commands.run("echo $POOL_ENV; id -un; pwd").stdout.split() == ["yes", "user", "/home/user"]
        listed = {s.sandbox_id for s in Sandbox.list().next_items()}
        assert sbx.sandbox_id in listed and not listed & pool_member_ids(sdk.data_dir)
        # Secure: the agent was /init'ed with this sandbox's token at claim time.
        r = httpx.get(f"{sdk.sandbox_url}/envs", headers={"E2b-Sandbox-Id": sbx.sandbox_id,
                                                           "E2b-Sandbox-Port": "49983"})
        assert r.status_code in (401, 403)
    finally:
        sbx.kill()


def test_refill_after_burst_and_no_leaks(sdk: CorralServer) -> None:
    burst = [Sandbox.create() for _ in range(POOL_SIZE + 2)]
    ids = [s.sandbox_id for s in burst]
    assert len(set(ids)) == len(ids)
    for sbx in burst:
        assert sbx.commands.run("true").exit_code == 0
        sbx.kill()
    assert wait_until(lambda: len(pool_member_ids(sdk.data_dir)) >= POOL_SIZE, timeout=60)
    assert not set(ids) & pool_member_ids(sdk.data_dir)
    assert wait_until(lambda: not leftovers(sdk.data_dir, ids), timeout=60), leftovers(sdk.data_dir, ids)


def test_rebuild_drains_pool(sdk: CorralServer) -> None:
    old = pool_member_ids(sdk.data_dir)
    store = TemplateStore(Settings(data_dir=sdk.data_dir))
    store.register(store.get("base").model_copy(update={"created_at": datetime.now(UTC)}))
    assert wait_until(lambda: not old & pool_member_ids(sdk.data_dir), timeout=20)
    assert wait_until(lambda: len(pool_member_ids(sdk.data_dir)) >= POOL_SIZE, timeout=60)
    sbx = Sandbox.create()
    try:
        assert sbx.sandbox_id not in old
        assert sbx.commands.run("true").exit_code == 0
    finally:
        sbx.kill()
    assert wait_until(lambda: not leftovers(sdk.data_dir, [sbx.sandbox_id, *old]), timeout=20), \
        leftovers(sdk.data_dir, [sbx.sandbox_id, *old])


def test_stop_destroys_members_and_crash_leaves_them_to_the_sweep() -> None:
    """Chosen: pool members are destroyed at stop, not re-adopted; after a crash the next start removes them."""
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-poolstop-")))
    server.prepare()
    try:
        server.start(("--pool-size", str(POOL_SIZE)))
        assert wait_until(lambda: len(pool_member_ids(server.data_dir)) >= POOL_SIZE, timeout=30)
        crashed = pool_member_ids(server.data_dir)
        server.stop(signal.SIGKILL)
        server.start(("--pool-size", str(POOL_SIZE)))
        assert wait_until(lambda: not any(m in line for line in leftovers(server.data_dir) for m in crashed),
                          timeout=30), leftovers(server.data_dir)
        assert wait_until(lambda: len(pool_member_ids(server.data_dir)) >= POOL_SIZE, timeout=30)
        server.stop()  # graceful: members destroyed, markers gone, so leftovers() sees everything
        assert pool_member_ids(server.data_dir) == set()
        assert wait_until(lambda: not leftovers(server.data_dir), timeout=20), leftovers(server.data_dir)
    finally:
        teardown_server(server)
