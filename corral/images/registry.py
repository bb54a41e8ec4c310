"""Pull an image from the OCI registry the operator configured (CORRAL_REGISTRIES) with skopeo, into an archive."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from corral.config import Settings
from corral.errors import ImageNotFoundError
from corral.images.refs import ImageRef


def pull_source(settings: Settings, ref: ImageRef) -> str | None:
    """The `docker://` source for a reference, or None when no configured registry serves its registry."""
    mirror = settings.registries.get(ref.registry)
    if not mirror:
        return None
    src = f"docker://{mirror.rstrip('/')}/{ref.repository}"
    if ref.digest:
        return f"{src}@{ref.digest}"
    return f"{src}:{ref.tag}"


def pull(settings: Settings, ref: ImageRef, dest: Path, log: Callable[[str], None]) -> None:
    """skopeo copy the image into the oci-archive `dest`; ImageNotFoundError with skopeo's reason when it fails."""
    src = pull_source(settings, ref)
    assert src is not None
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise ImageNotFoundError(f"cannot pull {ref.familiar}: skopeo is not installed (apt-get install skopeo)")
    timeout = settings.registry_pull_timeout_s
    cmd = [skopeo, "--command-timeout", f"{int(timeout)}s", "copy", "--retry-times", "0",
           f"--src-tls-verify={'true' if settings.registry_tls_verify else 'false'}",
           "--override-os", "linux", "--override-arch", "amd64", src, f"oci-archive:{dest}:{ref}"]  # fmt: skip
    log(f"pulling {src}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, check=False,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise ImageNotFoundError(f"pulling {src} timed out after {timeout:.0f}s (CORRAL_REGISTRY_PULL_TIMEOUT_S)") from e
    if proc.returncode != 0:
        dest.unlink(missing_ok=True)
        reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImageNotFoundError(f"pulling {src} failed (skopeo exit {proc.returncode}): {reason[0]}")
