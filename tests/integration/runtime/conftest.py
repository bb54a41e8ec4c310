"""Runtime integration fixtures: a throw-away data dir, a busybox rootfs, the real agent, and a leak checker."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from corral.config import Settings
from corral.net.netns import used_indexes
from corral.net.nft import remove_table
from corral.runtime.lifecycle import OciRuntime
from corral.templates.chroot import mounts_under
from tests.integration.runtime.helpers import assert_no_leaks, make_runtime

BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "ls", "cat", "sleep", "echo", "id", "dd", "df", "mount", "unshare", "touch", "rm", "ps", "seq"]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("runtime integration tests need root")
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    _need_root()
    d = Path(tempfile.mkdtemp(prefix="corral-rt-"))
    yield d
    # The runtime made its data dir a shared bind mount (corral/net/gvisor_netns.ensure_shared): undo it.
    for mp in reversed(mounts_under(d)):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    shutil.rmtree(d)


@pytest.fixture(scope="session")
def agent_binary(work_dir: Path) -> Path:
    """The real agent, built from the current sources into our own dir (never the shared _bin)."""
    from corral.agent.build import build_agent

    return build_agent(work_dir / "bin" / "corral-agent")


@pytest.fixture(scope="session")
def tiny_rootfs(work_dir: Path) -> Path:
    """A static busybox and /etc/passwd is all a static agent needs."""
    root = work_dir / "tpl" / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return root


@pytest.fixture(scope="session")
def settings(work_dir: Path, agent_binary: Path) -> Iterator[Settings]:
    # A network tag and range of its own (several test runs share this host); its nft table goes at the end.
    octet = random.randrange(192, 250)
    s = Settings(data_dir=work_dir / "data", agent_binary=agent_binary, net_tag=f"rt{octet:x}",
                 net_cidr=f"10.{octet}.0.0/16")
    yield s
    if not used_indexes(s):
        asyncio.run(remove_table(s))


@pytest.fixture(params=["gvisor", "runc"])
async def runtime(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[OciRuntime]:
    """Each backend; after the test every sandbox it knows is destroyed and the host is checked for leftovers."""
    rt = make_runtime(request.param, settings)
    yield rt
    for sid in await rt.list_sandbox_ids():
        await rt.destroy(sid)
    assert_no_leaks(settings)


