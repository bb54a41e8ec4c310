"""Network state goes with the sandbox on every path: create rollback and the sweep after a server crash."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.ids import new_sandbox_id
from corral.net import netns
from corral.pool import pool_member_ids
from corral.runtime.base import SandboxSpec
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.layout import SandboxLayout
from tests.integration.corral_server import BASE_TEMPLATES, CorralServer, leftovers
from tests.integration.network.internet import net_leftovers
from tests.integration.sdk.helpers import wait_until


class _FailsAfterNetwork(GVisorRuntime):
    async def _start(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        assert (netns.NETNS_DIR / netns.netns_name(spec.sandbox_id)).exists()   # the netns was made
        raise RuntimeFailure("injected start failure")


def test_create_rollback_removes_network(e2b: CorralServer) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-net-rb-") as d:
        settings = Settings(data_dir=Path(d), net_tag=e2b.net_tag, net_cidr=e2b.net_cidr)
        rt = _FailsAfterNetwork(settings)
        sid = new_sandbox_id()
        captured: list[netns.NetInfo] = []
        real_setup = netns.setup

        async def spy(*args: object) -> netns.NetInfo:
            info = await real_setup(*args)  # type: ignore[arg-type]
            captured.append(info)
            return info

        netns.setup = spy  # type: ignore[assignment]
        try:
            with pytest.raises(RuntimeFailure, match="injected"):
                asyncio.run(rt.create(SandboxSpec(sandbox_id=sid, template_rootfs=BASE_TEMPLATES / "base" / "rootfs")))
        finally:
            netns.setup = real_setup  # type: ignore[assignment]
        assert captured and net_leftovers(e2b.net_tag, captured, settings.data_dir) == []
        assert leftovers(settings.data_dir, [sid]) == []
        # The runtime made its data dir a shared bind (corral/net/gvisor_netns.ensure_shared): undo it first.
        subprocess.run(["umount", "-l", d], check=False, capture_output=True)


def test_crash_sweep_removes_network_of_orphans(e2b: CorralServer) -> None:
    """Warm pool members have no row: after a SIGKILLed server restarts, its sweep destroys them, netns included."""
    assert wait_until(lambda: len(pool_member_ids(e2b.data_dir)) > 0, 30)
    # A member still being made may have no net.json yet: take those that have one.
    infos = [i for m in sorted(pool_member_ids(e2b.data_dir))
             if (i := netns.read_info(e2b.data_dir / "sandboxes" / m)) is not None]
    assert infos
    e2b.stop(signal.SIGKILL)
    e2b.start()
    assert wait_until(lambda: not net_leftovers(e2b.net_tag, infos, e2b.data_dir), 30), \
        net_leftovers(e2b.net_tag, infos, e2b.data_dir)
