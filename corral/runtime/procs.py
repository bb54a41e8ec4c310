"""Find a runtime's host processes by their command line (survives a server restart, unlike remembered PIDs)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def find(
    root: Path, sandbox_id: str, argv0_prefix: str, among: Iterable[int] | None = None
) -> dict[int, list[str]]:
    """Processes whose argv[0] starts with `argv0_prefix`, that run with `--root=<root>` (our runtime state dir,
    never another user's) and name `sandbox_id` in an argument (the id itself or our bundle path under its dir).
    `among` limits the search to those pids (cheaper than scanning all of /proc)."""
    root_arg = f"--root={root}"
    out: dict[int, list[str]] = {}
    candidates = [str(p) for p in among] if among is not None else os.listdir("/proc")
    for pid in candidates:
        if not pid.isdigit():
            continue
        argv = _cmdline(pid)
        if not argv or not os.path.basename(argv[0]).startswith(argv0_prefix):
            continue
        if root_arg in argv and any(sandbox_id in a for a in argv[1:]):
            out[int(pid)] = argv
    return out
