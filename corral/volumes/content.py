"""The file operations of the volume content API (openapi-volumecontent.yml) on one volume's data directory.

Blocking calls (the routes run them in a worker thread). Paths are volume-relative and resolved by
corral.volumes.paths, which never follows a symlink; new entries take the owner of their parent directory unless
the request names one, so files uploaded here stay writable by the sandbox user who owns the volume.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.volumes import paths
from corral.volumes.paths import Located, display, kind_of, locate, open_dir, open_regular, path_error

MAX_LIST_DEPTH = 64
MAX_LIST_ENTRIES = 100_000
UPLOAD_PREFIX = ".corral-upload-"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def entry(parts: list[str], st: os.stat_result, target: str | None = None) -> dict[str, Any]:
    """A VolumeEntryStat."""
    kind = kind_of(st.st_mode)
    out: dict[str, Any] = {
        "name": parts[-1] if parts else "/", "type": "unknown" if kind == "special file" else kind,
        "path": display(parts), "size": st.st_size, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
        "gid": st.st_gid, "atime": _iso(st.st_atime), "mtime": _iso(st.st_mtime), "ctime": _iso(st.st_ctime)}
    if target is not None:
        out["target"] = target
    return out


def _entry_at(dir_fd: int, name: str | None, parts: list[str]) -> dict[str, Any]:
    loc = Located(dir_fd=dir_fd, name=name, parts=parts)
    st = loc.lstat()
    target = os.readlink(name, dir_fd=dir_fd) if name is not None and stat.S_ISLNK(st.st_mode) else None
    return entry(parts, st, target)


def _check_mode(mode: int | None) -> None:
    if mode is not None and not 0 <= mode <= 0o7777:
        raise InvalidRequestError(f"mode: must be between 0 and 0o7777, got {mode}")


def _check_id(value: int | None, name: str) -> None:
    if value is not None and not 0 <= value < 2**32 - 1:
        raise InvalidRequestError(f"{name}: must be a uint32, got {value}")


def _checked(path: str, uid: int | None, gid: int | None, mode: int | None) -> list[str]:
    """The path's components once every request argument is known to be valid."""
    _check_mode(mode)
    _check_id(uid, "uid")
    _check_id(gid, "gid")
    return paths.split(path)


def _root_owner(root: Path) -> tuple[int, int]:
    root_fd = paths.open_root(root)
    try:
        return _owner(root_fd, None, None)
    finally:
        os.close(root_fd)


def _owner(dir_fd: int, uid: int | None, gid: int | None) -> tuple[int, int]:
    st = os.fstat(dir_fd)
    return (st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)


def stat_path(root: Path, path: str) -> dict[str, Any]:
    parts = paths.split(path)
    with locate(root, parts) as loc:
        return _entry_at(loc.dir_fd, loc.name, parts)


def list_dir(root: Path, path: str, depth: int = 1) -> list[dict[str, Any]]:
    """Entries of a directory, `depth` levels deep (symlinked directories are listed, never entered)."""
    if not 1 <= depth <= MAX_LIST_DEPTH:
        raise InvalidRequestError(f"depth: must be between 1 and {MAX_LIST_DEPTH}, got {depth}")
    parts = paths.split(path)
    out: list[dict[str, Any]] = []
    with locate(root, parts) as loc, open_dir(loc) as fd:
        _list_into(fd, parts, depth, out)
    return out


def _list_into(fd: int, parts: list[str], depth: int, out: list[dict[str, Any]]) -> None:
    for name in sorted(os.listdir(fd)):
        if len(out) >= MAX_LIST_ENTRIES:
            raise InvalidRequestError(f"path: more than {MAX_LIST_ENTRIES} entries; list with a smaller depth")
        child = [*parts, name]
        try:
            item = _entry_at(fd, name, child)
        except NotFoundError:
            continue  # removed by a sandbox while we listed
        out.append(item)
        if depth > 1 and item["type"] == "directory":
            try:
                with open_dir(Located(dir_fd=fd, name=name, parts=child)) as sub:
                    _list_into(sub, child, depth - 1, out)
            except (NotFoundError, InvalidRequestError):
                continue  # replaced by a sandbox meanwhile: never followed


def make_dir(root: Path, path: str, *, uid: int | None = None, gid: int | None = None, mode: int | None = None,
             force: bool = False) -> dict[str, Any]:
    """mkdir (with `force`, the missing parents too, and an existing directory is fine)."""
    parts = _checked(path, uid, gid, mode)
    if not parts:
        if force:
            return stat_path(root, "/")
        raise ConflictError("path / already exists")
    with locate(root, parts, make_parents=_root_owner(root) if force else None) as loc:
        assert loc.name is not None
        owner = _owner(loc.dir_fd, uid, gid)
        try:
            os.mkdir(loc.name, 0o755, dir_fd=loc.dir_fd)
        except FileExistsError:
            if force and stat.S_ISDIR(loc.lstat().st_mode):
                return _entry_at(loc.dir_fd, loc.name, parts)
            raise ConflictError(f"path {display(parts)} already exists") from None
        except OSError as e:
            raise path_error(e, parts) from e
        with open_dir(loc) as fd:
            os.fchown(fd, *owner)
            os.fchmod(fd, 0o755 if mode is None else mode)
        return _entry_at(loc.dir_fd, loc.name, parts)


def remove(root: Path, path: str) -> None:
    """Delete a file, symlink (the link itself) or directory tree. The volume root cannot be removed."""
    parts = paths.split(path)
    if not parts:
        raise InvalidRequestError("path: the volume root cannot be removed (destroy the volume instead)")
    with locate(root, parts) as loc:
        assert loc.name is not None
        st = loc.lstat()
        try:
            if stat.S_ISDIR(st.st_mode):
                # rmtree with dir_fd works on descriptors and never follows symlinks inside the tree.
                shutil.rmtree(loc.name, dir_fd=loc.dir_fd)
            else:
                os.unlink(loc.name, dir_fd=loc.dir_fd)
        except OSError as e:
            raise path_error(e, parts) from e


def update_metadata(root: Path, path: str, *, uid: int | None = None, gid: int | None = None,
                    mode: int | None = None) -> dict[str, Any]:
    """chown/chmod. A symlink's owner can change (lchown); its mode cannot (Linux has none)."""
    parts = _checked(path, uid, gid, mode)
    with locate(root, parts) as loc:
        st = loc.lstat()
        if stat.S_ISLNK(st.st_mode):
            if mode is not None:
                raise InvalidRequestError(f"mode: {display(parts)} is a symlink, which has no mode of its own")
            if uid is not None or gid is not None:
                os.chown(loc.name or "", -1 if uid is None else uid, -1 if gid is None else gid,
                         dir_fd=loc.dir_fd, follow_symlinks=False)
            return _entry_at(loc.dir_fd, loc.name, parts)
        # An O_PATH descriptor of the entry itself: fchown/fchmod through /proc act on that inode, never a path.
        pfd = (os.dup(loc.dir_fd) if loc.name is None else
               os.open(loc.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=loc.dir_fd))
        try:
            proc = f"/proc/self/fd/{pfd}"
            if uid is not None or gid is not None:
                os.chown(proc, -1 if uid is None else uid, -1 if gid is None else gid)
            if mode is not None:
                os.chmod(proc, mode)
        finally:
            os.close(pfd)
        return _entry_at(loc.dir_fd, loc.name, parts)


def open_for_read(root: Path, path: str) -> int:
    """A read-only fd of a regular file (the caller closes it)."""
    parts = paths.split(path)
    with locate(root, parts) as loc:
        return open_regular(loc)


@dataclass
class Upload:
    """A file being written: data goes to a hidden temporary file in the target's directory, which replaces the
    target atomically on commit (a rename replaces a symlink itself, so a link planted there is never written
    through), or disappears on abort."""

    dir_fd: int
    name: str
    parts: list[str]
    owner: tuple[int, int]
    mode: int
    fd: int = -1
    tmp: str = field(default_factory=lambda: UPLOAD_PREFIX + secrets.token_hex(8))

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            raise path_error(e, self.parts) from e   # the route aborts the upload

    def commit(self) -> dict[str, Any]:
        try:
            os.fchown(self.fd, *self.owner)
            os.fchmod(self.fd, self.mode)
            os.close(self.fd)
            self.fd = -1
            os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as e:
            self.abort()
            raise path_error(e, self.parts) from e
        try:
            return _entry_at(self.dir_fd, self.name, self.parts)
        finally:
            os.close(self.dir_fd)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp, dir_fd=self.dir_fd)
        except OSError:
            pass
        os.close(self.dir_fd)


def begin_write(root: Path, path: str, *, uid: int | None = None, gid: int | None = None, mode: int | None = None,
                force: bool = False) -> Upload:
    """Start writing `path` (replaced if it exists; with `force`, missing parent directories are created)."""
    parts = _checked(path, uid, gid, mode)
    if not parts:
        raise InvalidRequestError("path: / is a directory")
    with locate(root, parts, make_parents=_root_owner(root) if force else None) as loc:
        assert loc.name is not None
        keep_mode = 0o644
        owner = _owner(loc.dir_fd, uid, gid)
        try:
            st = loc.lstat()
        except NotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise InvalidRequestError(f"path: {display(parts)} is a directory")
            if stat.S_ISREG(st.st_mode):
                # Overwriting keeps the file's owner and mode unless the request says otherwise.
                keep_mode = stat.S_IMODE(st.st_mode)
                owner = (st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
        dir_fd = os.dup(loc.dir_fd)
    upload = Upload(dir_fd=dir_fd, name=parts[-1], parts=parts, owner=owner,
                    mode=keep_mode if mode is None else mode)
    try:
        upload.fd = os.open(upload.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                            dir_fd=dir_fd)
    except OSError as e:
        upload.abort()
        raise path_error(e, parts) from e
    return upload
