"""The image store: imports, tags, removal, built-ins from the base template, fail-fast hints, registry pulls."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import ImageArchiveError, InvalidRequestError
from corral.images.store import ImageNotFoundError, ImageStore
from corral.templates.store import TemplateInfo, write_template_json
from tests.unit.images.archives import Entry, config, docker_archive, layer, oci_archive

ROOT_LAYER = [Entry("bin/", "dir", mode=0o755), Entry("bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755),
              Entry("etc/os-release", data=b"ID=test\n")]  # fmt: skip


def _leftover_files(store: ImageStore) -> list[str]:
    """Everything under images/ except locks and refs.json: staging dirs or orphaned images would show up here."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.glob("*")
                  if p.name not in (".lock", "refs.json") and not p.name.startswith(".build-"))  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data", Settings(data_dir=tmp_path / "data", registries={}))


def test_unknown_refs_fail_fast_with_the_fix(store: ImageStore) -> None:
    t0 = time.monotonic()
    with pytest.raises(ImageNotFoundError) as e:
        store.resolve("ubuntu:22.04")
    assert time.monotonic() - t0 < 0.5
    msg = str(e.value)
    assert "corral image import FILE --name ubuntu:22.04" in msg
    assert "corral image tag SOURCE ubuntu:22.04" in msg
    assert "CORRAL_REGISTRIES" in msg
    with pytest.raises(ImageNotFoundError, match=r"python:3\.11, python:3\.13"):
        store.resolve("python:3.12")
    with pytest.raises(ImageNotFoundError, match="nodejs.org"):
        store.resolve("node:22")
    with pytest.raises(InvalidRequestError):
        store.resolve("Not A Ref")


def test_import_oci_then_resolve_by_any_spelling(store: ImageStore, tmp_path: Path) -> None:
    layers = [layer(ROOT_LAYER, compress=True), layer([Entry("etc/.wh.os-release"), Entry("app/", "dir")])]
    path = oci_archive(tmp_path / "a.tar", layers, config(env=["A=1"], workdir="/app", user="1000", cmd=["hello"]),
                       name="docker.io/me/app:1")  # fmt: skip
    info = store.import_archive(path)
    assert info.ref == "me/app:1"
    assert info.env == {"A": "1"} and (info.workdir, info.user, info.cmd) == ("/app", "1000", ["hello"])
    assert (info.rootfs / "bin/hello").read_bytes().startswith(b"#!/bin/sh")
    assert stat.S_IMODE(os.stat(info.rootfs / "bin/hello").st_mode) == 0o755
    assert not (info.rootfs / "etc/os-release").exists()
    assert store.resolve("docker.io/me/app:1").rootfs == info.rootfs
    assert [i.ref for i in store.list()] == ["me/app:1"]
    again = store.import_archive(path)  # same config digest: no second copy
    assert again.rootfs == info.rootfs
    assert _leftover_files(store) == ["sha256"]


def test_tag_and_remove(store: ImageStore, tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "d.tar", [layer(ROOT_LAYER)], config(), repo_tags=["busy:1"])
    info = store.import_archive(path, name="mine:1")
    assert info.ref == "mine:1"
    with pytest.raises(ImageNotFoundError):
        store.resolve("busy:1")  # --name replaces the archive's own names
    tagged = store.tag("mine:1", "ubuntu:22.04")
    assert tagged.ref == "ubuntu:22.04" and tagged.rootfs == info.rootfs
    store.remove("mine:1")
    assert store.resolve("ubuntu:22.04").rootfs.is_dir()  # still named, still there
    store.remove("docker.io/library/ubuntu:22.04")
    assert not info.rootfs.exists()
    assert store.list() == []
    with pytest.raises(ImageNotFoundError):
        store.remove("ubuntu:22.04")
    with pytest.raises(ImageNotFoundError):
        store.tag("nothing:1", "x:1")
    with pytest.raises(InvalidRequestError, match="digest"):
        store.tag("mine:1", "x@sha256:" + "a" * 64)


@pytest.mark.parametrize("bad_layer", [
    [Entry("ok", data=b"1"), Entry("../escape", data=b"x")],
    [Entry("l", "symlink", link="../../../../etc")],
])  # fmt: skip
def test_hostile_import_leaves_nothing(store: ImageStore, tmp_path: Path, bad_layer: list[Entry]) -> None:
    path = oci_archive(tmp_path / "evil.tar", [layer(ROOT_LAYER), layer(bad_layer)], config(), name="evil:1")
    with pytest.raises(ImageArchiveError):
        store.import_archive(path)
    assert _leftover_files(store) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path / "data" / "escape").exists()
    with pytest.raises(ImageNotFoundError):
        store.resolve("evil:1")


def test_unnamed_archive_needs_a_name(store: ImageStore, tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "n.tar", [layer(ROOT_LAYER)], config())
    with pytest.raises(ImageArchiveError, match="--name"):
        store.import_archive(path)
    assert _leftover_files(store) == []
    assert store.import_archive(path, name="named:1").ref == "named:1"


def test_builtins_come_from_the_base_template(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tdir = data / "templates" / "base"
    for f in ("usr/bin/python3", "usr/bin/python", "usr/bin/pip", "usr/bin/node", "usr/bin/npm"):
        (tdir / "rootfs" / f).parent.mkdir(parents=True, exist_ok=True)
        (tdir / "rootfs" / f).write_text("")
    write_template_json(tdir, TemplateInfo(id="base", aliases=["base"], envs={"LANG": "C.UTF-8"}))
    store = ImageStore(data)
    for ref in ("python:3.11", "python:3", "docker.io/library/python:3.11-slim", "debian:12", "debian:latest", "node:18"):
        info = store.resolve(ref)
        assert info.rootfs == tdir / "rootfs" and info.env == {"LANG": "C.UTF-8"} and info.user is None
    assert store.resolve("e2bdev/base").user == "user"
    assert {i.ref for i in store.list()} == {"debian:bookworm", "python:3.11", "node:18", "e2bdev/base:latest"}
    with pytest.raises(InvalidRequestError, match="built-in"):
        store.remove("python:3.11")
    tagged = store.tag("python:3.11", "myorg/py:1")
    assert tagged.rootfs == tdir / "rootfs" and tagged.ref == "myorg/py:1"


def _fake_skopeo(bin_dir: Path, archive: Path | None, marker: Path) -> None:
    """A `skopeo` that records its arguments and writes `archive` to the oci-archive destination (or fails)."""
    bin_dir.mkdir()
    body = f'cp {archive} "$dest"' if archive else 'echo "Error: pinging registry: connection refused" >&2; exit 1'
    script = bin_dir / "skopeo"
    script.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nfor a; do last=$a; done\n'
                      f'dest=${{last#oci-archive:}}; dest=${{dest%%:*}}\n{body}\n')  # fmt: skip
    script.chmod(0o755)


def test_registry_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = oci_archive(tmp_path / "pulled.tar", [layer(ROOT_LAYER)], config(cmd=["sh"]), name="alpine:3")
    marker = tmp_path / "calls"
    _fake_skopeo(tmp_path / "bin", archive, marker)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    data = tmp_path / "data"
    store = ImageStore(data, Settings(data_dir=data, registries={"docker.io": "127.0.0.1:5000"}))
    info = store.resolve("alpine:3")
    assert info.cmd == ["sh"] and (info.rootfs / "bin/hello").exists()
    assert "docker://127.0.0.1:5000/library/alpine:3" in marker.read_text()
    with pytest.raises(ImageNotFoundError, match="no registry in CORRAL_REGISTRIES serves quay.io"):
        store.resolve("quay.io/x/y:1")
    assert marker.read_text().count("copy") == 1
    assert store.resolve("alpine:3").rootfs == info.rootfs and marker.read_text().count("copy") == 1  # cached
    assert not list(store.root.glob(".pull-*"))


def test_failed_pull_and_no_registry_never_pulls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "calls"
    _fake_skopeo(tmp_path / "bin", None, marker)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    data = tmp_path / "data"
    store = ImageStore(data, Settings(data_dir=data, registries={"docker.io": "127.0.0.1:9"}))
    with pytest.raises(ImageNotFoundError, match="connection refused"):
        store.resolve("alpine:3")
    assert not list(store.root.glob(".pull-*")) and not (store.root / "sha256").exists()
    marker.unlink()
    with pytest.raises(ImageNotFoundError):
        ImageStore(data, Settings(data_dir=data, registries={})).resolve("alpine:3")
    assert not marker.exists()


def test_images_dir_is_root_only(store: ImageStore, tmp_path: Path) -> None:
    """A hostile image's setuid-root file must not be reachable by host users through the data dir."""
    path = oci_archive(tmp_path / "s.tar", [layer([Entry("suid", data=b"x", mode=0o4755)])], config(), name="s:1")
    info = store.import_archive(path)
    assert stat.S_IMODE(os.stat(info.rootfs / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
