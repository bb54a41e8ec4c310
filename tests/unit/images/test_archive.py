"""Image archives: OCI layouts and docker-save archives are read, their configs parsed, hostile ones refused."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from corral.errors import ImageArchiveError
from corral.images.archive import open_archive, parse_config
from tests.unit.images.archives import Entry, config, docker_archive, layer, oci_archive


def test_parse_config() -> None:
    c = parse_config(config(env=["A=1", "B=x=y", "EMPTY="], workdir="/app", user="1000:1000",
                            entrypoint=["/bin/sh", "-c"], cmd=["echo hi"]))  # fmt: skip
    assert c.env == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert (c.workdir, c.user, c.cmd) == ("/app", "1000:1000", ["/bin/sh", "-c", "echo hi"])
    bare = parse_config({"config": {}})
    assert (bare.env, bare.workdir, bare.user, bare.cmd) == ({}, None, None, None)


@pytest.mark.parametrize("doc", [[], {"config": []}, {"config": {"Env": "A=1"}}, {"config": {"Env": ["NOEQUALS"]}},
                                 {"config": {"Cmd": [1]}}, {"config": {"User": 5}}])
def test_bad_configs(doc: object) -> None:
    with pytest.raises(ImageArchiveError, match="config"):
        parse_config(doc)


def test_oci_archive(tmp_path: Path) -> None:
    layers = [layer([Entry("a", data=b"1")], compress=True), layer([Entry("b", data=b"2")])]
    path = oci_archive(tmp_path / "img.tar", layers, config(cmd=["x"]), name="docker.io/me/app:1")
    with open_archive(path) as (img, arc):
        assert img.format == "oci"
        assert img.names == ["docker.io/me/app:1"]
        assert len(img.layers) == 2 and all(d for _, d in img.layers)
        assert img.config.cmd == ["x"]
        assert arc.has("index.json")


def test_docker_save_archive(tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "img.tar", [layer([Entry("a", data=b"1")])], config(), ["python:3.11", "py:x"])
    with open_archive(path) as (img, _):
        assert img.format == "docker-save"
        assert img.names == ["docker.io/library/python:3.11", "docker.io/library/py:x"]


def test_docker_save_layer_path_traversal(tmp_path: Path) -> None:
    with pytest.raises(ImageArchiveError, match="traversal"):
        path = docker_archive(tmp_path / "img.tar", [layer([])], config(), layer_names=["../../etc/shadow"])
        with open_archive(path):
            pass


def test_oci_digest_mismatch_and_bad_digest(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "img.tar", [layer([])], config(), name="a:1")
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    index = json.loads(members["index.json"])
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    bad = oci_archive(tmp_path / "bad.tar", [], config(), extra={})
    with tarfile.open(bad, "w") as tar:
        import io
        for name, data in {**members, "index.json": json.dumps(index).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageArchiveError, match="unsupported digest"), open_archive(bad):
        pass


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ImageArchiveError, match="not a tar archive"), open_archive(tmp_path / "x.txt"):
        pass
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(ImageArchiveError, match="neither an OCI"), open_archive(tmp_path / "empty.tar"):
        pass
    with pytest.raises(ImageArchiveError, match="no such file"), open_archive(tmp_path / "missing.tar"):
        pass
