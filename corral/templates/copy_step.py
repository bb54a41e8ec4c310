"""COPY: unpack an uploaded context archive on the host (safely) and write the shell that copies it in the sandbox."""

from __future__ import annotations

import glob
import os
import posixpath
import shlex
import tarfile
from pathlib import Path

from corral.errors import InvalidRequestError
from corral.templates.build_sandbox import CONTEXT_MOUNT


def unpack(archive: Path, dest: Path) -> None:
    """Extract a (gzipped) tar with the `tar` filter: no absolute paths, nothing outside dest, no device files."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter=_no_devices)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InvalidRequestError(f"the uploaded files for this COPY are not a readable tar archive: {e}") from e


def _no_devices(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """The stdlib `tar` filter (no absolute paths, nothing outside, no setuid bits), and no device nodes or fifos."""
    if member.isdev():
        raise tarfile.FilterError(f"{member.name}: device files cannot be copied into a template")
    return tarfile.tar_filter(member, path)


def copy_script(ctx: Path, src: str, dest: str, owner: str, mode: str, workdir: str) -> str:
    """The bash (run as root inside the build sandbox) that copies `src` (a path or glob in ctx) to `dest`.

    Docker semantics: a directory's contents go into dest; files go into dest/ when dest ends with "/" or several
    match, else become dest. `owner` (user[:group]) owns what was copied; `mode` (octal) applies to copied files.
    """
    pattern = src.rstrip("/") or "."
    matches = sorted(glob.glob(pattern, root_dir=ctx, include_hidden=True)) if glob.has_magic(pattern) else \
        ([pattern] if os.path.lexists(ctx / pattern) else [])
    # The archive may hold symlinks pointing anywhere: never let a host-side look (glob, isdir, listdir) leave ctx.
    matches = [m for m in matches if _inside(ctx, ctx / m)]
    if not matches:
        raise InvalidRequestError(f"COPY {src}: no uploaded file matches it")
    dest = posixpath.normpath(posixpath.join(workdir or "/", dest)) + ("/" if dest.endswith("/") else "")
    into_dir = dest.endswith("/") or len(matches) > 1
    q = shlex.quote
    lines = ["set -e"]
    targets: list[str] = []
    for m in matches:
        inside = f"{CONTEXT_MOUNT}/{m}"
        path = ctx / m
        if path.is_dir() and not path.is_symlink() and _inside(ctx, path, follow=True):
            lines.append(f"mkdir -p {q(dest)}")
            lines.append(f"cp -a {q(inside)}/. {q(dest)}/")
            targets += [posixpath.join(dest, c) for c in sorted(os.listdir(path))]
        else:
            target = posixpath.join(dest, posixpath.basename(m)) if into_dir else dest.rstrip("/")
            lines.append(f"mkdir -p {q(posixpath.dirname(target) or '/')}")
            lines.append(f"cp -a {q(inside)} {q(target)}")
            targets.append(target)
    if targets and owner and owner != "root":
        lines.append(f"chown -hR {q(owner)} {' '.join(q(t) for t in targets)}")
    elif targets:
        lines.append(f"chown -hR root:root {' '.join(q(t) for t in targets)}")
    if targets and mode:
        lines.append(f"find {' '.join(q(t) for t in targets)} -type f -exec chmod {q(mode)} {{}} +")
    return "\n".join(lines)


def _inside(ctx: Path, path: Path, follow: bool = False) -> bool:
    """True when `path` (its parent dir, or itself when `follow`) resolves to a place under ctx."""
    root = os.path.realpath(ctx)
    real = os.path.realpath(path if follow else path.parent)
    return real == root or real.startswith(root + os.sep)
