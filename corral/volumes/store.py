"""Team-owned volumes: rows in the `volumes` table, data under <data_dir>/volumes/<id>/data, mounts into sandboxes.

Destroying a volume that a running sandbox mounts (or one being mounted by a create in flight) is refused with 409:
deleting data under a live bind mount would pull files from under a running program. Kill the sandboxes first.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import secrets
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from corral.db import Database, SandboxRecord, SandboxVolumeMount, VolumeRecord
from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.runtime import layout
from corral.runtime.base import VolumeBind

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,100}$")
ID_RE = re.compile(r"^vol_[0-9a-f]{16}$")
TRASH_PREFIX = ".trash-"
IMAGE = "data.img"   # the ext4 image of a volume with a size quota, mounted on data/
# The default user of Corral's templates (`user`, uid/gid 1000) owns a new volume's root, so the default user of
# every sandbox can write to it; root inside can too.
DEFAULT_OWNER = (1000, 1000)
# Where a volume may not be mounted: the runtime's own mounts and the agent's files.
RESERVED_MOUNT_PREFIXES = ("/proc", "/sys", "/dev", "/run/corral", "/.corral")
MAX_MOUNTS = 16
RUNNING = "running"


def new_volume_id() -> str:
    return "vol_" + secrets.token_hex(8)


def check_mount_path(path: Any, field: str) -> str:
    """An absolute, normalised mount point inside the sandbox, outside the runtime's reserved paths."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequestError(f"{field}: must be an absolute path")
    if "\0" in path or len(path) > 4096:
        raise InvalidRequestError(f"{field}: must be at most 4096 characters, without NUL bytes")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise InvalidRequestError(f"{field}: must name a directory below / without '.' or '..' components")
    clean = str(PurePosixPath("/", *parts))
    for reserved in RESERVED_MOUNT_PREFIXES:
        if clean == reserved or clean.startswith(reserved + "/"):
            raise InvalidRequestError(f"{field}: {clean} is reserved (under {reserved})")
    return clean


def check_destinations(binds: Sequence[VolumeBind], rootfs: Path) -> None:
    """400 for a mount point that is a file (or crosses one) in the template: the runtime would fail to start with a
    500-ish error otherwise. Missing directories are fine (the runtime creates them); a symlink ends the check (the
    runtime resolves it inside the rootfs). Read-only walk with O_NOFOLLOW: nothing outside the rootfs is looked at."""
    for i, bind in enumerate(binds):
        try:
            fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return   # no rootfs to look at: the runtime reports that itself
        try:
            for name in bind.destination.strip("/").split("/"):
                try:
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    break
                if stat.S_ISLNK(mode):
                    break
                if not stat.S_ISDIR(mode):
                    raise InvalidRequestError(f"volumeMounts[{i}].path: {bind.destination} is (or is below) a file "
                                              "in the template; mount volumes on directories")
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
        finally:
            os.close(fd)


class VolumeStore:
    """Create/list/get/destroy volumes and resolve `volumeMounts`; one per server (pins live in memory)."""

    def __init__(self, db: Database, volumes_dir: Path, owner: tuple[int, int] = DEFAULT_OWNER,
                 size_mb: int = 0) -> None:
        self.db = db
        self.dir = volumes_dir
        self.owner = owner
        self.size_mb = size_mb   # quota of new volumes (an ext4 image mounted on data/); 0: a plain directory
        self._pins: Counter[str] = Counter()   # volume id -> creates in flight that will mount it
        self._destroying: set[str] = set()

    # ---- layout ----

    def data_dir(self, volume_id: str) -> Path:
        if not ID_RE.match(volume_id):
            raise NotFoundError(f"volume {volume_id!r} not found")  # also guards the path join
        return self.dir / volume_id / "data"

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)   # sandboxes write setuid files and device nodes here: no host user may reach them

    # ---- CRUD ----

    async def create(self, team_id: str, name: Any) -> VolumeRecord:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidRequestError("name: must be 1-100 characters of letters, digits, '_' and '-'")
        self._ensure_dir()
        volume_id = new_volume_id()
        vdir = self.dir / volume_id
        with self.db.session() as s:
            if s.scalar(select(VolumeRecord.id).where(VolumeRecord.team_id == team_id, VolumeRecord.name == name)):
                raise ConflictError(f"name: a volume named {name!r} already exists")
        try:
            vdir.mkdir(mode=0o700)
            data = vdir / "data"
            if self.size_mb:
                await layout.mount_new_ext4(vdir / IMAGE, data, self.size_mb)
                (data / "lost+found").rmdir()   # users would see it in every listing
            else:
                data.mkdir(mode=0o755)
            os.chown(data, *self.owner)
            os.chmod(data, 0o755)
            row = VolumeRecord(id=volume_id, team_id=team_id, name=name, token=secrets.token_hex(24))
            with self.db.session() as s:
                s.add(row)
        except BaseException as e:
            await asyncio.shield(self._discard(vdir))
            if isinstance(e, IntegrityError):
                raise ConflictError(f"name: a volume named {name!r} already exists") from None
            raise
        log.info("volume %s (%s) created for team %s", volume_id, name, team_id)
        return row

    def team_volumes(self, team_id: str) -> list[VolumeRecord]:
        with self.db.session() as s:
            return list(s.scalars(select(VolumeRecord).where(VolumeRecord.team_id == team_id)
                                  .order_by(VolumeRecord.created_at)))

    def get(self, volume_id: str, team_id: str) -> VolumeRecord:
        """A volume of this team; another team's volume is reported exactly like a missing one."""
        with self.db.session() as s:
            row = s.get(VolumeRecord, volume_id) if ID_RE.match(volume_id) else None
        if row is None or row.team_id != team_id:
            raise NotFoundError(f"volume {volume_id!r} not found")
        return row

    def for_token(self, volume_id: str, token: str) -> VolumeRecord:
        """The volume a content API bearer token opens; a token of another volume gets 404 like a missing one."""
        with self.db.session() as s:
            row = s.get(VolumeRecord, volume_id) if ID_RE.match(volume_id) else None
        if row is None or not hmac.compare_digest(row.token.encode(), token.encode()):
            raise NotFoundError(f"volume {volume_id!r} not found")
        return row

    def token_known(self, token: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(VolumeRecord.id).where(VolumeRecord.token == token)) is not None

    def users(self, volume_id: str) -> list[str]:
        """Running sandboxes that mount the volume."""
        with self.db.session() as s:
            return list(s.scalars(
                select(SandboxVolumeMount.sandbox_id).join(SandboxRecord, SandboxRecord.id == SandboxVolumeMount.sandbox_id)
                .where(SandboxVolumeMount.volume_id == volume_id, SandboxRecord.state == RUNNING)))

    async def destroy(self, volume_id: str, team_id: str) -> Path:
        """Delete the volume; 409 while a running sandbox mounts it. Crash-safe: the data directory is renamed into
        the trash first (returned: remove it with purge(), off the event loop); the next start removes leftovers."""
        self.get(volume_id, team_id)
        # No await from here to the rename: a create cannot pin the volume in between (one event loop).
        if volume_id in self._destroying:
            raise ConflictError(f"volume {volume_id} is being destroyed")
        if self._pins[volume_id]:
            raise ConflictError(f"volume {volume_id} is being mounted by a sandbox that is starting; try again")
        users = self.users(volume_id)
        if users:
            raise ConflictError(f"volume {volume_id} is mounted by running sandboxes {', '.join(sorted(users))}; "
                                "kill them first")
        trash = self.dir / f"{TRASH_PREFIX}{volume_id}"
        self._destroying.add(volume_id)   # from here on no create may mount it (the unmount below awaits)
        try:
            await self._unmount(self.dir / volume_id)
            if (self.dir / volume_id).exists():
                os.rename(self.dir / volume_id, trash)
        finally:
            self._destroying.discard(volume_id)
        with self.db.session() as s:
            s.execute(delete(SandboxVolumeMount).where(SandboxVolumeMount.volume_id == volume_id))
            s.execute(delete(VolumeRecord).where(VolumeRecord.id == volume_id))
        log.info("volume %s destroyed", volume_id)
        return trash

    @staticmethod
    def purge(trash: Path) -> None:
        shutil.rmtree(trash, ignore_errors=True)   # rmtree never follows symlinks a sandbox left in the data

    async def start(self) -> None:
        """Server start: finish interrupted destroys, drop data no row owns, mount quota'd volumes (after a reboot)."""
        if not self.dir.is_dir():
            return
        with self.db.session() as s:
            known = set(s.scalars(select(VolumeRecord.id)))
        for entry in self.dir.iterdir():
            if entry.name.startswith(TRASH_PREFIX) or (ID_RE.match(entry.name) and entry.name not in known):
                log.info("removing leftover volume data %s", entry)
                await self._discard(entry)
            elif entry.name in known and (entry / IMAGE).exists() and not layout.is_mountpoint(entry / "data"):
                await layout.mount_ext4(entry / IMAGE, entry / "data")

    @staticmethod
    async def _unmount(vdir: Path) -> None:
        if (vdir / IMAGE).exists():
            await layout.unmount_ext4(vdir / IMAGE, vdir / "data")

    async def _discard(self, vdir: Path) -> None:
        await self._unmount(vdir)
        if not layout.is_mountpoint(vdir / "data"):   # never rmtree into a mounted filesystem
            shutil.rmtree(vdir, ignore_errors=True)

    # ---- mounts ----

    def resolve_mounts(self, team_id: str, mounts: Sequence[Any] | None,
                       template_rootfs: Callable[[], Path] | None = None) -> tuple[VolumeBind, ...]:
        """`volumeMounts` of a create body -> bind mounts, or 400 naming the bad entry (unknown volumes, mount points
        that are files in the template's rootfs)."""
        if not mounts:
            return ()
        if len(mounts) > MAX_MOUNTS:
            raise InvalidRequestError(f"volumeMounts: at most {MAX_MOUNTS} mounts")
        binds: list[VolumeBind] = []
        seen: set[str] = set()
        for i, m in enumerate(mounts):
            field = f"volumeMounts[{i}]"
            if not isinstance(m, dict):
                raise InvalidRequestError(f"{field}: must be an object with name and path")
            name = m.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequestError(f"{field}.name: required")
            dest = check_mount_path(m.get("path"), f"{field}.path")
            if dest in seen:
                raise InvalidRequestError(f"{field}.path: {dest} is mounted twice")
            seen.add(dest)
            with self.db.session() as s:
                row = s.scalar(select(VolumeRecord).where(VolumeRecord.team_id == team_id, VolumeRecord.name == name))
            if row is None:
                raise InvalidRequestError(f"{field}.name: volume {name!r} not found")
            if row.id in self._destroying:
                raise ConflictError(f"{field}.name: volume {name!r} is being destroyed")
            source = self.data_dir(row.id)
            if not source.is_dir():
                raise InvalidRequestError(f"{field}.name: the data of volume {name!r} is missing")
            binds.append(VolumeBind(volume_id=row.id, volume_name=row.name, source=source, destination=dest))
        if template_rootfs is not None:
            check_destinations(binds, template_rootfs())
        return tuple(binds)

    @contextmanager
    def pinned(self, binds: Sequence[VolumeBind]) -> Iterator[None]:
        """Hold off destroys of these volumes while a sandbox that mounts them is being created."""
        ids = [b.volume_id for b in binds]
        self._pins.update(ids)
        try:
            yield
        finally:
            self._pins.subtract(ids)
            self._pins += Counter()   # drop zero counts

    def mounts_of(self, sandbox_id: str) -> list[dict[str, str]]:
        with self.db.session() as s:
            rows = s.scalars(select(SandboxVolumeMount).where(SandboxVolumeMount.sandbox_id == sandbox_id)
                             .order_by(SandboxVolumeMount.path))
            return [{"name": r.volume_name, "path": r.path} for r in rows]
