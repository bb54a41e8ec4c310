"""The agent as PID 1 of a real gVisor sandbox, driven by the stock SDK."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import CommandExitException, Sandbox
from e2b.sandbox.commands.command_handle import PtySize

from corral.agent.build import build_agent
from tests.integration.agent.gvisor_bundle import GvisorAgent, runsc_available

ROOTFS = Path(os.environ.get("CORRAL_BASE_TEMPLATES", "/var/lib/corral/templates")) / "base" / "rootfs"

pytestmark = pytest.mark.skipif(
    not (runsc_available() and (ROOTFS / "bin").exists()), reason="needs root, runsc and the base template rootfs"
)


@pytest.fixture(scope="module")
def gagent() -> Iterator[GvisorAgent]:
    g = GvisorAgent(ROOTFS, build_agent(), Path(tempfile.mkdtemp(prefix="corral-agent-gv-")))
    try:
        g.start()
        yield g
    finally:
        g.stop()


@pytest.fixture
def gsbx(gagent: GvisorAgent, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    assert gagent.relay is not None
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", f"http://127.0.0.1:{gagent.relay.port}")
    monkeypatch.setenv("E2B_API_KEY", "e2b_" + "0" * 40)
    return Sandbox.create()


def test_default_user_home_and_env(gsbx: Sandbox) -> None:
    r = gsbx.commands.run("id -un; id -Gn; pwd; echo $HOME:$USER; echo $$")
    name, groups, cwd, env, _ = r.stdout.splitlines()
    assert (name, cwd, env) == ("user", "/home/user", "/home/user:user")
    assert "sudo" in groups.split()  # supplementary groups from /etc/group
    assert gsbx.commands.run("id -u", user="root").stdout == "0\n"


def test_agent_is_pid1_and_reaps_orphans(gsbx: Sandbox) -> None:
    assert gsbx.commands.run("cat /proc/1/comm").stdout == "corral-agent\n"
    gsbx.commands.run("(sleep 0.3 &) ; (sleep 0.2 &) ; true")
    time.sleep(0.8)
    zombies = gsbx.commands.run("ps -eo stat= | grep -c '^Z' || true").stdout.strip()
    assert zombies == "0"


def test_files_are_owned_by_user(gsbx: Sandbox) -> None:
    info = gsbx.files.write("it/owned.txt", "x")
    assert info.path == "/home/user/it/owned.txt"
    assert gsbx.commands.run("stat -c %U:%G /home/user/it /home/user/it/owned.txt").stdout == "user:user\nuser:user\n"
    assert gsbx.files.get_info("it/owned.txt").owner == "user"


def test_exit_code_and_pty(gsbx: Sandbox) -> None:
    with pytest.raises(CommandExitException):
        gsbx.commands.run("exit 5")
    out = bytearray()
    h = gsbx.pty.create(PtySize(rows=10, cols=50))
    t = threading.Thread(target=lambda: h.wait(on_pty=out.extend), daemon=True)
    t.start()
    gsbx.pty.send_stdin(h.pid, b"echo S''Z=$(stty size); exit\n")
    t.join(10)
    assert b"SZ=10 50" in out


def test_quiesce_checkpoint_restore_keeps_processes(gsbx: Sandbox, gagent: GvisorAgent) -> None:
    h = gsbx.commands.run("read x; echo got:$x", background=True, stdin=True, timeout=0)
    h.disconnect()
    gsbx.files.write("/tmp/state.txt", "kept")
    ckpt_ms, restore_ms = gagent.checkpoint_restore()
    print(f"\ngVisor: checkpoint {ckpt_ms:.0f} ms, restore to healthy {restore_ms:.0f} ms")
    assert any(p.pid == h.pid for p in gsbx.commands.list())
    assert gsbx.files.read("/tmp/state.txt") == "kept"
    h2 = gsbx.commands.connect(h.pid)
    gsbx.commands.send_stdin(h.pid, "again\n")
    assert h2.wait().stdout == "got:again\n"


def test_run_true_latency(gsbx: Sandbox, gagent: GvisorAgent) -> None:
    for _ in range(3):
        gsbx.commands.run("true")
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        gsbx.commands.run("true")
        ts.append((time.perf_counter() - t0) * 1000)
    print(f"\ngVisor: ready {gagent.ready_ms:.0f} ms; commands.run('true') median {statistics.median(ts):.1f} ms")
    assert statistics.median(ts) < 1000
