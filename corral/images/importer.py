"""Unpack an image archive into `<images>/sha256/<id>/rootfs` via a staging dir, so nothing half-imported is served."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from corral.errors import ImageArchiveError
from corral.images.archive import Archive, ArchiveImage, open_archive, open_layer
from corral.images.build import du_bytes
from corral.images.layers import ApplyStats, apply_layer

IMAGE_JSON = "image.json"
ROOTFS = "rootfs"
STAGING_PREFIX = ".import-"


class ImageMeta(BaseModel):
    """What image.json records next to a rootfs."""

    model_config = ConfigDict(extra="forbid")

    id: str
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    cmd: list[str] | None = None
    source: str  # "oci archive FILE", "docker-save archive FILE", "debootstrap bookworm", ...
    size_bytes: int = 0
    layers: int = 0
    duration_s: float = 0.0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def write_meta(image_dir: Path, meta: ImageMeta) -> None:
    tmp = image_dir / f".{IMAGE_JSON}.tmp"
    tmp.write_text(meta.model_dump_json(indent=2))
    os.replace(tmp, image_dir / IMAGE_JSON)


def read_meta(image_dir: Path) -> ImageMeta | None:
    try:
        return ImageMeta.model_validate(json.loads((image_dir / IMAGE_JSON).read_text()))
    except (OSError, ValueError):
        return None


def remove_stale_staging(images_dir: Path) -> None:
    """Staging dirs whose importing process is gone (killed mid-import) are deleted; live ones are left alone."""
    for d in images_dir.glob(f"{STAGING_PREFIX}*"):
        pid = d.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(d, ignore_errors=True)


def import_archive(images_dir: Path, path: Path, want: str | None, *, max_bytes: int,
                   log: Callable[[str], None]) -> tuple[ImageMeta, list[str]]:
    """Import the archive's image (the one named `want` if it holds several); returns its metadata and names."""
    images_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(images_dir)
    t0 = time.monotonic()
    with open_archive(path, want) as (image, arc):
        if want is None and not image.names:
            raise ImageArchiveError(f"{path} does not name its image; give it one with --name REF")
        target = images_dir / "sha256" / image.image_id
        meta = read_meta(target)
        if meta is not None:
            log(f"image {image.image_id[:12]} is already imported")
            return meta, image.names
        staging = images_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            meta = _unpack(image, arc, staging, path, max_bytes, log)
            meta.duration_s = round(time.monotonic() - t0, 2)
            write_meta(staging, meta)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:  # another import of the same image won the race: keep theirs
                if read_meta(target) is None:
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log(f"imported {image.image_id[:12]}: {meta.layers} layers, {meta.size_bytes / 1e6:.1f} MB in {meta.duration_s:.1f}s")
    return meta, image.names


def _unpack(image: ArchiveImage, arc: Archive, staging: Path, path: Path, max_bytes: int,
            log: Callable[[str], None]) -> ImageMeta:
    rootfs = staging / ROOTFS
    rootfs.mkdir(parents=True, mode=0o755)
    os.chmod(rootfs, 0o755)
    stats = ApplyStats()
    for i, (name, digest) in enumerate(image.layers, 1):
        log(f"[{i}/{len(image.layers)}] layer {name}")
        apply_layer(str(rootfs), open_layer(arc, name, digest), stats, max_bytes=max_bytes)
    if stats.skipped:
        log(f"skipped {len(stats.skipped)} device nodes (the sandbox has its own /dev)")
    c = image.config
    return ImageMeta(id=image.image_id, env=c.env, workdir=c.workdir, user=c.user, cmd=c.cmd,
                     source=f"{image.format} archive {path.name}", size_bytes=du_bytes(rootfs), layers=len(image.layers))
