"""npm from a tarball: cache reuse without the network, safe unpacking, the npm/npx links."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from corral.templates import npm


def make_tarball(path: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data, mode in [
            ("package/package.json", b'{"name":"npm"}', 0o644),
            ("package/bin/npm-cli.js", b"#!/usr/bin/env node\n", 0o755),
            ("package/bin/npx-cli.js", b"#!/usr/bin/env node\n", 0o755),
        ]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra or []:
            tf.addfile(ti, io.BytesIO(b""))
    return path


def test_cache_is_used_without_calling_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("10.2.0", "10.10.1", "10.9.9"):
        make_tarball(tmp_path / f"npm-{v}.tgz")
    (tmp_path / "npm-9.9.9.tgz").write_text("wrong major")
    monkeypatch.setattr(npm.shutil, "which", lambda _: pytest.fail("npm must not run when the cache has a tarball"))
    assert npm.fetch_npm_tarball(tmp_path, print) == tmp_path / "npm-10.10.1.tgz"  # numeric, not string, order


def test_no_host_npm_means_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npm.shutil, "which", lambda _: None)
    logs: list[str] = []
    assert npm.fetch_npm_tarball(tmp_path / "empty", logs.append) is None
    assert "Debian's npm" in logs[0]


def test_install_links_and_refuses_escapes(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/npm").write_text("old")
    tgz = make_tarball(tmp_path / "npm-10.9.9.tgz")
    assert npm.install_npm(rootfs, tgz) == "10.9.9"
    assert os.readlink(rootfs / "usr/bin/npm") == "../lib/node_modules/npm/bin/npm-cli.js"
    assert (rootfs / "usr/bin/npx").resolve() == (rootfs / "usr/lib/node_modules/npm/bin/npx-cli.js").resolve()
    assert (rootfs / "usr/lib/node_modules/npm/bin/npm-cli.js").stat().st_mode & 0o111
    evil = tarfile.TarInfo("package/../../../../escaped")
    bad = make_tarball(tmp_path / "npm-10.9.8.tgz", [evil])
    with pytest.raises(tarfile.FilterError):
        npm.install_npm(rootfs, bad)
    assert not (tmp_path / "escaped").exists()
