"""build_agent(): a static binary, rebuilt only when sources are newer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from corral.agent.build import build_agent


def test_build_is_static_and_cached(tmp_path: Path) -> None:
    out = build_agent(tmp_path / "agent")
    assert out == tmp_path / "agent" and os.access(out, os.X_OK)
    # statically linked: no program interpreter, so it runs in any image (musl, no libc)
    assert b"/lib64/ld-linux" not in out.read_bytes()[:4096]
    assert "statically linked" in subprocess.run(["file", str(out)], capture_output=True, text=True, check=True).stdout
    mtime = out.stat().st_mtime_ns
    build_agent(out)
    assert out.stat().st_mtime_ns == mtime  # up to date: not rebuilt
    os.utime(out, (0, 0))  # older than the sources now
    build_agent(out)
    assert out.stat().st_mtime_ns != 0
    assert not list(tmp_path.glob("*.tmp*"))
