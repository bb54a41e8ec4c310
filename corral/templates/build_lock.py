"""One build of a template at a time, and reuse of a finished build unless a rebuild is forced."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from corral.config import Settings
from corral.errors import NotFoundError
from corral.templates.store import TemplateInfo, TemplateStore


@contextmanager
def exclusive_build(settings: Settings, store: TemplateStore, template_id: str, *, force: bool,
                    log: Callable[[str], None]) -> Iterator[TemplateInfo | None]:
    """Hold the template's build lock; yield its finished build (unless `force`) or None when it must be built."""
    lock_path = settings.templates_dir / f".{template_id}.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build of {template_id!r} is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        cached = None
        if not force:
            try:
                info = store.get(template_id)
                if info.rootfs.is_dir():
                    log(f"template {template_id!r} already built at {info.rootfs} (rebuild with --force)")
                    cached = info
            except NotFoundError:
                pass
        yield cached
