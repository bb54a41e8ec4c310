"""Snapshots and fork through the stock SDK: new sandboxes start with the source's memory and files."""

from __future__ import annotations

from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.pause.helpers import COUNTER, assert_clean, counter
from tests.integration.sdk.helpers import create, wait_until


def test_snapshot_starts_new_sandboxes_with_memory_and_files(e2b: CorralServer) -> None:
    src = create("gvisor", timeout=300, envs={"FROM_SOURCE": "1"})
    ids = [src.sandbox_id]
    try:
        src.files.write("/home/user/snap.txt", "in the snapshot")
        proc = src.commands.run(COUNTER, background=True)
        assert wait_until(lambda: src.files.exists("/tmp/counter") and counter(src) > 3)
        end_before = src.get_info().end_at
        snap = src.create_snapshot(name="my-snap")
        assert snap.snapshot_id and snap.names == ["my-snap"]
        # The source keeps running, with the same id and end.
        assert src.is_running() and src.get_info().end_at == end_before
        assert wait_until(lambda: counter(src) > 0)
        src.files.write("/home/user/after.txt", "not in the snapshot")
        assert [s.snapshot_id for s in src.list_snapshots().next_items()] == [snap.snapshot_id]
        for template in (snap.snapshot_id, "my-snap"):
            new = Sandbox.create(template=template, timeout=120)
            ids.append(new.sandbox_id)
            assert new.sandbox_id != src.sandbox_id
            assert new.files.read("/home/user/snap.txt") == "in the snapshot"
            assert not new.files.exists("/home/user/after.txt")
            # The counter process came along and keeps counting from where it was.
            assert proc.pid in [p.pid for p in new.commands.list()]
            first = counter(new)
            assert first > 3 and wait_until(lambda n=new, f=first: counter(n) > f)
            assert new.commands.run("echo $FROM_SOURCE").stdout.strip() == "1"
            # Writes in one copy never show in another (each has its own layer).
            new.files.write("/home/user/snap.txt", f"changed in {new.sandbox_id}")
            assert src.files.read("/home/user/snap.txt") == "in the snapshot"
            new.kill()
        assert Sandbox.delete_snapshot(snap.snapshot_id) is True
        assert Sandbox.delete_snapshot(snap.snapshot_id) is False
        assert not (e2b.data_dir / "snapshots" / snap.snapshot_id).exists()
    finally:
        src.kill()
    assert_clean(e2b, ids)


def test_fork_of_three(e2b: CorralServer) -> None:
    src = create("gvisor", timeout=300)
    ids = [src.sandbox_id]
    try:
        src.commands.run("echo 42 > /tmp/answer; sleep 1000 >/dev/null 2>&1 &")
        forks = src.fork(count=3, timeout=120)
        assert len(forks) == 3 and all(isinstance(f, Sandbox) for f in forks), forks
        ids += [f.sandbox_id for f in forks]  # type: ignore[union-attr]
        assert len(set(ids)) == 4
        for f in forks:
            r = f.commands.run("cat /tmp/answer; pgrep -c sleep")  # type: ignore[union-attr]
            assert r.stdout.split() == ["42", "1"]
        assert src.commands.run("cat /tmp/answer").stdout.strip() == "42"
        assert not list((e2b.data_dir / "snapshots").glob("*"))   # fork's own snapshot is gone
        for f in forks:
            f.kill()  # type: ignore[union-attr]
    finally:
        src.kill()
    assert_clean(e2b, ids)


def test_other_team_cannot_see_use_or_delete_a_snapshot(e2b: CorralServer, monkeypatch: object) -> None:
    import pytest
    from e2b.exceptions import NotFoundException, SandboxException

    src = create("gvisor", timeout=120)
    try:
        snap = src.create_snapshot()
        other = {"api_key": e2b.create_key("snap-intruder", team="intruders")}
        assert snap.snapshot_id not in [s.snapshot_id for s in Sandbox.list_snapshots(**other).next_items()]
        assert Sandbox.delete_snapshot(snap.snapshot_id, **other) is False
        with pytest.raises((NotFoundException, SandboxException)):
            Sandbox.create(template=snap.snapshot_id, **other)
        with pytest.raises((NotFoundException, SandboxException)):
            Sandbox.fork(src.sandbox_id, count=1, **other)
        assert Sandbox.delete_snapshot(snap.snapshot_id) is True
    finally:
        src.kill()
    assert_clean(e2b, [src.sandbox_id])
