"""Where templates live (`<templates_dir>/<id>/{rootfs/,template.json}`) and lookup by id or alias."""

from __future__ import annotations

import builtins
import ctypes
import json
import logging
import os
import re
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.config import Settings
from corral.errors import ConflictError, InvalidRequestError, NotFoundError

log = logging.getLogger(__name__)

TEMPLATE_JSON = "template.json"
ROOTFS = "rootfs"
# Ids and aliases become directory names and appear in API paths: keep them boring.
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# How to make the templates Corral knows how to build, for NotFoundError messages.
BUILD_HINTS = {"base": "corral template build base"}


class BuildInfo(BaseModel):
    """How a template's rootfs was made (for `corral template ls` and for debugging a bad image)."""

    model_config = ConfigDict(extra="forbid")

    builder: str  # e.g. "debootstrap"
    suite: str | None = None
    mirror: str | None = None
    packages: list[str] = Field(default_factory=list)
    ca_certificates: list[str] = Field(default_factory=list)  # host CA file names copied in
    duration_s: float | None = None
    size_bytes: int | None = None


class TemplateInfo(BaseModel):
    """One template's metadata, as stored in template.json (rootfs is derived from where the file lives)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    aliases: list[str] = Field(default_factory=list)
    # Not written to template.json: it is always `<dir>/rootfs` (set on load), so moving the data dir cannot break it.
    rootfs: Path = Path()
    envs: dict[str, str] = Field(default_factory=dict)
    workdir: str = "/home/user"
    user: str = "user"
    start_cmd: str | None = None
    # Run (non-login bash) after start_cmd until it exits 0; create returns only then.
    ready_cmd: str | None = None
    runtime: Literal["gvisor", "runc"] | None = None
    # A built template's cpuCount/memoryMB (the build request's): its sandboxes get them. None: the server defaults.
    cpu_count: int | None = Field(default=None, ge=1)
    memory_mb: int | None = Field(default=None, ge=128)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    build: BuildInfo | None = None

    @property
    def alias(self) -> str | None:
        return self.aliases[0] if self.aliases else None

    def summary(self) -> dict[str, str]:
        """One flat row for tables (`corral template list`): no nested envs or package lists."""
        b = self.build
        return {
            "id": self.id,
            "aliases": ",".join(self.aliases),
            "user": self.user,
            "runtime": self.runtime or "default",
            "size": f"{b.size_bytes / 1e6:.0f} MB" if b and b.size_bytes else "?",
            "created": self.created_at.strftime("%Y-%m-%d %H:%M"),
            "rootfs": str(self.rootfs),
        }


def rootfs_in_use(rootfs: Path) -> bool:
    """True when a mounted overlay (a running sandbox) names this rootfs as a lower dir; deleting it would break it."""
    needle = os.path.realpath(rootfs)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    for line in mountinfo.splitlines():
        if " - overlay " not in line:
            continue
        for opt in line.rsplit(" ", 1)[-1].split(","):
            lowers = opt.split("=", 1)[1].split(":") if opt.startswith("lowerdir=") else []
            if any(_same_lower(low, needle) for low in lowers):
                return True
    return False


def _same_lower(low: str, needle: str) -> bool:
    # A data dir may reach the templates through a symlink (the test harness does): compare real paths. When the
    # path no longer resolves (that symlink is gone, the mount lives on), `templates/<id>/rootfs` is the best clue.
    if low == needle or os.path.realpath(low) == needle:
        return True
    return not os.path.exists(low) and Path(low).parts[-3:] == Path(needle).parts[-3:]


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False when the kernel/libc cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        return libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) == 0
    except (AttributeError, OSError):
        return False


class TemplateStore:
    """Templates on disk, cached in memory; the cache reloads when the directory changes (another process built one)."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        # `root`: another directory of templates (the user-built ones, corral/templates/catalog.py).
        self.root = root if root is not None else settings.templates_dir
        self._lock = threading.Lock()
        self._by_id: dict[str, TemplateInfo] = {}
        self._alias_to_id: dict[str, str] = {}
        self._stamp: tuple[int, ...] | None = None

    # ---- lookup -------------------------------------------------------------------------------------------------
    def get(self, id_or_alias: str) -> TemplateInfo:
        """The template with this id or alias, or NotFoundError saying how to build it."""
        with self._lock:
            self._refresh()
            tid = self._lookup(id_or_alias)
            if tid is None:  # maybe another process added it in a way the fingerprint cannot see: rescan once
                self._stamp = None
                self._refresh()
                tid = self._lookup(id_or_alias)
            if tid is not None:
                return self._by_id[tid]
            known = ", ".join(sorted(self._by_id)) or "none"
        hint = BUILD_HINTS.get(id_or_alias)
        how = f"build it with `{hint}`" if hint else "register it first (`corral template build ...`)"
        raise NotFoundError(f"template {id_or_alias!r} not found in {self.root} (known: {known}); {how}")

    def exists(self, id_or_alias: str) -> bool:
        try:
            self.get(id_or_alias)
        except NotFoundError:
            return False
        return True

    def list(self) -> list[TemplateInfo]:
        with self._lock:
            self._refresh()
            return [self._by_id[k] for k in sorted(self._by_id)]

    # ---- changes ------------------------------------------------------------------------------------------------
    def register(self, info: TemplateInfo) -> TemplateInfo:
        """Write (atomically) template.json for a template whose rootfs/ is already in place."""
        self._validate(info)
        tdir = self.root / info.id
        if not (tdir / ROOTFS).is_dir():
            raise InvalidRequestError(f"template {info.id!r}: {tdir / ROOTFS} does not exist; build the rootfs first")
        with self._lock:
            self._refresh()
            self._check_aliases(info)
            write_template_json(tdir, info)
            self._stamp = None
        return self.get(info.id)

    def install(self, staged: Path, info: TemplateInfo) -> TemplateInfo:
        """Move a fully built `staged` dir (with rootfs/) into place as template `info.id`, atomically.

        `staged` must be on the same filesystem as the templates dir (build next to it). A previous version is swapped
        out to `.<id>.old-*` and deleted once no running sandbox can be using it (see gc_old_versions).
        """
        self._validate(info)
        if not (staged / ROOTFS).is_dir():
            raise InvalidRequestError(f"{staged / ROOTFS} does not exist")
        target = self.root / info.id
        with self._lock:
            self._refresh()
            self._check_aliases(info)
            write_template_json(staged, info)
            old = self.root / f".{info.id}.old-{uuid.uuid4().hex[:8]}"
            if not target.exists():
                os.rename(staged, target)
            elif _exchange(staged, target):
                os.rename(staged, old)  # `staged` now holds the previous version
            else:  # no RENAME_EXCHANGE: two renames leave a tiny window with no template
                os.rename(target, old)
                os.rename(staged, target)
            self._stamp = None
        self.gc_old_versions(info.id)
        return self.get(info.id)

    def gc_old_versions(self, template_id: str) -> builtins.list[Path]:
        """Delete replaced versions of a template, unless a sandbox of it runs; returns what is left.

        A running sandbox's overlay names its lower dir by the path it had at mount time (`<id>/rootfs`), which is the
        path of the *current* version after a swap: so while any overlay names that path, every old version is kept.
        """
        olds = sorted(self.root.glob(f".{template_id}.old-*"))
        if not olds:
            return []
        if rootfs_in_use(self.root / template_id / ROOTFS) or any(rootfs_in_use(o / ROOTFS) for o in olds):
            log.info("old versions of template %s kept: a sandbox of it is running", template_id)
            return olds
        for o in olds:
            shutil.rmtree(o, ignore_errors=True)
        return [o for o in olds if o.exists()]

    def delete(self, template_id: str) -> None:
        """Remove a template (its id, not an alias); ConflictError while a sandbox still uses its rootfs."""
        target = self.root / template_id
        with self._lock:
            self._refresh()
            if template_id not in self._by_id:
                raise NotFoundError(f"template {template_id!r} not found in {self.root}")
            if rootfs_in_use(target / ROOTFS):
                raise ConflictError(f"template {template_id!r} is in use by a running sandbox; kill those first")
            trash = self.root / f".{template_id}.deleted-{uuid.uuid4().hex[:8]}"
            os.rename(target, trash)  # gone from lookups at once, even if the rmtree below is slow or fails
            self._stamp = None
        shutil.rmtree(trash, ignore_errors=True)

    # ---- internals ----------------------------------------------------------------------------------------------
    def _lookup(self, id_or_alias: str) -> str | None:
        return id_or_alias if id_or_alias in self._by_id else self._alias_to_id.get(id_or_alias)

    def _validate(self, info: TemplateInfo) -> None:
        for name in [info.id, *info.aliases]:
            if not _ID_RE.match(name):
                raise InvalidRequestError(f"template id/alias {name!r} must match {_ID_RE.pattern}")

    def _check_aliases(self, info: TemplateInfo) -> None:
        for name in info.aliases:
            owner = name if name in self._by_id else self._alias_to_id.get(name)
            if owner is not None and owner != info.id:
                raise ConflictError(f"alias {name!r} already belongs to template {owner!r}")

    def _stamp_now(self) -> tuple[int, ...]:
        """A cheap fingerprint of the on-disk state: the dir's mtime plus each cached template.json's identity."""
        try:
            st = self.root.stat()
        except FileNotFoundError:
            return (0,)
        stamp = [st.st_mtime_ns, st.st_ino]
        for tid in self._by_id:
            try:
                js = (self.root / tid / TEMPLATE_JSON).stat()
                stamp += [js.st_ino, js.st_mtime_ns]
            except FileNotFoundError:
                stamp += [0, 0]
        return tuple(stamp)

    def _refresh(self) -> None:
        """Reload everything when the fingerprint changed (a few stat() calls per lookup otherwise)."""
        if self._stamp is not None and self._stamp == self._stamp_now():
            return
        by_id: dict[str, TemplateInfo] = {}
        aliases: dict[str, str] = {}
        if self.root.is_dir():
            for tdir in sorted(self.root.iterdir()):
                if tdir.name.startswith(".") or not (tdir / TEMPLATE_JSON).is_file():
                    continue  # builds in progress, trash, half-made dirs
                try:
                    info = read_template_json(tdir)
                except (OSError, ValueError) as e:
                    log.warning("skipping template %s: bad %s: %s", tdir.name, TEMPLATE_JSON, e)
                    continue
                by_id[info.id] = info
                for a in info.aliases:
                    aliases.setdefault(a, info.id)
        self._by_id, self._alias_to_id = by_id, aliases
        self._stamp = self._stamp_now()


def read_template_json(tdir: Path) -> TemplateInfo:
    data = json.loads((tdir / TEMPLATE_JSON).read_text())
    info = TemplateInfo.model_validate({**data, "rootfs": tdir / ROOTFS})
    if info.id != tdir.name:
        raise ValueError(f"id {info.id!r} does not match its directory {tdir.name!r}")
    return info


def write_template_json(tdir: Path, info: TemplateInfo) -> None:
    """Write template.json atomically: a reader sees the old file or the new one, never half of one."""
    tmp = tdir / f".{TEMPLATE_JSON}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(info.model_dump_json(indent=2, exclude={"rootfs"}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, tdir / TEMPLATE_JSON)
