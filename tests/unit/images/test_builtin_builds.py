"""Built-in bases are built once under a lock, derived from their parent, and a failed build leaves nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from corral.errors import RuntimeFailure
from corral.images import build as builder
from corral.images.store import ImageStore

Fake = dict[str, list[str]]


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch) -> Fake:
    calls: Fake = {"built": []}

    def debootstrap(_data: Path, image: Any, rootfs: Path, _log: Any) -> None:
        calls["built"].append(image.name)
        time.sleep(0.2)  # long enough for the other threads to queue on the lock
        (rootfs / "etc").mkdir()
        (rootfs / "etc/debian_version").write_text(image.suite)

    def derive(_data: Path, image: Any, parent: Path, rootfs: Path, _log: Any) -> None:
        calls["built"].append(image.name)
        (rootfs / "etc").mkdir()
        (rootfs / "etc/debian_version").write_text((parent / "etc/debian_version").read_text())
        (rootfs / "half-installed").write_text("x")
        if image.name.startswith("node"):
            raise RuntimeFailure("apt-get install failed (exit 100)")

    monkeypatch.setattr(builder, "debootstrap", debootstrap)
    monkeypatch.setattr(builder, "derive", derive)
    monkeypatch.setattr(builder, "check", lambda *_: None)
    return calls


def test_built_once_even_when_asked_concurrently(tmp_path: Path, fake_builds: Fake) -> None:
    store = ImageStore(tmp_path / "data")
    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(store.resolve, ["python:3.13", "python:3.13-slim", "docker.io/library/python:3.13", "python:3.13"]))
    assert fake_builds["built"] == ["debian:trixie", "python:3.13"]
    assert len({i.rootfs for i in infos}) == 1
    assert (infos[0].rootfs / "etc/debian_version").read_text() == "trixie"
    assert store.resolve("debian:13").rootfs == tmp_path / "data/images/builtin/debian-trixie/rootfs"
    assert {"debian:trixie", "python:3.13"} <= {i.ref for i in store.list()}
    store.build_builtin("python:3.13", force=True)
    assert fake_builds["built"][-1] == "python:3.13"


def test_failed_build_leaves_nothing(tmp_path: Path, fake_builds: Fake) -> None:
    store = ImageStore(tmp_path / "data")
    with pytest.raises(RuntimeFailure, match="apt-get install failed"):
        store.resolve("node:20")
    builtin = tmp_path / "data/images/builtin"
    assert sorted(p.name for p in builtin.iterdir()) == ["debian-trixie"]  # the parent is whole; no staging dir
    assert "node:20" not in {i.ref for i in store.list()}
