"""Layers apply in order with whiteouts, keep modes/owners/links, and never write outside the root."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from corral.errors import ImageArchiveError
from corral.images.layers import ApplyStats, apply_layer, scoped_path
from tests.unit.images.archives import Entry, layer


def _apply(root: Path, entries: list[Entry], compress: bool = False) -> ApplyStats:
    stats = ApplyStats()
    apply_layer(str(root), io.BytesIO(layer(entries, compress)), stats, max_bytes=1 << 30)
    return stats


def test_files_modes_owners_links(tmp_path: Path) -> None:
    _apply(tmp_path, [
        Entry("etc/", "dir", mode=0o755),
        Entry("etc/motd", data=b"hi\n", mode=0o640, uid=1000, gid=1000),
        Entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        Entry("usr/bin/alias", "symlink", link="tool"),
        Entry("usr/bin/hard", "hardlink", link="usr/bin/tool"),
        Entry("run/fifo", "fifo"),
        Entry("dev/null", "chr"),
    ], compress=True)  # fmt: skip
    motd = os.lstat(tmp_path / "etc/motd")
    assert (stat.S_IMODE(motd.st_mode), motd.st_uid, motd.st_gid) == (0o640, 1000, 1000)
    assert stat.S_IMODE(os.lstat(tmp_path / "usr/bin/tool").st_mode) == 0o4755  # setuid survives chown
    assert os.readlink(tmp_path / "usr/bin/alias") == "tool"
    assert os.lstat(tmp_path / "usr/bin/hard").st_ino == os.lstat(tmp_path / "usr/bin/tool").st_ino
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/fifo").st_mode)
    assert not (tmp_path / "dev/null").exists()  # device nodes are skipped


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    _apply(tmp_path, [Entry("a/keep", data=b"1"), Entry("a/gone", data=b"2"), Entry("b/old", data=b"3"),
                      Entry("c/", "dir")])
    stats = _apply(tmp_path, [Entry("a/.wh.gone"), Entry("b/", "dir"), Entry("b/.wh..wh..opq"), Entry("b/new", data=b"4"),
                              Entry(".wh.c")])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["keep"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["new"]
    assert not (tmp_path / "c").exists()
    assert stats.whiteouts == 3
    assert not list(tmp_path.rglob(".wh.*"))


def test_later_layer_replaces_types(tmp_path: Path) -> None:
    _apply(tmp_path, [Entry("x/", "dir"), Entry("x/f", data=b"1"), Entry("y", data=b"file")])
    _apply(tmp_path, [Entry("x", data=b"now a file"), Entry("y", "symlink", link="x")])
    assert (tmp_path / "x").read_bytes() == b"now a file"
    assert os.readlink(tmp_path / "y") == "x"


@pytest.mark.parametrize("entry", [
    Entry("../evil", data=b"x"),
    Entry("/etc/evil", data=b"x"),
    Entry("a/../../evil", data=b"x"),
    Entry("link", "symlink", link="../../../etc"),
    Entry("a/b/link", "symlink", link="../../../outside"),
    Entry("hard", "hardlink", link="../../etc/passwd"),
    Entry("hard2", "hardlink", link="/etc/passwd"),
])  # fmt: skip
def test_traversal_is_refused(tmp_path: Path, entry: Entry) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ImageArchiveError, match="traversal|escapes|not a file"):
        _apply(root, [entry])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_symlink_parents_stay_inside_the_root(tmp_path: Path) -> None:
    """Layer 1 plants `etc -> /etc` (legal inside an image); layer 2 writes etc/passwd: it must land in the root."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _apply(root, [Entry("etc", "symlink", link=str(outside)), Entry("up", "symlink", link="/../../..")])
    _apply(root, [Entry("etc/passwd", data=b"pwned"), Entry("up/x", data=b"y")])
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "passwd").read_bytes() == b"pwned"
    assert (root / "x").read_bytes() == b"y"
    assert scoped_path(str(root), "up/../../etc", follow_last=True).startswith(str(root))


def test_hostile_xattrs_are_dropped(tmp_path: Path) -> None:
    _apply(tmp_path, [Entry("d/", "dir", xattrs={"trusted.overlay.opaque": "y"})])
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "d")


def test_size_limit(tmp_path: Path) -> None:
    with pytest.raises(ImageArchiveError, match="import limit"):
        apply_layer(str(tmp_path), io.BytesIO(layer([Entry("big", data=b"x" * 100)])), ApplyStats(), max_bytes=10)


def test_zstd_and_garbage_layers(tmp_path: Path) -> None:
    with pytest.raises(ImageArchiveError, match="zstd"):
        apply_layer(str(tmp_path), io.BytesIO(b"\x28\xb5\x2f\xfd" + b"0" * 600), ApplyStats(), max_bytes=1 << 20)
    with pytest.raises(ImageArchiveError, match="not a readable tar"):
        apply_layer(str(tmp_path), io.BytesIO(b"garbage" * 100), ApplyStats(), max_bytes=1 << 20)


def test_file_where_a_directory_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ImageArchiveError, match="cannot be applied"):
        _apply(tmp_path, [Entry("a", data=b"file"), Entry("a/b", data=b"under a file")])
