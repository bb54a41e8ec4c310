"""A server restart keeps running sandboxes' policies: re-attach re-applies them (resolver, proxy, nftables)."""

from __future__ import annotations

from collections.abc import Callable

from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.network.internet import PORT, Internet
from tests.integration.network.probe import assert_blocked, assert_reached, fetch, probe

A, B = "site-a.test", "site-b.test"


def test_policy_survives_server_restart(e2b: CorralServer, internet: Internet,
                                        sandboxes: Callable[..., Sandbox]) -> None:
    sbx = sandboxes(network={"deny_out": ["0.0.0.0/0"], "allow_out": [A]})
    b_ip = f"{internet.sites[B].ip}:{PORT}"
    e2b.stop()
    e2b.start()
    results = probe(sbx, f"{A}:{PORT}", b_ip, f"{B}:{PORT}")
    assert_reached(results, f"{A}:{PORT}")          # the resolver knows the sandbox again
    assert_blocked(results, b_ip, f"{B}:{PORT}")
    assert fetch(sbx, f"http://{B}:{PORT}/").startswith("403 ")
    assert fetch(sbx, f"http://{A}:{PORT}/").startswith("200 ")
