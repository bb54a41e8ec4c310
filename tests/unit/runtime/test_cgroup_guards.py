"""The parent CPU weight of all sandboxes and the freeze-then-kill teardown, on a fake cgroup tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.runtime import cgroups

SID = "abcdefghij0123456789"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for c in ("cpu", "freezer", "pids"):
        (tmp_path / c / "corral" / SID).mkdir(parents=True)
    (tmp_path / "freezer" / "corral" / SID / "freezer.state").write_text("THAWED")
    (tmp_path / "pids" / "corral" / SID / "cgroup.procs").write_text("")
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {c: tmp_path / c for c in ("cpu", "freezer", "pids")})
    return tmp_path


def test_parent_cpu_shares(tree: Path) -> None:
    cgroups.set_parent_cpu_shares(128)
    assert (tree / "cpu" / "corral" / "cpu.shares").read_text() == "128"


def test_kill_all_freezes_then_thaws(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[str] = []
    real = cgroups._set_frozen

    def spy(sandbox_id: str, frozen: bool, wait_s: float = 1.0) -> bool:
        states.append("FROZEN" if frozen else "THAWED")
        return real(sandbox_id, frozen, wait_s)

    monkeypatch.setattr(cgroups, "_set_frozen", spy)
    assert cgroups.kill_all(SID) == set()
    assert states == ["FROZEN", "THAWED"]
    assert (tree / "freezer" / "corral" / SID / "freezer.state").read_text() == "THAWED"
