"""Layout paths, mountinfo parsing, cgroup hierarchy discovery and process matching."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.runtime import cgroups, procs
from corral.runtime.layout import SandboxLayout, _unescape, is_mountpoint


def test_layout_paths() -> None:
    lay = SandboxLayout.of(Path("/d/sandboxes"), "x" * 20)
    assert lay.sandbox_id == "x" * 20
    assert lay.layer_img == Path("/d/sandboxes/xxxxxxxxxxxxxxxxxxxx/layer.img")
    assert lay.upper == lay.layer / "upper" and lay.work == lay.layer / "work"
    assert lay.socket_path == lay.dir / "run" / "agent.sock"
    assert lay.config_json == lay.dir / "bundle" / "config.json"
    assert lay.owner() is None


def test_owner_marker(tmp_path: Path) -> None:
    lay = SandboxLayout(tmp_path)
    lay.marker.write_text("runc\n")
    assert lay.owner() == "runc"


def test_mountinfo_unescape_and_mountpoint(tmp_path: Path) -> None:
    assert _unescape(r"/a\040b\011c\134d") == "/a b\tc\\d"
    assert is_mountpoint(Path("/proc"))
    assert not is_mountpoint(tmp_path)


def test_cgroup_hierarchies() -> None:
    h = cgroups.hierarchies()
    if "memory" not in h:
        pytest.skip("no cgroup v1 memory hierarchy on this host")
    assert {"memory", "pids", "cpu"} <= set(h)
    assert cgroups.cgroups_path("abc") == "/corral/abc"
    assert cgroups.dirs("doesnotexist0000000000") == []
    assert cgroups.pids("doesnotexist0000000000") == set()


def test_procs_find_matches_root_and_id_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # One process, no children: a shell that forks `sleep` briefly shows a second process with the same argv.
    cmd = 'exec -a runsc-fake ' + sys.executable + ' -c "import time; time.sleep(30)" "--root={}" "{}"'
    mine = subprocess.Popen(["bash", "-c", cmd.format(root, "ididididididididid01")])
    other_root = subprocess.Popen(["bash", "-c", cmd.format(tmp_path / "other", "ididididididididid01")])
    try:
        deadline = time.monotonic() + 5
        while True:
            found = procs.find(root, "ididididididididid01", "runsc")
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert set(found) == {mine.pid}
        assert procs.find(root, "ididididididididid02", "runsc") == {}
        assert procs.find(root, "ididididididididid01", "runc-") == {}
    finally:
        for p in (mine, other_root):
            p.kill()
            p.wait()
