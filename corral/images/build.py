"""Build a built-in base into a staging dir: debootstrap a Debian release, or install Python/Node on top of one."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from corral.errors import ImageNotFoundError, RuntimeFailure
from corral.images.builtin import BASE_SUITE, Builtin
from corral.templates import base as base_tpl
from corral.templates.chroot import chroot_run, in_private_mount_ns, mounts_under, run_logged
from corral.templates.mirror import find_mirror, find_optional_mirror

Log = Callable[[str], None]
PROBE_TIMEOUT_S = 10.0


def mirror_serves(uri: str, suite: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a Debian mirror publishes `suite` (its dists/SUITE/InRelease answers), through the machine's proxy."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"), "dists", suite, "InRelease").is_file()
    req = urllib.request.Request(f"{uri}/dists/{suite}/InRelease", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def mirror_for(suite: str) -> tuple[str, str | None]:
    """(archive URI, security URI or None) for a release: the machine's source for it, else its bookworm mirror."""
    try:
        return find_mirror(suite), find_optional_mirror(f"{suite}-security")
    except LookupError:
        pass
    uri = find_mirror(BASE_SUITE)  # the same Debian archive usually serves every release
    if not mirror_serves(uri, suite):
        raise ImageNotFoundError(
            f"debian:{suite} cannot be built: the machine's Debian mirror {uri} does not serve {suite!r} "
            f"(no {uri}/dists/{suite}/InRelease). Import the image instead: `corral image import FILE`"
        )
    security = find_optional_mirror(f"{BASE_SUITE}-security")
    if security and not mirror_serves(security, f"{suite}-security"):
        security = None
    return uri, security


def debootstrap(data_dir: Path, image: Builtin, rootfs: Path, log: Log) -> None:
    """A minimal Debian release (minbase + CA certificates, the host's extra CAs, apt pointing at the mirror)."""
    mirror, security = mirror_for(image.suite)
    cache = data_dir / "cache" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"[1/3] debootstrap --variant=minbase {image.suite} from {mirror}")
    run_logged(in_private_mount_ns(
        ["debootstrap", "--variant=minbase", f"--cache-dir={cache}", "--include=ca-certificates",
         image.suite, str(rootfs), mirror]), log, what="debootstrap")  # fmt: skip
    log(f"      done in {time.monotonic() - t0:.0f}s")
    log("[2/3] apt sources, CA certificates, dpkg excludes")
    base_tpl._configure_before_install(rootfs, mirror, security, suite=image.suite)
    chroot_run(rootfs, "update-ca-certificates --fresh >/dev/null\n", log, what="update-ca-certificates")
    base_tpl._configure_after_install(rootfs)
    log("[3/3] cleaning apt caches, lists, logs and docs")
    base_tpl._clean(rootfs)


def derive(data_dir: Path, image: Builtin, parent_rootfs: Path, rootfs: Path, log: Log) -> None:
    """A copy of the parent's rootfs with `image.packages` installed from the mirror."""
    t0 = time.monotonic()
    log(f"[1/3] copying {parent_rootfs}")
    # cp -a keeps owners, modes, hard links, xattrs; the parent stays untouched (it may be a running overlay lower).
    proc = subprocess.run(["cp", "-a", "--reflink=auto", f"{parent_rootfs}/.", str(rootfs)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeFailure(f"copying {parent_rootfs} failed: {proc.stderr.strip()}")
    deb_cache = data_dir / "cache" / "apt-archives"
    (deb_cache / "partial").mkdir(parents=True, exist_ok=True)
    log(f"[2/3] apt-get install {' '.join(image.packages)}")
    chroot_run(rootfs, "apt-get -q update\n"
               f"apt-get -q install -y --no-install-recommends {' '.join(image.packages)}\n",
               log, apt_cache=deb_cache, what="apt-get install")  # fmt: skip
    log("[3/3] cleaning apt caches, lists, logs and docs")
    base_tpl._clean(rootfs)
    log(f"      done in {time.monotonic() - t0:.0f}s")


def check(image: Builtin, rootfs: Path, log: Log) -> None:
    """Run the image's own check in it (e.g. `python3` is the promised version); a failed check fails the build."""
    chroot_run(rootfs, image.check, log, what=f"{image.name} check")
    leftovers = mounts_under(rootfs)
    if leftovers:
        raise RuntimeFailure(f"mounts leaked under {rootfs}: {leftovers}")


def du_bytes(path: Path) -> int:
    return base_tpl._du_bytes(path)
