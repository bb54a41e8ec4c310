"""The shared template build flow: reuse, forced rebuild, a failed build leaves the installed version alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Settings
from corral.templates.building import build_template
from corral.templates.store import TemplateInfo, TemplateStore


def fake_build(marker: str):  # type: ignore[no-untyped-def]
    def build_into(staging: Path) -> TemplateInfo:
        (staging / "rootfs").mkdir(parents=True)
        (staging / "rootfs" / "marker").write_text(marker)
        return TemplateInfo(id="t1", aliases=["t1"])
    return build_into


def test_reuse_force_and_failed_rebuild(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = TemplateStore(settings)
    lines: list[str] = []
    first = build_template(settings, store, "t1", fake_build("one"), force=False, log=lines.append)
    assert (first.rootfs / "marker").read_text() == "one"
    again = build_template(settings, store, "t1", fake_build("two"), force=False, log=lines.append)
    assert (again.rootfs / "marker").read_text() == "one"  # reused, not rebuilt
    assert any("already built" in line for line in lines)

    def broken(staging: Path) -> TemplateInfo:
        (staging / "rootfs").mkdir(parents=True)
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        build_template(settings, store, "t1", broken, force=True, log=lines.append)
    assert not list(settings.templates_dir.glob(".t1.build-*"))  # staging removed
    assert (store.get("t1").rootfs / "marker").read_text() == "one"  # installed version untouched
    rebuilt = build_template(settings, store, "t1", fake_build("three"), force=True, log=lines.append)
    assert (rebuilt.rootfs / "marker").read_text() == "three"
