"""Host processes: run short CLI commands (killed if cancelled), find a runtime's processes by command line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TypeVar

from corral.errors import RuntimeFailure

T = TypeVar("T")


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


async def reaped(proc: asyncio.subprocess.Process, waiting: Awaitable[T], timeout: float) -> T:
    """Await `waiting` (the child's wait or communicate) within `timeout`. On timeout or cancellation the child is
    killed and reaped first, so a rolled-back create never leaves e.g. a mkfs writing into a removed dir."""
    try:
        return await asyncio.wait_for(waiting, timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise


async def run_cmd(*argv: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run a short CLI command; returns (exit code, stdout+stderr); the child never outlives a timeout or cancel."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await reaped(proc, proc.communicate(), timeout)
    except TimeoutError:
        raise RuntimeFailure(f"{argv[0]} {' '.join(argv[1:3])} timed out after {timeout}s") from None
    return proc.returncode or 0, out.decode(errors="replace").strip()
