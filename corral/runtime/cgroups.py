"""cgroup v1 helpers: find every hierarchy, read a sandbox's limits, kill its tasks, remove its dirs everywhere.

runc and runsc create the cgroups themselves from the spec's cgroupsPath; this module only inspects and cleans up.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from functools import lru_cache
from pathlib import Path

from corral.errors import RuntimeFailure

CGROUP_PARENT = "corral"   # every sandbox lives at /<CGROUP_PARENT>/<sandbox_id> in each hierarchy


def cgroups_path(sandbox_id: str) -> str:
    """The OCI linux.cgroupsPath of a sandbox (absolute: relative to each hierarchy's root, not to our own cgroup)."""
    return f"/{CGROUP_PARENT}/{sandbox_id}"


@lru_cache(maxsize=1)
def hierarchies() -> dict[str, Path]:
    """Mount point of every cgroup hierarchy (v1 controllers by their option name, the v2 one as 'unified')."""
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, superopts = post.split()[:3]
            mnt = Path(pre.split()[4])
            if fstype == "cgroup2":
                found.setdefault("unified", mnt)
            elif fstype == "cgroup":
                opts = [o for o in superopts.split(",") if o not in ("rw", "ro") and not o.startswith("release_agent")]
                for o in opts:
                    if o in ("relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr"):
                        continue
                    found.setdefault(o, mnt)
    return found


def dirs(sandbox_id: str) -> list[Path]:
    """The sandbox's cgroup directory in every hierarchy that has one (each mount point once)."""
    rel = cgroups_path(sandbox_id).lstrip("/")
    seen: set[Path] = set()
    out = []
    for mnt in hierarchies().values():
        if mnt in seen:
            continue
        seen.add(mnt)
        d = mnt / rel
        if d.is_dir():
            out.append(d)
    return out


def controller_dir(controller: str, sandbox_id: str) -> Path:
    mnt = hierarchies().get(controller)
    if mnt is None:
        raise RuntimeFailure(f"cgroup controller {controller} is not mounted")
    return mnt / cgroups_path(sandbox_id).lstrip("/")


def read(controller: str, sandbox_id: str, name: str) -> str:
    """One control file of the sandbox's cgroup, e.g. read('memory', id, 'memory.limit_in_bytes')."""
    return (controller_dir(controller, sandbox_id) / name).read_text().strip()


def _procs_below(d: Path) -> set[int]:
    pids: set[int] = set()
    for root, _subdirs, files in os.walk(d):
        if "cgroup.procs" in files:
            try:
                pids.update(int(x) for x in Path(root, "cgroup.procs").read_text().split())
            except OSError:
                pass
    return pids


def pids(sandbox_id: str) -> set[int]:
    """Every process in the sandbox's cgroups (all hierarchies, nested dirs included)."""
    out: set[int] = set()
    for d in dirs(sandbox_id):
        out |= _procs_below(d)
    return out


def _set_frozen(sandbox_id: str, frozen: bool, wait_s: float = 1.0) -> bool:
    """Freeze (or thaw) the sandbox's freezer cgroup; True if it reached the state within wait_s."""
    mnt = hierarchies().get("freezer")
    if mnt is None:
        return False
    state = mnt / cgroups_path(sandbox_id).lstrip("/") / "freezer.state"
    want = "FROZEN" if frozen else "THAWED"
    try:
        state.write_text(want)
        deadline = time.monotonic() + wait_s
        while state.read_text().strip() != want:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    except OSError:
        return False
    return True


def kill_all(sandbox_id: str) -> set[int]:
    """SIGKILL every process in the sandbox's cgroups; returns the pids signalled.

    The cgroup is frozen first, so a fork bomb cannot make new processes faster than they are killed."""
    _set_frozen(sandbox_id, True)  # best effort: without a freezer hierarchy the kill loop is all there is
    try:
        victims = pids(sandbox_id)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        _set_frozen(sandbox_id, False, wait_s=0.0)  # SIGKILLed tasks die once thawed
    return victims


async def remove(sandbox_id: str, timeout: float = 3.0) -> None:
    """rmdir the sandbox's cgroup dirs (deepest first) in every hierarchy; re-kills stragglers until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for d in dirs(sandbox_id):
            for root, subdirs, _files in sorted(os.walk(d), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(root)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise RuntimeFailure(f"rmdir {root}: {e}") from e
                    busy.append(root)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cgroup dirs still busy after {timeout}s: {busy}")
        kill_all(sandbox_id)       # a process we did not know about (or a dying one) still holds the cgroup
        await asyncio.sleep(0.005)


def set_parent_cpu_shares(shares: int) -> None:
    """Weight of all sandboxes together against the host's own tasks (the API server, the gateway).

    Below the host's default (1024) the control plane wins the CPU whenever it needs it: a neighbour's commands,
    which pass through the gateway, then keep their latency while another sandbox spins (3-4x slower without)."""
    mnt = hierarchies().get("cpu")
    if mnt is None:
        return
    parent = mnt / CGROUP_PARENT
    parent.mkdir(exist_ok=True)
    (parent / "cpu.shares").write_text(str(shares))
