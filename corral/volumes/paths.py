"""Resolve a volume-relative path to (parent dir fd, name) without ever leaving the volume's root directory.

Every lookup walks the path one component at a time with openat(O_NOFOLLOW) from a descriptor of the root, so
`..`, absolute paths and symlinks (which sandboxes mounting the volume can create freely) never reach a host file.
A symlink is only ever reported, removed or replaced as itself; it is never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ConflictError, InvalidRequestError, NotFoundError, StorageFullError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_PATH_BYTES = 4096


def split(path: str, field: str = "path") -> list[str]:
    """The components of a volume path; `/`, `` and `.` parts are dropped (the volume is the root), `..` refused."""
    if "\0" in path:
        raise InvalidRequestError(f"{field}: must not contain NUL bytes")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidRequestError(f"{field}: longer than {MAX_PATH_BYTES} bytes")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidRequestError(f"{field}: '..' components are not allowed")
    for p in parts:
        if len(p.encode()) > 255:
            raise InvalidRequestError(f"{field}: component {p[:32]!r}... is longer than 255 bytes")
    return parts


def display(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def path_error(err: OSError, parts: list[str]) -> Exception:
    """The Corral error for an OSError met while resolving or operating on `parts`."""
    where = display(parts)
    if err.errno == errno.ENOENT:
        return NotFoundError(f"path {where} not found")
    if err.errno in (errno.ENOTDIR, errno.ELOOP):
        return InvalidRequestError(f"path: {where} crosses something that is not a directory (symlinks are never "
                                   "followed)")
    if err.errno == errno.EEXIST:
        return ConflictError(f"path {where} already exists")
    if err.errno in (errno.EISDIR, errno.ENOTEMPTY):
        return InvalidRequestError(f"path: {where} is a directory")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"no space left for {where}")
    if err.errno in (errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidRequestError(f"path: {where} is not a valid name ({os.strerror(err.errno)})")
    return err


@dataclass(frozen=True)
class Located:
    """An open parent directory and the final name in it (`name` is None for the volume root itself)."""

    dir_fd: int
    name: str | None
    parts: list[str]

    def lstat(self) -> os.stat_result:
        """The entry itself (a symlink is reported, not followed)."""
        try:
            if self.name is None:
                return os.fstat(self.dir_fd)
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError as e:
            raise path_error(e, self.parts) from e

    def exists(self) -> bool:
        try:
            self.lstat()
        except NotFoundError:
            return False
        return True


def open_root(root: Path) -> int:
    try:
        return os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise NotFoundError("volume data is missing") from None


def _walk(root_fd: int, parts: list[str], create: tuple[int, int] | None) -> int:
    """A new fd of the directory `parts` under root_fd; with `create` = (uid, gid), missing ones are made."""
    fd = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                    os.chown(name, *create, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass  # raced with a sandbox making it: open whatever is there (never following it)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise path_error(e, parts[: i + 1]) from e
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def locate(root: Path, parts: list[str], *, make_parents: tuple[int, int] | None = None) -> Iterator[Located]:
    """Open the parent of `parts` inside `root` (creating missing parents owned by make_parents=(uid, gid) if given)."""
    root_fd = open_root(root)
    try:
        try:
            dir_fd = _walk(root_fd, parts[:-1], make_parents)
        except FileNotFoundError as e:
            raise path_error(e, parts) from e
    finally:
        os.close(root_fd)
    try:
        yield Located(dir_fd=dir_fd, name=parts[-1] if parts else None, parts=parts)
    finally:
        os.close(dir_fd)


@contextmanager
def open_dir(loc: Located) -> Iterator[int]:
    """A readable fd of the directory `loc` names (400 when it is not a real directory)."""
    if loc.name is None:
        fd = os.dup(loc.dir_fd)
    else:
        try:
            fd = os.open(loc.name, _DIR_FLAGS, dir_fd=loc.dir_fd)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise InvalidRequestError(f"path: {display(loc.parts)} is not a directory") from e
            raise path_error(e, loc.parts) from e
    try:
        yield fd
    finally:
        os.close(fd)


def open_regular(loc: Located) -> int:
    """A read-only fd of the regular file `loc` names. FIFOs, devices and symlinks are refused without being opened
    (an O_PATH descriptor is checked first, then re-opened through /proc: the same inode, so no race swaps it)."""
    if loc.name is None:
        raise InvalidRequestError("path: / is a directory")
    try:
        pfd = os.open(loc.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=loc.dir_fd)
    except OSError as e:
        raise path_error(e, loc.parts) from e
    try:
        mode = os.fstat(pfd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidRequestError(f"path: {display(loc.parts)} is a {kind_of(mode)}, not a regular file")
        return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(pfd)


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    return "special file"
