"""A networked gVisor sandbox (netstack in its netns) survives runsc checkpoint + restore with its policy intact.

This is the path pause/resume will take (docs/architecture.md "Agent signals"); here it is driven by hand."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from e2b import Sandbox

from corral.config import Settings
from corral.net import netns
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.health import wait_ready
from corral.runtime.lifecycle import run_detached
from corral.runtime.procs import run_cmd
from tests.integration.corral_server import CorralServer
from tests.integration.network.internet import PORT, Internet, net_info
from tests.integration.network.probe import assert_blocked, assert_reached, probe
from tests.integration.sdk.helpers import wait_until


async def _checkpoint_restore(rt: GVisorRuntime, sandbox_id: str, image: Path) -> None:
    lay = rt._layout(sandbox_id)
    rc, out = await run_cmd(*rt._runsc("kill", sandbox_id, "USR1"))
    assert rc == 0, out
    for _ in range(500):
        if not lay.socket_path.exists():
            break
        await asyncio.sleep(0.01)
    rc, out = await run_cmd(*rt._runsc("checkpoint", f"--image-path={image}", sandbox_id), timeout=60)
    assert rc == 0, out
    rc, out = await run_cmd(*rt._runsc("delete", "-force", sandbox_id))
    assert rc == 0, out
    info = netns.read_info(lay.dir)
    assert info is not None
    await netns.address_sandbox_end(info)   # runsc moved them into the old netstack
    argv = rt._runsc("restore", f"--image-path={image}", "--detach", f"--bundle={lay.bundle}", sandbox_id)
    await run_detached(rt.netstack_argv(argv), lay.agent_log, 60)
    rc, out = await run_cmd(*rt._runsc("kill", sandbox_id, "USR2"))
    assert rc == 0, out
    assert await wait_ready(lay.socket_path, 15, lambda: True)


def test_checkpoint_restore_keeps_network_and_policy(e2b: CorralServer, internet: Internet,
                                                     sandboxes: Callable[..., Sandbox]) -> None:
    sbx = sandboxes(network={"deny_out": [internet.sites["site-b.test"].ip]})
    a, b = f"{internet.sites['site-a.test'].ip}:{PORT}", f"{internet.sites['site-b.test'].ip}:{PORT}"
    before = probe(sbx, a, b)
    assert_reached(before, a)
    assert_blocked(before, b)
    sbx.commands.run("sleep 600", background=True)
    rt = GVisorRuntime(Settings(data_dir=e2b.data_dir, net_tag=e2b.net_tag, net_cidr=e2b.net_cidr))
    with tempfile.TemporaryDirectory(prefix="corral-ckpt-") as image:
        asyncio.run(_checkpoint_restore(rt, sbx.sandbox_id, Path(image)))
    assert wait_until(lambda: "sleep 600" in sbx.commands.run("ps ax").stdout, 10)
    after = probe(sbx, a, b)
    assert_reached(after, a)
    assert_blocked(after, b)
    info = net_info(e2b.data_dir, sbx.sandbox_id)
    assert_blocked(probe(sbx, f"{info.service_ip}:{e2b.port}"), f"{info.service_ip}:{e2b.port}")


@pytest.fixture
def tier() -> str:
    return "gvisor"   # checkpoint is a gVisor feature


def test_pause_refused_while_tcp_state_lingers(e2b: CorralServer, internet: Internet,
                                               sandboxes: Callable[..., Sandbox]) -> None:
    """runsc 20240729 panics saving a TCP endpoint in TIME_WAIT (the sandbox dies): Corral refuses the pause instead,
    from the host's conntrack entry, and the sandbox keeps running."""
    sbx = sandboxes()
    site = f"http://{internet.sites['site-a.test'].ip}:{PORT}/"
    r = sbx.commands.run(f"curl -sS -o /dev/null -w '%{{http_code}}' --noproxy '*' --max-time 5 {site}")
    assert r.stdout == "200", r.stdout + r.stderr
    assert sbx.pause() is False                     # 409: the SDK answers False
    assert sbx.commands.run("echo alive").stdout == "alive\n"
    assert sbx.is_running()
