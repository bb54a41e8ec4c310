"""Helpers for the runtime integration tests: build specs, find anything a sandbox could leave on the host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from corral.config import Settings
from corral.ids import new_sandbox_id
from corral.runtime import cgroups
from corral.runtime.base import SandboxSpec
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.lifecycle import OciRuntime
from corral.runtime.runc import RuncRuntime


def make_runtime(name: str, settings: Settings, **kw: float) -> OciRuntime:
    return GVisorRuntime(settings, **kw) if name == "gvisor" else RuncRuntime(settings, **kw)


def spec_for(rootfs: Path, **kw: object) -> SandboxSpec:
    return SandboxSpec(sandbox_id=track(new_sandbox_id()), template_rootfs=rootfs, **kw)  # type: ignore[arg-type]


def leftovers(settings: Settings, sandbox_id: str | None = None) -> list[str]:
    """Everything a sandbox (or, with None, any sandbox under settings.data_dir) could leave on the host."""
    data = str(settings.data_dir)
    found: list[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (sandbox_id and sandbox_id in cmd) or data in cmd:
            found.append(f"process {pid}: {cmd[:200]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if (data in line and line.split()[4] != data) or (sandbox_id and sandbox_id in line):
            found.append(f"mount: {line}")   # (the data dir's own shared bind is by design)
    for bf in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            backing = bf.read_text()
        except OSError:
            continue
        if data in backing:
            found.append(f"loop device {bf.parent.parent.name}: {backing.strip()}")
    for mnt in set(cgroups.hierarchies().values()):
        parent = mnt / cgroups.CGROUP_PARENT
        for d in parent.iterdir() if parent.is_dir() else []:
            if d.is_dir() and (sandbox_id is None or d.name == sandbox_id) and d.name in _created:
                found.append(f"cgroup dir {d}")
    for root in (settings.sandboxes_dir, settings.runsc_root, settings.runc_root):
        for entry in os.listdir(root) if root.exists() else []:
            if sandbox_id is None or sandbox_id in entry:
                found.append(f"state {root / entry}")
    return found


# Other engineers' sandboxes share /sys/fs/cgroup/*/corral: only ids this session created are judged there.
_created: set[str] = set()


def track(sandbox_id: str) -> str:
    _created.add(sandbox_id)
    return sandbox_id


def assert_no_leaks(settings: Settings, sandbox_id: str | None = None) -> None:
    left = leftovers(settings, sandbox_id)
    assert not left, "left behind:\n" + "\n".join(left)


def mode_of(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)
