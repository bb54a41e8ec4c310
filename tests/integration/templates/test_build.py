"""A real base build into a temp data dir (opt-in: CORRAL_TEST_BUILD=1, ~2 min): cache reuse, failure safety."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.templates import base
from corral.templates.chroot import mounts_under
from corral.templates.store import TemplateStore

SHARED_CACHE = Path("/var/lib/corral/cache")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, chroot, mount)"),
    pytest.mark.skipif(
        os.environ.get("CORRAL_TEST_BUILD") != "1",
        reason="runs debootstrap (~1-2 min); CI builds the template once instead. Set CORRAL_TEST_BUILD=1 to run",
    ),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap not installed"),
]


@pytest.fixture
def settings() -> Iterator[Settings]:
    data = Path(tempfile.mkdtemp(prefix="corral-build-test-", dir="/var/tmp"))
    if SHARED_CACHE.is_dir():  # reuse the machine's .deb cache: the test checks the build, not the mirror's speed
        (data / "cache").symlink_to(SHARED_CACHE)
    try:
        yield Settings(data_dir=data)
    finally:
        assert mounts_under(data) == [], "the build leaked a mount"
        shutil.rmtree(data)


def test_build_reuse_and_failed_rebuild_keeps_the_good_one(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    logs: list[str] = []
    info = base.build_base_template(settings, log=logs.append)
    assert (info.rootfs / "usr/bin/python3").exists() and (info.rootfs / "usr/bin/npm").exists()
    assert any(line.startswith("[5/5]") for line in logs)
    assert TemplateStore(settings).get("base") == info

    # Cached: no second build.
    logs.clear()
    assert base.build_base_template(settings, log=logs.append) == info
    assert logs == [f"template 'base' already built at {info.rootfs} (rebuild with --force)"]

    # A forced rebuild that fails (a package that does not exist) leaves the old template and nothing else behind.
    monkeypatch.setattr(base, "PACKAGES", [*base.PACKAGES, "corral-no-such-package"])
    with pytest.raises(RuntimeFailure, match="apt-get install failed"):
        base.build_base_template(settings, force=True, log=logs.append)
    assert TemplateStore(settings).get("base") == info
    assert sorted(p.name for p in settings.templates_dir.iterdir()) == [".base.lock", "base"]
    assert mounts_under(settings.data_dir) == []
