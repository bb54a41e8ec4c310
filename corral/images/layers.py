"""Apply image layer tars onto a rootfs safely: whiteouts, modes, owners, links, and no path ever leaving the root."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from corral.errors import ImageArchiveError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1 << 20
# Only these extended attributes are copied: trusted.* (overlayfs' own opaque/redirect markers) or security.selinux
# from a hostile archive would change how the kernel reads the tree.
_ALLOWED_XATTRS = ("security.capability",)


@dataclass
class ApplyStats:
    """What applying layers did, for the import log and the size/abuse limits."""

    files: int = 0
    bytes: int = 0
    whiteouts: int = 0
    skipped: list[str] = field(default_factory=list)  # device nodes and the like, which a rootfs never needs


def member_path(name: str) -> str:
    """A tar member's path relative to the root; ImageArchiveError for absolute paths or `..` components."""
    if "\x00" in name:
        raise ImageArchiveError(f"tar member {name!r}: NUL in path")
    if name.startswith("/"):
        raise ImageArchiveError(f"tar member {name!r}: absolute path (path traversal); refusing the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageArchiveError(f"tar member {name!r}: '..' component (path traversal); refusing the archive")
    return "/".join(parts)


def scoped_path(root: str, rel: str, *, follow_last: bool = False) -> str:
    """`root/rel` with every symlink on the way resolved as if root were `/` (like chroot), so it never leaves root."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, p)
        if (parts or follow_last) and os.path.islink(candidate):
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise ImageArchiveError(f"{rel!r}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [q for q in target.split("/") if q not in ("", ".")] + parts
            continue
        done.append(p)
    return os.path.join(root, *done)


def _check_symlink(rel: str, target: str) -> None:
    """A relative symlink target must not climb above the root (absolute targets are read inside the sandbox)."""
    if target.startswith("/"):
        return
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if joined == ".." or joined.startswith("../"):
        raise ImageArchiveError(f"tar member {rel!r}: symlink to {target!r} escapes the image root; refusing the archive")


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # never follows symlinks inside (fd-based rmtree)
    else:
        os.unlink(path)


def apply_layer(root: str, layer: IO[bytes], stats: ApplyStats, *, max_bytes: int) -> None:
    """Apply one layer (plain, gzip, bzip2 or xz tar) onto `root`: its whiteouts first, then its entries in order."""
    head = layer.read(4)
    layer.seek(0)
    if head == b"\x28\xb5\x2f\xfd":
        raise ImageArchiveError("zstd-compressed layers are not supported; re-export the image with gzip layers")
    try:
        with tarfile.open(fileobj=layer, mode="r:*") as tar:
            members = tar.getmembers()
            # Whiteouts hide lower layers only, so they go before this layer's own files.
            _each(members, lambda m: _apply_whiteout(root, m, stats))
            _each(members, lambda m: _apply_member(root, tar, m, stats, max_bytes))
    except tarfile.TarError as e:
        raise ImageArchiveError(f"layer is not a readable tar archive: {e}") from e


def _each(members: list[tarfile.TarInfo], step: Callable[[tarfile.TarInfo], None]) -> None:
    for m in members:
        try:
            step(m)
        except OSError as e:  # e.g. a path whose parent an earlier entry made a file: a broken image
            raise ImageArchiveError(f"tar member {m.name!r} cannot be applied: {e.strerror or e}") from e


def _apply_whiteout(root: str, m: tarfile.TarInfo, stats: ApplyStats) -> None:
    rel = member_path(m.name)
    parent, base = posixpath.split(rel)
    if not base.startswith(WHITEOUT):
        return
    stats.whiteouts += 1
    pdir = scoped_path(root, parent, follow_last=True)
    if not os.path.isdir(pdir) or os.path.islink(pdir):
        return
    if base == OPAQUE:
        for child in os.listdir(pdir):
            _remove(os.path.join(pdir, child))
        return
    victim = base[len(WHITEOUT):]
    if victim in ("", ".", "..") or "/" in victim:
        raise ImageArchiveError(f"tar member {m.name!r}: malformed whiteout")
    _remove(os.path.join(pdir, victim))


def _apply_member(root: str, tar: tarfile.TarFile, m: tarfile.TarInfo, stats: ApplyStats, max_bytes: int) -> None:
    rel = member_path(m.name)
    if not rel or posixpath.basename(rel).startswith(WHITEOUT):
        return
    parent, base = posixpath.split(rel)
    pdir = scoped_path(root, parent, follow_last=True)
    os.makedirs(pdir, exist_ok=True)
    dest = os.path.join(pdir, base)
    stats.files += 1
    if m.isdir():
        if not (os.path.isdir(dest) and not os.path.islink(dest)):
            _remove(dest)
            os.mkdir(dest, 0o700)
    elif m.isreg():
        stats.bytes += m.size
        if stats.bytes > max_bytes:
            raise ImageArchiveError(f"image is larger than the import limit of {max_bytes} bytes (CORRAL_IMAGE_MAX_BYTES)")
        _remove(dest)
        src = tar.extractfile(m)
        assert src is not None
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    elif m.issym():
        _check_symlink(rel, m.linkname)
        _remove(dest)
        os.symlink(m.linkname, dest)
    elif m.islnk():
        target_rel = member_path(m.linkname)
        target = scoped_path(root, target_rel)
        if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)):
            raise ImageArchiveError(f"tar member {rel!r}: hard link to {m.linkname!r}, which is not a file in the image")
        if os.path.realpath(target) == os.path.realpath(dest):
            return
        _remove(dest)
        os.link(target, dest, follow_symlinks=False)
        return  # a hard link shares its target's inode: owner and mode are the target's
    elif m.isfifo():
        _remove(dest)
        os.mkfifo(dest, 0o600)
    else:  # character/block devices: the sandbox gets its own /dev
        stats.skipped.append(rel)
        stats.files -= 1
        return
    _set_metadata(dest, m)


def _set_metadata(path: str, m: tarfile.TarInfo) -> None:
    os.lchown(path, m.uid, m.gid)
    if not m.issym():
        os.chmod(path, stat.S_IMODE(m.mode))  # after chown, which clears setuid/setgid
    for key, value in (m.pax_headers or {}).items():
        name = key.removeprefix("SCHILY.xattr.")
        if name != key and name in _ALLOWED_XATTRS and not m.issym():
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    os.utime(path, ns=(int(m.mtime * 1e9), int(m.mtime * 1e9)), follow_symlinks=False)
