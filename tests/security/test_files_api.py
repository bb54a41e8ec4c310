"""The envd files API (through the gateway, stock SDK) cannot be steered out of the sandbox; uploads hit the quota."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException

from tests.integration.corral_server import CorralServer
from tests.security.conftest import sh


def _read(box: Sandbox, path: str) -> str | None:
    try:
        return box.files.read(path, user="root")  # type: ignore[arg-type, no-any-return]
    except SandboxException:
        return None


def test_traversal_absolute_and_symlinked_reads_stay_inside(box: Sandbox, host_secret: tuple[Path, str],
                                                            sdk_env: CorralServer) -> None:
    path, secret = host_secret
    sh(box, f"ln -sfn {path} /home/user/to-secret; ln -sfn / /home/user/to-root; "
            f"ln -sfn {sdk_env.data_dir} /home/user/to-data")
    for attempt in (str(path), "../../../../../.." + str(path), "/home/user/../../.." + str(path),
                    "/home/user/to-secret", "/home/user/to-root" + str(path), "/proc/1/root" + str(path),
                    "/home/user/to-data/corral.db"):
        got = _read(box, attempt)
        assert got is None or secret not in got, attempt
        assert got is None or "SQLite" not in got, attempt
    with pytest.raises(SandboxException):
        box.files.list("/home/user/to-data/sandboxes")


def test_writes_through_traversal_and_symlinks_land_inside(box: Sandbox) -> None:
    name = f"corral-files-escape-{os.getpid()}-{secrets.token_hex(4)}"
    for target in (f"../../../../../../tmp/{name}", f"/tmp/{name}", f"/home/user/to-root/tmp/{name}-2"):
        try:
            box.files.write(target, "escaped", user="root")  # type: ignore[arg-type]
        except SandboxException:
            pass
    assert not list(Path("/tmp").glob(f"{name}*")), "a files-API write landed on the host"
    assert sh(box, f"cat /tmp/{name}").stdout == "escaped"  # it went to the sandbox's own /tmp


def test_upload_over_the_disk_quota_fails_cleanly(box: Sandbox, sdk_env: CorralServer) -> None:
    # The suite's server gives each sandbox a 256 MiB writable layer (CORRAL_DEFAULT_DISK_MB).
    blob = b"\0" * (300 << 20)
    with pytest.raises(SandboxException):
        box.files.write("/home/user/huge.bin", blob, user="root")  # type: ignore[arg-type]
    assert sh(box, "echo alive").stdout.strip() == "alive"
    layer = sdk_env.data_dir / "sandboxes" / box.sandbox_id / "layer.img"
    if layer.exists():  # runc and gVisor both keep it; its real usage can never pass its size
        assert layer.stat().st_blocks * 512 <= layer.stat().st_size
    sh(box, "rm -f /home/user/huge.bin")
