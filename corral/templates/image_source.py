"""Stand-in for corral.images until it lands: base image names Corral can serve today, mapped to the `base` template.

Same interface as corral.images (`ImageStore(data_dir).resolve(ref) -> ImageInfo`, ImageNotFoundError); the lead
switches `image_store()` to corral.images.store.ImageStore at merge time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.config import Settings
from corral.errors import NotFoundError
from corral.templates.store import TemplateStore

# Every name here is served by the debootstrapped `base` template (Debian bookworm with python3, pip and node).
BASE_ALIASES = frozenset({"debian:bookworm", "debian:12", "debian:stable", "debian", "e2bdev/base",
                          "e2bdev/base:latest", "e2bdev/code-interpreter", "e2bdev/code-interpreter:latest"})


class ImageNotFoundError(NotFoundError):
    """No image of that name on this machine (the message says how to import or configure one)."""


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    rootfs: Path                      # read-only directory tree
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    cmd: list[str] | None = None


class ImageStore:
    """Resolves the few names above to the base template's rootfs."""

    def __init__(self, settings: Settings) -> None:
        self.templates = TemplateStore(settings)

    def resolve(self, ref: str) -> ImageInfo:
        if ref.strip().lower() not in BASE_ALIASES:
            raise ImageNotFoundError(
                f"image {ref!r} is not available on this server (no registry is reachable); known images: "
                f"{', '.join(sorted(BASE_ALIASES))}. Import it with `corral image import FILE` (an OCI or "
                f"docker-save archive) and name it with `corral image tag SOURCE {ref}`, or start from an existing "
                f"template with from_template()")
        base = self.templates.get("base")
        return ImageInfo(ref=ref, rootfs=base.rootfs, env=dict(base.envs), workdir=base.workdir, user=base.user)


def image_store(settings: Settings) -> ImageStore:
    """The one place the builder gets its images from (switch to corral.images at merge)."""
    return ImageStore(settings)
