"""The build flow every template shares: one build at a time, reuse unless forced, stage, install atomically."""

from __future__ import annotations

import fcntl
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from corral.config import Settings
from corral.errors import NotFoundError, RuntimeFailure
from corral.templates.chroot import mounts_under
from corral.templates.store import TemplateInfo, TemplateStore

Log = Callable[[str], None]


def rmtree_checked(path: Path) -> None:
    """Delete a build dir, but never through a mount point (that would wipe the host's /dev or the .deb cache)."""
    if mounts_under(path):
        raise RuntimeFailure(f"refusing to delete {path}: mounts below it: {mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


def build_template(settings: Settings, store: TemplateStore, template_id: str,
                   build_into: Callable[[Path], TemplateInfo], *, force: bool, log: Log) -> TemplateInfo:
    """Build `template_id` with `build_into(staging_dir)` under its lock, or return the finished build unless `force`.

    A failed build removes its staging dir and leaves the installed version untouched.
    """
    settings.templates_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.templates_dir / f".{template_id}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build of {template_id!r} is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not force:
            try:
                info = store.get(template_id)
                if info.rootfs.is_dir():
                    log(f"template {template_id!r} already built at {info.rootfs} (rebuild with --force)")
                    return info
            except NotFoundError:
                pass
        _remove_stale_builds(store, template_id, log)
        staging = settings.templates_dir / f".{template_id}.build-{uuid.uuid4().hex[:8]}"
        try:
            info = build_into(staging)
        except BaseException:
            if staging.exists():
                rmtree_checked(staging)
            raise
        # Swaps it in atomically; the previous version is kept as .<id>.old-* while a sandbox may still use it.
        installed = store.install(staging, info)
        log(f"template {template_id!r} ready at {installed.rootfs}")
        return installed


def _remove_stale_builds(store: TemplateStore, template_id: str, log: Log) -> None:
    """Staging dirs of killed builds (never mounted; we hold the build lock), and unused old versions."""
    for old in store.root.glob(f".{template_id}.build-*"):
        log(f"removing stale build dir {old}")
        rmtree_checked(old)
    for kept in store.gc_old_versions(template_id):
        log(f"keeping old version {kept}: a sandbox may still use it")
