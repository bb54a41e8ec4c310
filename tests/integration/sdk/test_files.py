"""The filesystem API through the stock SDK: read, write, list, stat, rename, remove, make_dir, watch."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
from e2b import FileType, Sandbox
from e2b.exceptions import NotFoundException, SandboxException
from e2b.sandbox.filesystem.filesystem import WriteEntry

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create, wait_until


@pytest.fixture
def sbx(e2b: CorralServer, tier: str) -> Iterator[Sandbox]:
    sandbox = create(tier)
    yield sandbox
    sandbox.kill()


def test_write_read_text_bytes_stream(sbx: Sandbox) -> None:
    info = sbx.files.write("notes/hello.txt", "hello world")
    assert info.path == "/home/user/notes/hello.txt"
    assert sbx.files.read("/home/user/notes/hello.txt") == "hello world"
    payload = os.urandom(1024 * 1024 + 17)
    sbx.files.write("/tmp/blob.bin", payload)
    assert bytes(sbx.files.read("/tmp/blob.bin", format="bytes")) == payload
    streamed = b"".join(sbx.files.read("/tmp/blob.bin", format="stream"))
    assert streamed == payload
    sbx.files.write("/tmp/from-io.txt", io.BytesIO(b"io data"))
    assert sbx.commands.run("cat /tmp/from-io.txt").stdout == "io data"
    # Files written for the default user belong to that user.
    assert sbx.commands.run("stat -c %U /home/user/notes/hello.txt").stdout.strip() == "user"


def test_write_files_many(sbx: Sandbox) -> None:
    entries = [WriteEntry(path=f"/tmp/many/{i}.txt", data=f"file {i}") for i in range(5)]
    written = sbx.files.write_files(entries)
    assert sorted(w.path for w in written) == sorted(e["path"] for e in entries)
    assert sbx.commands.run("cat /tmp/many/3.txt").stdout == "file 3"


def test_read_missing_raises_not_found(sbx: Sandbox) -> None:
    with pytest.raises(NotFoundException):
        sbx.files.read("/tmp/does-not-exist")


def test_list_stat_exists_rename_remove_make_dir(sbx: Sandbox) -> None:
    assert sbx.files.make_dir("/tmp/tree/a/b") is True
    assert sbx.files.make_dir("/tmp/tree/a/b") is False
    sbx.files.write("/tmp/tree/a/b/leaf.txt", "leaf")
    sbx.files.write("/tmp/tree/top.txt", "top")
    shallow = sbx.files.list("/tmp/tree")
    assert sorted(e.name for e in shallow) == ["a", "top.txt"]
    deep = sbx.files.list("/tmp/tree", depth=3)
    assert "/tmp/tree/a/b/leaf.txt" in {e.path for e in deep}
    info = sbx.files.get_info("/tmp/tree/top.txt")
    assert info.type == FileType.FILE and info.size == 3
    assert sbx.files.get_info("/tmp/tree/a").type == FileType.DIR
    assert sbx.files.exists("/tmp/tree/top.txt")
    moved = sbx.files.rename("/tmp/tree/top.txt", "/tmp/tree/moved.txt")
    assert moved.path == "/tmp/tree/moved.txt"
    assert not sbx.files.exists("/tmp/tree/top.txt")
    sbx.files.remove("/tmp/tree/a")
    assert not sbx.files.exists("/tmp/tree/a/b/leaf.txt")
    with pytest.raises(NotFoundException):
        sbx.files.get_info("/tmp/tree/a")


def test_permission_is_the_users(sbx: Sandbox) -> None:
    with pytest.raises(SandboxException, match="(?i)permission"):
        sbx.files.write("/root/secret.txt", "x")
    sbx.files.write("/root/secret.txt", "x", user="root")
    assert sbx.files.read("/root/secret.txt", user="root") == "x"


def test_user_cannot_reach_roots_files(sbx: Sandbox) -> None:
    # The files API acts with the user's permissions: refused (not "missing") where the user is refused.
    for attempt in (
        lambda: sbx.files.read("/etc/shadow"),
        lambda: sbx.files.list("/root"),
        lambda: sbx.files.make_dir("/root/made"),
        lambda: sbx.files.remove("/etc/passwd"),
    ):
        with pytest.raises(SandboxException) as info:
            attempt()
        assert not isinstance(info.value, NotFoundException)
        assert "permission denied" in str(info.value).lower()
    assert sbx.files.exists("/etc/passwd")
    assert "root:" in sbx.files.read("/etc/shadow", user="root")
    assert sbx.files.make_dir("/root/made", user="root") is True
    assert "made" in {e.name for e in sbx.files.list("/root", user="root")}


def test_watch_dir(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/watched")
    handle = sbx.files.watch_dir("/tmp/watched")
    try:
        sbx.files.write("/tmp/watched/new.txt", "data")
        events: list = []

        def saw_create() -> bool:
            events.extend(handle.get_new_events())
            return any(e.name == "new.txt" for e in events)

        assert wait_until(saw_create, timeout=10)
    finally:
        handle.stop()


def test_watch_dir_recursive(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/rw/sub")
    handle = sbx.files.watch_dir("/tmp/rw", recursive=True)
    try:
        sbx.commands.run("echo x > /tmp/rw/sub/deep.txt")
        events: list = []

        def saw() -> bool:
            events.extend(handle.get_new_events())
            return any(e.name.endswith("deep.txt") for e in events)

        assert wait_until(saw, timeout=10)
    finally:
        handle.stop()
