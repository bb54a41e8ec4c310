"""Run build steps in a chroot whose /proc, /dev etc. live in a private mount namespace, so none can leak."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from corral.errors import RuntimeFailure

Log = Callable[[str], None]

# The environment of every build step: nothing from the caller's shell (locale, proxies, PYTHON*) leaks into the image.
BUILD_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}

# Mounted inside `unshare --mount --propagation private`: the kernel drops every one of these mounts when that
# namespace's last process exits, even if we are SIGKILLed mid-build, and the host never sees them.
# /dev is a fresh tmpfs with the host's few harmless nodes bound in, so postinst scripts cannot touch host devices.
_SETUP = r"""
set -e
R=$1; CACHE=$2; shift 2
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
for n in null zero full random urandom tty; do : > "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
mkdir -p "$R/dev/pts" "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
if [ -n "$CACHE" ]; then mount --bind "$CACHE" "$R/var/cache/apt/archives"; fi
exec chroot "$R" "$@"
"""


def run_logged(cmd: Sequence[str], log: Log, *, env: Mapping[str, str] | None = None, what: str = "") -> None:
    """Run cmd, streaming each output line to `log`; RuntimeFailure with the last lines when it fails."""
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env if env is not None else BUILD_ENV),
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(f"  {line}")
    except BaseException:  # Ctrl-C, or the log callback failed: do not leave the step running behind us
        proc.kill()
        proc.wait()
        raise
    rc = proc.wait()
    if rc != 0:
        last = "\n".join(tail)
        raise RuntimeFailure(f"{what or shlex.join(cmd[:3])} failed (exit {rc}):\n{last}")


def in_private_mount_ns(cmd: Sequence[str]) -> list[str]:
    """Wrap cmd so every mount it makes dies with it (debootstrap mounts /proc and /sys in the target itself)."""
    return ["unshare", "--mount", "--propagation", "private", "--", *cmd]


def chroot_run(
    rootfs: Path, script: str, log: Log, *, apt_cache: Path | None = None, what: str = "chroot step"
) -> None:
    """Run a shell script in the rootfs as root, with /proc, /sys, /dev (and the .deb cache) mounted only for it."""
    cmd = ["/bin/sh", "-c", _SETUP, "corral-chroot", str(rootfs), str(apt_cache or ""), "/bin/sh", "-ec", script]
    try:
        run_logged(in_private_mount_ns(cmd), log, what=what)
    finally:
        # Belt and braces: the namespace guarantees this is empty; if it is not, a leftover mount is a defect.
        leftovers = mounts_under(rootfs)
        for m in reversed(leftovers):
            subprocess.run(["umount", "-l", m], check=False)
        if leftovers:
            raise RuntimeFailure(f"mounts leaked under {rootfs} (now lazily unmounted): {leftovers}")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace, in mount order."""
    prefix = os.path.realpath(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces etc. octal-escaped.
        mp = line.split(" ")[4].encode().decode("unicode_escape")
        if mp == prefix or mp.startswith(prefix + "/"):
            found.append(mp)
    return found
