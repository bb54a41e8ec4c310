"""A networked gVisor sandbox (netstack in its netns) survives pause + resume with its policy intact; a pause that
would crash gVisor (TCP state it cannot save) is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.network.internet import PORT, Internet, net_info
from tests.integration.network.probe import assert_blocked, assert_reached, probe
from tests.integration.sdk.helpers import wait_until


def test_pause_resume_keeps_network_and_policy(e2b: CorralServer, internet: Internet,
                                               sandboxes: Callable[..., Sandbox]) -> None:
    """Pause (runsc checkpoint of gVisor's netstack) and resume (re-addressed netns, restore) through the SDK."""
    sbx = sandboxes(network={"deny_out": [internet.sites["site-b.test"].ip]})
    a, b = f"{internet.sites['site-a.test'].ip}:{PORT}", f"{internet.sites['site-b.test'].ip}:{PORT}"
    # No TCP before the pause: runsc 20240729 panics saving an open or TIME_WAIT endpoint (Corral refuses such a
    # pause, next test). DNS (UDP, through Corral's resolver) shows the network is up.
    assert internet.sites["site-a.test"].ip in sbx.commands.run("getent hosts site-a.test").stdout
    sbx.commands.run("sleep 600", background=True)
    assert sbx.pause() is True
    sbx = Sandbox.connect(sbx.sandbox_id)
    assert wait_until(lambda: "sleep 600" in sbx.commands.run("ps ax").stdout, 10)
    after = probe(sbx, a, b)
    assert_reached(after, a)
    assert_blocked(after, b)
    info = net_info(e2b.data_dir, sbx.sandbox_id)
    assert_blocked(probe(sbx, f"{info.service_ip}:{e2b.port}"), f"{info.service_ip}:{e2b.port}")


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


@pytest.fixture
def tier() -> str:
    return "gvisor"   # memory checkpoints are a gVisor feature
