"""Pausing a sandbox while sandboxes started after it run: their private mount namespaces (gVisor's netstack wrapper)
must not pin its layer (they did on a host whose / is a private mount, and the pause failed)."""

from __future__ import annotations

from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.pause.helpers import assert_clean, state
from tests.integration.sdk.helpers import create


def test_pause_with_newer_neighbours_running(e2b: CorralServer) -> None:
    first = create("gvisor", timeout=120)
    later = [create("gvisor", timeout=120) for _ in range(2)]
    try:
        first.files.write("/home/user/kept.txt", "kept")
        assert first.pause() is True
        assert state(first) == "paused"
        first = Sandbox.connect(first.sandbox_id)
        assert first.files.read("/home/user/kept.txt") == "kept"
        for s in later:
            assert s.commands.run("echo ok").stdout == "ok\n"
    finally:
        for s in [first, *later]:
            s.kill()
    assert_clean(e2b, [s.sandbox_id for s in [first, *later]])
