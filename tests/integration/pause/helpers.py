"""Shared helpers of the pause tests: a background in-memory counter, state polling, cleanup proof."""

from __future__ import annotations

from pathlib import Path

from e2b import Sandbox

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.sdk.helpers import wait_until

# Counts in memory and mirrors the count to a file: a restarted process would start again from 1.
COUNTER = ("python3 -u -c 'import time\nn = 0\nwhile True:\n    n += 1\n    print(n)\n"
           "    open(\"/tmp/counter.tmp\", \"w\").write(str(n))\n    __import__(\"os\").replace(\"/tmp/counter.tmp\", "
           "\"/tmp/counter\")\n    time.sleep(0.1)\n'")


def counter(sbx: Sandbox) -> int:
    return int(sbx.files.read("/tmp/counter") or 0)


def state(sbx: Sandbox) -> str:
    return str(Sandbox.get_info(sbx.sandbox_id).state.value)


def assert_clean(server: CorralServer, sandbox_ids: list[str]) -> None:
    """Nothing of these sandboxes left: processes, mounts, loops, cgroups, dirs, checkpoint images."""
    def left() -> list[str]:
        images = server.data_dir / "checkpoints"
        extra = [f"image: {p}" for p in images.iterdir()] if images.exists() else []
        return leftovers(server.data_dir, sandbox_ids) + [e for e in extra if any(s in e for s in sandbox_ids)]
    assert wait_until(lambda: not left(), timeout=20), left()


def images_dir(server: CorralServer) -> Path:
    return server.data_dir / "checkpoints"
