"""The host-run agent driven by the stock e2b SDK: files.* and watch_dir."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from e2b import FileType, NotFoundException, Sandbox, SandboxException
from e2b.sandbox.filesystem.filesystem import WriteEntry
from e2b.sandbox.filesystem.watch_handle import FilesystemEventType

U = "root"


def test_write_read_text(sbx: Sandbox, tmpdir_: Path) -> None:
    p = str(tmpdir_ / "a" / "b" / "hello.txt")  # parents are created
    info = sbx.files.write(p, "héllo\n", user=U)
    assert info.path == p and info.name == "hello.txt"
    assert sbx.files.read(p, user=U) == "héllo\n"
    assert Path(p).read_text() == "héllo\n"


def test_write_read_bytes_and_streams(sbx: Sandbox, tmpdir_: Path) -> None:
    data = bytes(range(256)) * 1000
    p = str(tmpdir_ / "blob.bin")
    sbx.files.write(p, data, user=U)
    assert bytes(sbx.files.read(p, format="bytes", user=U)) == data
    stream = sbx.files.read(p, format="stream", user=U)
    assert b"".join(stream) == data
    # file-like objects go as application/octet-stream
    p2 = str(tmpdir_ / "from_io.bin")
    sbx.files.write(p2, io.BytesIO(data), user=U)
    assert Path(p2).read_bytes() == data
    # gzip upload and download
    p3 = str(tmpdir_ / "gz.bin")
    sbx.files.write(p3, data, user=U, gzip=True)
    assert bytes(sbx.files.read(p3, format="bytes", user=U, gzip=True)) == data


def test_write_files_multiple(sbx: Sandbox, tmpdir_: Path) -> None:
    entries = [WriteEntry(path=str(tmpdir_ / f"d{i}" / f"f{i}.txt"), data=f"n{i}") for i in range(3)]
    infos = sbx.files.write_files(entries, user=U)
    assert [i.path for i in infos] == [e["path"] for e in entries]
    for i in range(3):
        assert (tmpdir_ / f"d{i}" / f"f{i}.txt").read_text() == f"n{i}"


def test_relative_path_is_under_home(sbx: Sandbox) -> None:
    name = f"corral-agent-rel-{time.monotonic_ns()}.txt"
    try:
        info = sbx.files.write(name, "x", user=U)
        assert info.path == f"/root/{name}"
    finally:
        Path("/root", name).unlink(missing_ok=True)


def test_read_missing_and_dir(sbx: Sandbox, tmpdir_: Path) -> None:
    with pytest.raises(NotFoundException):
        sbx.files.read(str(tmpdir_ / "nope"), user=U)
    with pytest.raises(Exception) as ei:
        sbx.files.read(str(tmpdir_), user=U)
    assert "directory" in str(ei.value)


def test_list_depth_exists_info(sbx: Sandbox, tmpdir_: Path) -> None:
    (tmpdir_ / "sub" / "deep").mkdir(parents=True)
    (tmpdir_ / "top.txt").write_text("12345")
    (tmpdir_ / "sub" / "deep" / "x.txt").write_text("x")
    (tmpdir_ / "link").symlink_to(tmpdir_ / "top.txt")
    names1 = {e.name for e in sbx.files.list(str(tmpdir_), user=U)}
    assert names1 == {"sub", "top.txt", "link"}
    paths3 = {e.path for e in sbx.files.list(str(tmpdir_), depth=3, user=U)}
    assert str(tmpdir_ / "sub" / "deep" / "x.txt") in paths3
    assert sbx.files.exists(str(tmpdir_ / "top.txt"), user=U)
    assert not sbx.files.exists(str(tmpdir_ / "missing"), user=U)
    info = sbx.files.get_info(str(tmpdir_ / "top.txt"), user=U)
    assert info.type == FileType.FILE and info.size == 5 and info.owner == "root"
    assert info.permissions.startswith("-rw")
    assert abs(info.modified_time.timestamp() - (tmpdir_ / "top.txt").stat().st_mtime) < 1
    assert sbx.files.get_info(str(tmpdir_ / "sub"), user=U).type == FileType.DIR
    link = sbx.files.get_info(str(tmpdir_ / "link"), user=U)
    assert link.symlink_target == str(tmpdir_ / "top.txt")
    with pytest.raises(NotFoundException):
        sbx.files.list(str(tmpdir_ / "missing"), user=U)


def test_make_dir_rename_remove(sbx: Sandbox, tmpdir_: Path) -> None:
    d = str(tmpdir_ / "m" / "n")
    assert sbx.files.make_dir(d, user=U) is True
    assert sbx.files.make_dir(d, user=U) is False  # already exists
    (tmpdir_ / "m" / "n" / "f").write_text("f")
    moved = sbx.files.rename(str(tmpdir_ / "m"), str(tmpdir_ / "renamed"), user=U)
    assert moved.path == str(tmpdir_ / "renamed") and moved.type == FileType.DIR
    assert (tmpdir_ / "renamed" / "n" / "f").read_text() == "f"
    with pytest.raises(NotFoundException):
        sbx.files.rename(str(tmpdir_ / "m"), str(tmpdir_ / "x"), user=U)
    sbx.files.remove(str(tmpdir_ / "renamed"), user=U)
    assert not (tmpdir_ / "renamed").exists()


def test_watch_dir(sbx: Sandbox, tmpdir_: Path) -> None:
    (tmpdir_ / "sub").mkdir()
    w = sbx.files.watch_dir(str(tmpdir_), user=U, recursive=True)
    try:
        sbx.files.write(str(tmpdir_ / "new.txt"), "1", user=U)
        sbx.files.write(str(tmpdir_ / "sub" / "inner.txt"), "2", user=U)
        (tmpdir_ / "new.txt").rename(tmpdir_ / "moved.txt")
        (tmpdir_ / "moved.txt").unlink()
        events: list = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            events += w.get_new_events()
            kinds = {(e.name, e.type) for e in events}
            if ("moved.txt", FilesystemEventType.REMOVE) in kinds:
                break
            time.sleep(0.05)
        kinds = {(e.name, e.type) for e in events}
        assert ("new.txt", FilesystemEventType.CREATE) in kinds
        assert ("new.txt", FilesystemEventType.WRITE) in kinds
        assert ("sub/inner.txt", FilesystemEventType.CREATE) in kinds
        assert ("new.txt", FilesystemEventType.RENAME) in kinds
        assert ("moved.txt", FilesystemEventType.REMOVE) in kinds
    finally:
        w.stop()
    with pytest.raises(SandboxException, match="stopped"):
        w.get_new_events()


def test_watch_dir_include_entry(sbx: Sandbox, tmpdir_: Path) -> None:
    w = sbx.files.watch_dir(str(tmpdir_), user=U, include_entry=True)
    try:
        sbx.files.write(str(tmpdir_ / "e.txt"), "abc", user=U)
        events: list = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not events:
            events = [e for e in w.get_new_events() if e.entry is not None]
            time.sleep(0.05)
        assert events and events[0].entry.path == str(tmpdir_ / "e.txt")
    finally:
        w.stop()


def test_watch_missing_dir(sbx: Sandbox, tmpdir_: Path) -> None:
    with pytest.raises(NotFoundException):
        sbx.files.watch_dir(str(tmpdir_ / "missing"), user=U)
