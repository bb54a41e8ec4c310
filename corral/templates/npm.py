"""npm for the base image from the npm registry (via the host's own npm client), instead of Debian's 470 packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

# npm 10 is the newest line that supports bookworm's Node.js 18 (engines: ^18.17.0 || >=20.5.0).
NPM_SPEC = "npm@10"
_TARBALL_RE = re.compile(r"^npm-(10\.\d+\.\d+)\.tgz$")


def fetch_npm_tarball(cache_dir: Path, log: Callable[[str], None]) -> Path | None:
    """The npm 10 tarball, from the cache or `npm pack` on the host; None when neither works (use Debian's npm)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = _newest(cache_dir)
    if cached is not None:
        return cached
    npm = shutil.which("npm")
    if npm is None:
        log("  no npm on the host: falling back to Debian's npm package")
        return None
    # The host's npm with the host's own config (registry, CA): the build names no registry itself.
    r = subprocess.run(
        [npm, "pack", NPM_SPEC, "--pack-destination", str(cache_dir), "--silent"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cache_dir,
        env={**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"},
    )
    if r.returncode != 0:
        log(f"  `npm pack {NPM_SPEC}` failed ({r.stderr.strip()[-300:]}): falling back to Debian's npm package")
        return None
    return _newest(cache_dir)


def install_npm(rootfs: Path, tarball: Path) -> str:
    """Unpack the tarball as /usr/lib/node_modules/npm with npm/npx in /usr/bin; returns the version installed."""
    dest = rootfs / "usr/lib/node_modules/npm"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        for m in tf.getmembers():
            if not m.name.startswith("package/"):
                continue
            m.name = m.name.removeprefix("package/")
            # The data filter refuses absolute paths, `..`, device files and setuid bits from the archive.
            tf.extract(m, dest, filter="data")
    for tool, cli in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
        link = rootfs / "usr/bin" / tool
        link.unlink(missing_ok=True)
        link.symlink_to(f"../lib/node_modules/npm/bin/{cli}")
    version = _TARBALL_RE.match(tarball.name)
    return version.group(1) if version else "unknown"


def _newest(cache_dir: Path) -> Path | None:
    found = [
        (tuple(int(x) for x in m.group(1).split(".")), p)
        for p in cache_dir.iterdir()
        if (m := _TARBALL_RE.match(p.name))
    ]
    return max(found)[1] if found else None
