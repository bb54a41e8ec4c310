"""Lifecycle options through the stock SDK: pause at timeout, auto-resume by gateway traffic, runc filesystem-only."""

from __future__ import annotations

import time

import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException

from tests.integration.corral_server import CorralServer
from tests.integration.pause.helpers import assert_clean, state
from tests.integration.sdk.helpers import create, wait_until


def test_on_timeout_pause_then_auto_resume_through_gateway(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=3, lifecycle={"on_timeout": "pause", "auto_resume": True})
    try:
        sbx.commands.run("echo kept > /home/user/kept.txt; sleep 1000 >/dev/null 2>&1 &")
        info = sbx.get_info()
        assert info.lifecycle["on_timeout"] == "pause" and info.lifecycle["auto_resume"] is True
        assert wait_until(lambda: state(sbx) == "paused", timeout=30)
        # A plain envd request through the gateway resumes it transparently.
        started = time.monotonic()
        r = sbx.commands.run("cat /home/user/kept.txt; pgrep -c sleep")
        assert r.stdout.split() == ["kept", "1"]
        assert time.monotonic() - started < 10
        assert state(sbx) == "running"
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def test_paused_without_auto_resume_answers_clearly(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=3, lifecycle={"on_timeout": "pause"})
    try:
        assert wait_until(lambda: state(sbx) == "paused", timeout=30)
        started = time.monotonic()
        with pytest.raises(SandboxException) as exc:
            sbx.files.read("/etc/hostname")
        assert "paused" in str(exc.value) and time.monotonic() - started < 5
        assert state(sbx) == "paused"
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=60)
        assert sbx.files.read("/etc/hostname")
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def test_runc_pause_is_filesystem_only_and_says_so(e2b: CorralServer) -> None:
    sbx = create("runc", timeout=120, envs={"KEEP_ME": "yes"})
    try:
        sbx.files.write("/home/user/f.txt", "files survive")
        sbx.commands.run("sleep 1000 >/dev/null 2>&1 &")
        assert sbx.pause() is True
        info = Sandbox.get_info(sbx.sandbox_id)
        assert info.state.value == "paused" and info.metadata["corral.pause_mode"] == "filesystem"
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=120)
        assert sbx.files.read("/home/user/f.txt") == "files survive"
        r = sbx.commands.run("echo $KEEP_ME; pgrep -c sleep || true")
        assert r.stdout.split() == ["yes", "0"]           # env re-applied, processes gone (cold boot)
        assert "corral.pause_mode" not in Sandbox.get_info(sbx.sandbox_id).metadata
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def test_gvisor_filesystem_only_pause_on_request(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=120)
    try:
        sbx.files.write("/home/user/f.txt", "fs only")
        assert sbx.pause(mode="filesystem") is True
        assert Sandbox.get_info(sbx.sandbox_id).metadata["corral.pause_mode"] == "filesystem"
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=120)
        assert sbx.files.read("/home/user/f.txt") == "fs only"
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def test_kill_paused_sandbox_leaves_nothing(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=120)
    sbx.pause()
    assert (e2b.data_dir / "checkpoints" / sbx.sandbox_id).is_dir()
    sbx.kill()
    assert not [s for s in Sandbox.list().next_items() if s.sandbox_id == sbx.sandbox_id]
    assert_clean(e2b, [sbx.sandbox_id])


def test_kill_during_pause_wins(e2b: CorralServer) -> None:
    import threading

    sbx = create("gvisor", timeout=120)
    outcome: list[object] = []

    def pause() -> None:
        try:
            outcome.append(sbx.pause())
        except Exception as e:  # noqa: BLE001 - whichever way the race goes, it is recorded
            outcome.append(e)

    t = threading.Thread(target=pause)
    t.start()
    time.sleep(0.05)
    sbx.kill()
    t.join(timeout=60)
    assert outcome, "pause never returned"
    assert not [s for s in Sandbox.list().next_items() if s.sandbox_id == sbx.sandbox_id]
    with pytest.raises(SandboxException):
        Sandbox.connect(sbx.sandbox_id)
    assert_clean(e2b, [sbx.sandbox_id])
