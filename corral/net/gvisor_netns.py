"""Makes runsc's --network=sandbox work on kernels where every netns has /proc/sys/net/core/rmem_default.

runsc (20240729) refuses to copy a netns's interfaces into its netstack when `isRootNS()` is true, and decides that
by checking that /proc/sys/net/core/rmem_default exists; since Linux 6.x that file exists in every netns. The check
runs in the `runsc run`/`runsc restore` process after it joins the sandbox's netns. So that process (and only it,
with the sandbox and gofer it spawns) runs in a private mount namespace with an empty read-only tmpfs over
/proc/sys/net. It must be /proc/sys/net: its dentry is shared by all netns, while the dentries below it belong to
one netns each, so a mount on /proc/sys/net/core (made in the host netns) is not seen after setns (measured).
The host's mounts stay visible (slave propagation), so the overlay rootfs and agent socket paths work unchanged."""

from __future__ import annotations

_SCRIPT = 'mount -t tmpfs -o ro,size=4k,mode=555 corral-nonetsysctl /proc/sys/net && exec "$@"'


def netstack_wrap(argv: list[str]) -> list[str]:
    """`argv` run in that private mount namespace (exec'd: same pid, so process scans still match runsc)."""
    return ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", _SCRIPT, "runsc-netns", *argv]
