"""Volume paths never leave the volume: `..`, absolute paths, symlinks (absolute, relative, in the middle or at the
end), FIFOs and devices are refused or handled as themselves, and no host file outside is read or changed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.volumes import content, paths


@pytest.fixture
def vol(tmp_path: Path) -> tuple[Path, Path]:
    """A volume root full of traps, and a host directory outside it holding a secret."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "vol" / "data"
    root.mkdir(parents=True)
    (root / "dir").mkdir()
    (root / "dir" / "file").write_text("inside")
    (root / "abs").symlink_to(outside / "secret")            # absolute, to a host file
    (root / "absdir").symlink_to(outside)                    # absolute, to a host dir
    (root / "rel").symlink_to("../../host/secret")           # relative, climbing out
    (root / "dir" / "up").symlink_to("..")                   # in-volume but still a symlink
    (root / "etc").symlink_to("/etc")
    os.mkfifo(root / "fifo")
    return root, outside


@pytest.mark.parametrize("bad", ["..", "../host/secret", "/../host/secret", "dir/../../host", "a/\0b", "x/../y"])
def test_split_refuses_dotdot_and_nul(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="path"):
        paths.split(bad)


def test_split_reads_absolute_and_dot_paths_inside_the_volume() -> None:
    assert paths.split("/dir/./file") == ["dir", "file"]
    assert paths.split("//dir//file/") == ["dir", "file"]
    assert paths.split("/") == [] and paths.split(".") == []
    with pytest.raises(InvalidRequestError):
        paths.split("x" * 256)


def test_absolute_path_is_rooted_in_the_volume(vol: tuple[Path, Path]) -> None:
    root, _ = vol
    fd = content.open_for_read(root, "/dir/file")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)
    with pytest.raises((NotFoundError, InvalidRequestError)):
        content.stat_path(root, "/etc/passwd")  # never the host's /etc (etc is a symlink: not crossed)


@pytest.mark.parametrize("link", ["abs", "rel", "etc", "absdir"])
def test_final_symlink_is_reported_not_followed(vol: tuple[Path, Path], link: str) -> None:
    root, _ = vol
    info = content.stat_path(root, link)
    assert info["type"] == "symlink" and "target" in info
    with pytest.raises(InvalidRequestError, match="symlink"):
        content.open_for_read(root, link)


@pytest.mark.parametrize("path", ["absdir/secret", "etc/passwd", "etc/shadow", "dir/up/abs", "dir/up/dir/file"])
def test_symlink_in_the_middle_is_never_crossed(vol: tuple[Path, Path], path: str) -> None:
    root, _ = vol
    for op in (lambda: content.open_for_read(root, path), lambda: content.stat_path(root, path),
               lambda: content.list_dir(root, path), lambda: content.remove(root, path)):
        with pytest.raises((InvalidRequestError, NotFoundError)):
            op()


def test_listing_does_not_enter_symlinked_dirs(vol: tuple[Path, Path]) -> None:
    root, _ = vol
    with pytest.raises(InvalidRequestError):
        content.list_dir(root, "absdir")
    names = {e["path"]: e["type"] for e in content.list_dir(root, "/", depth=5)}
    assert names["/absdir"] == "symlink" and names["/dir/up"] == "symlink" and names["/fifo"] == "unknown"
    assert not any(p.startswith(("/absdir/", "/dir/up/")) for p in names)


def test_writes_replace_a_planted_symlink_never_its_target(vol: tuple[Path, Path]) -> None:
    root, outside = vol
    for link in ("abs", "rel"):
        upload = content.begin_write(root, link)
        upload.write(b"overwritten")
        out = upload.commit()
        assert out["type"] == "file" and (root / link).read_bytes() == b"overwritten"
    assert (outside / "secret").read_text() == "host secret"
    for path in ("absdir/new", "etc/new", "dir/up/new"):
        with pytest.raises(InvalidRequestError):
            content.begin_write(root, path, force=True)
        with pytest.raises(InvalidRequestError):
            content.make_dir(root, path + "/sub", force=True)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert not any(n.startswith(content.UPLOAD_PREFIX) for n in os.listdir(root))


def test_remove_and_chmod_act_on_the_link_itself(vol: tuple[Path, Path]) -> None:
    root, outside = vol
    before = (outside / "secret").stat()
    with pytest.raises(InvalidRequestError, match="mode"):
        content.update_metadata(root, "abs", mode=0o777)
    content.update_metadata(root, "abs", uid=1234)
    assert (outside / "secret").stat().st_uid == before.st_uid and os.lstat(root / "abs").st_uid == 1234
    content.remove(root, "absdir")
    content.remove(root, "abs")
    assert (outside / "secret").read_text() == "host secret" and outside.is_dir()
    assert not (root / "absdir").exists() and not (root / "abs").is_symlink()


def test_fifos_and_devices_are_never_opened(vol: tuple[Path, Path]) -> None:
    root, _ = vol
    with pytest.raises(InvalidRequestError, match="special file"):
        content.open_for_read(root, "fifo")   # would block forever if opened
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(InvalidRequestError, match="special file"):
        content.open_for_read(root, "null")


def test_remove_of_a_tree_keeps_symlink_targets(vol: tuple[Path, Path]) -> None:
    root, outside = vol
    (root / "dir" / "host").symlink_to(outside)
    content.remove(root, "dir")
    assert (outside / "secret").read_text() == "host secret"
    with pytest.raises(InvalidRequestError):
        content.remove(root, "/")


def test_make_dir_write_read_and_owners(vol: tuple[Path, Path]) -> None:
    root, _ = vol
    os.chown(root, 1000, 1000)
    made = content.make_dir(root, "/a/b/c", force=True)
    assert made["type"] == "directory" and made["path"] == "/a/b/c" and (made["uid"], made["gid"]) == (1000, 1000)
    with pytest.raises(ConflictError):
        content.make_dir(root, "/a/b/c")
    with pytest.raises(NotFoundError):
        content.make_dir(root, "/x/y")
    upload = content.begin_write(root, "/a/b/c/f.txt")
    upload.write(b"hello")
    info = upload.commit()
    assert info["size"] == 5 and info["mode"] == 0o644 and info["uid"] == 1000
    content.update_metadata(root, "/a/b/c/f.txt", mode=0o600, uid=0)
    upload = content.begin_write(root, "/a/b/c/f.txt")   # overwrite keeps owner and mode
    upload.write(b"bye")
    info = upload.commit()
    assert (info["mode"], info["uid"], info["size"]) == (0o600, 0, 3)
    with pytest.raises(InvalidRequestError, match="directory"):
        content.begin_write(root, "/a")
    with pytest.raises(InvalidRequestError, match="depth"):
        content.list_dir(root, "/", depth=0)
    assert [e["name"] for e in content.list_dir(root, "/a")] == ["b"]


def test_disk_full_is_a_clear_507(vol: tuple[Path, Path]) -> None:
    from corral.errors import StorageFullError

    root, _ = vol
    upload = content.begin_write(root, "big")
    os.close(upload.fd)
    upload.fd = os.open("/dev/full", os.O_WRONLY)
    with pytest.raises(StorageFullError) as err:
        upload.write(b"x" * 10)
    assert err.value.status_code == 507 and isinstance(err.value, OSError)
    upload.abort()
    assert not (root / "big").exists() and not any(n.startswith(content.UPLOAD_PREFIX) for n in os.listdir(root))


def test_mount_points_that_are_files_in_the_template_are_refused(tmp_path: Path) -> None:
    from corral.runtime.base import VolumeBind
    from corral.volumes.store import check_destinations

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("x")
    (rootfs / "usr" / "lib").mkdir(parents=True)
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "host").symlink_to("/etc")        # resolved by the runtime inside the rootfs, never by us

    def bind(dest: str) -> VolumeBind:
        return VolumeBind(volume_id="vol_0", volume_name="v", source=tmp_path, destination=dest)

    check_destinations([bind("/new/dir"), bind("/etc/new"), bind("/lib/vol"), bind("/host/hostname/x")], rootfs)
    for dest in ("/etc/hostname", "/etc/hostname/below"):
        with pytest.raises(InvalidRequestError, match=r"volumeMounts\[1\]\.path"):
            check_destinations([bind("/ok"), bind(dest)], rootfs)
    check_destinations([bind("/etc/hostname")], tmp_path / "missing")   # no rootfs: left to the runtime
