"""With CORRAL_VOLUME_SIZE_MB a volume is a quota'd ext4 image: filling it fails cleanly (507 through the content
API, ENOSPC inside sandboxes on both tiers), it stays mounted across a restart, and destroy frees mount and loop."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from e2b import Volume
from e2b.exceptions import VolumeException

from corral.runtime.layout import is_mountpoint
from tests.integration.conftest import point_sdk_at
from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create
from tests.integration.volumes.conftest import own_server
from tests.integration.volumes.test_volumes_sdk import assert_clean

SIZE_MB = 16


@pytest.fixture(scope="module")
def quota_server() -> Iterator[CorralServer]:
    with own_server("corral-volq-", CORRAL_VOLUME_SIZE_MB=str(SIZE_MB)) as server:
        yield server


def test_quota_full_restart_destroy(quota_server: CorralServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server = point_sdk_at(monkeypatch, quota_server, quota_server.create_key("quota"))
    vol = Volume.create("small")
    data = server.data_dir / "volumes" / vol.volume_id / "data"
    assert is_mountpoint(data) and vol.list("/") == []   # no lost+found
    with pytest.raises(VolumeException, match="no space left"):
        vol.write_file("/big", b"x" * ((SIZE_MB + 4) << 20))
    assert vol.list("/") == []   # the partial upload is gone
    ids = []
    for tier in ("gvisor", "runc"):
        sbx = create(tier, volume_mounts={"/mnt/v": vol})
        ids.append(sbx.sandbox_id)
        try:
            r = sbx.commands.run(f"dd if=/dev/zero of=/mnt/v/fill bs=1M count={SIZE_MB * 2}; echo rc=$?; "
                                 "rm /mnt/v/fill; echo ok > /mnt/v/after", user="user")
            assert "No space left" in r.stdout + r.stderr and r.stdout.strip().endswith("rc=1"), r
        finally:
            sbx.kill()
    assert vol.read_file("/after") == "ok\n"
    server.stop()
    subprocess.run(["umount", str(data)], check=True)   # as after a reboot: the next start mounts it again
    server.start(("--pool-size", "0"))
    assert is_mountpoint(data) and vol.read_file("/after") == "ok\n"
    assert Volume.destroy(vol.volume_id)
    assert not data.exists() and not is_mountpoint(data)
    assert_clean(server.data_dir, ids)
