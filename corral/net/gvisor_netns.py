"""Makes runsc's --network=sandbox work on kernels where every netns has /proc/sys/net/core/rmem_default.

runsc (20240729) refuses to copy a netns's interfaces into its netstack when `isRootNS()` is true, and decides that
by checking that /proc/sys/net/core/rmem_default exists; since Linux 6.x that file exists in every netns. The check
runs in the `runsc run`/`runsc restore` process after it joins the sandbox's netns. So that process (and only it,
with the sandbox and gofer it spawns) runs in a private mount namespace with an empty read-only tmpfs over
/proc/sys/net. It must be /proc/sys/net: its dentry is shared by all netns, while the dentries below it belong to
one netns each, so a mount on /proc/sys/net/core (made in the host netns) is not seen after setns (measured).
The host's mounts stay visible (slave propagation), so the overlay rootfs and agent socket paths work unchanged.
On a host whose / is a private mount (this one), a new namespace would keep its own copy of every mount that existed
when it was made — other sandboxes' layers, overlays and volume images — and pin their loop devices after the host
unmounted them (a pause then waited forever for its layer.img). So the data dir is made a shared mount first: the
namespaces get slave copies, and the host's unmounts reach them."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_SCRIPT = 'mount -t tmpfs -o ro,size=4k,mode=555 corral-nonetsysctl /proc/sys/net && exec "$@"'


def netstack_wrap(argv: list[str]) -> list[str]:
    """`argv` run in that private mount namespace (exec'd: same pid, so process scans still match runsc)."""
    return ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", _SCRIPT, "runsc-netns", *argv]


def ensure_shared(data_dir: Path) -> None:
    """Make `data_dir` a shared mount (a bind of itself when it is not a mount point). Idempotent."""
    target = str(data_dir.resolve())
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    mine = [e for e in entries if e[4] == target]
    if mine and any(o.startswith("shared:") for o in mine[-1][6:mine[-1].index("-")]):
        return
    if not mine:
        if any(e[4].startswith(target + "/") for e in entries):
            # A plain bind would hide these (sandboxes started by an older Corral): leave it to the next start.
            log.warning("%s has mounts but is no mount point: not made shared (see corral/net/gvisor_netns.py)",
                        target)
            return
        subprocess.run(["mount", "--bind", target, target], check=True, capture_output=True)
    subprocess.run(["mount", "--make-shared", target], check=True, capture_output=True)
