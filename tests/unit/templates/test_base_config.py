"""The base build's file-writing steps on a fake rootfs (no debootstrap): sources, CAs, configs, cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.templates import base
from corral.templates.mirror import parse_deb822


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    for d in ("etc/apt", "usr/sbin", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "tmp"):
        (r / d).mkdir(parents=True)
    (r / "etc/apt/sources.list").write_text("deb http://x.example.org/debian bookworm main\n")
    return r


def test_sources_use_the_given_mirrors_and_cas_are_copied(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cas = tmp_path / "host-cas"
    (cas / "sub").mkdir(parents=True)
    (cas / "a.crt").write_text("A")
    (cas / "sub" / "b.crt").write_text("B")
    (cas / "README").write_text("not a cert")
    monkeypatch.setattr(base, "HOST_EXTRA_CAS", cas)
    copied = base._configure_before_install(rootfs, "http://m.example.org/debian", "http://m.example.org/sec")
    assert copied == ["a.crt", "sub/b.crt"]
    dest = rootfs / "usr/local/share/ca-certificates"
    assert (dest / "sub" / "b.crt").read_text() == "B" and not (dest / "README").exists()
    assert not (rootfs / "etc/apt/sources.list").exists()
    sources = parse_deb822((rootfs / "etc/apt/sources.list.d/debian.sources").read_text())
    assert [(s.uris, s.suites) for s in sources] == [
        (("http://m.example.org/debian",), ("bookworm", "bookworm-updates")),
        (("http://m.example.org/sec",), ("bookworm-security",)),
    ]
    assert (rootfs / "usr/sbin/policy-rc.d").stat().st_mode & 0o111
    assert "path-exclude /usr/share/doc/*" in (rootfs / "etc/dpkg/dpkg.cfg.d/01-corral-nodoc").read_text()


def test_no_security_mirror_means_one_stanza(rootfs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(base, "HOST_EXTRA_CAS", tmp_path / "none")
    assert base._configure_before_install(rootfs, "http://m.example.org/debian", None) == []
    assert len(parse_deb822((rootfs / "etc/apt/sources.list.d/debian.sources").read_text())) == 1


def test_after_install_and_clean(rootfs: Path) -> None:
    (rootfs / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (rootfs / "var/lib/apt/lists/deb.example_InRelease").write_text("x" * 10000)
    (rootfs / "var/cache/apt/archives/foo.deb").write_text("deb")
    (rootfs / "var/cache/apt/pkgcache.bin").write_text("bin")
    (rootfs / "tmp/junk").mkdir()
    (rootfs / "usr/share/doc/pkg").mkdir(parents=True)
    (rootfs / "usr/share/doc/pkg/copyright").write_text("GPL")
    (rootfs / "usr/share/doc/pkg/changelog.gz").write_text("log")
    base._configure_after_install(rootfs)
    base._clean(rootfs)
    assert not (rootfs / "usr/sbin/policy-rc.d").exists()
    assert (rootfs / "etc/hostname").read_text() == f"{base.HOSTNAME}\n"
    assert f"127.0.1.1\t{base.HOSTNAME}" in (rootfs / "etc/hosts").read_text()
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in (rootfs / "etc/pip.conf").read_text()
    profile = (rootfs / "etc/profile.d/corral.sh").read_text()
    assert "export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" in profile
    assert sorted(p.name for p in (rootfs / "var/lib/apt/lists").iterdir()) == ["partial"]
    assert sorted(p.name for p in (rootfs / "var/cache/apt/archives").iterdir()) == ["partial"]
    assert not (rootfs / "var/cache/apt/pkgcache.bin").exists() and list((rootfs / "tmp").iterdir()) == []
    assert [p.name for p in (rootfs / "usr/share/doc/pkg").iterdir()] == ["copyright"]


def test_login_files_spawn_nothing(rootfs: Path) -> None:
    (rootfs / "root").mkdir(exist_ok=True)
    (rootfs / "etc/profile").write_text('if [ "$(id -u)" -eq 0 ]; then\n  PATH=/sbin\nfi\n')
    (rootfs / "root/.profile").write_text("mesg n 2> /dev/null || true\n")
    base._configure_after_install(rootfs)
    assert (rootfs / "etc/profile").read_text() == 'if [ "${EUID:-$(id -u)}" -eq 0 ]; then\n  PATH=/sbin\nfi\n'
    assert "if [ -t 0 ]; then mesg n" in (rootfs / "root/.profile").read_text()


def test_du_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    before = base._du_bytes(tmp_path)
    (tmp_path / "b").hardlink_to(tmp_path / "a")
    assert base._du_bytes(tmp_path) == before >= 100_000
