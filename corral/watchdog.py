"""Notices sandboxes that died on their own (e.g. a gVisor sandbox OOM-killed as a whole) and reports why.

Every `interval` seconds each routed sandbox's runtime is asked whether it still runs (cheap: a cgroup read).
A dead one is killed the normal way (route gone, row `killed`, teardown), its reason is kept for `get` to report
("killed: out of memory ...") and written to the log and the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from corral import audit
from corral.db import SandboxRecord
from corral.runtime import cgroups
from corral.tasks import cancel_and_wait

if TYPE_CHECKING:
    from corral.sandboxes import SandboxManager

log = logging.getLogger(__name__)


def _counter(controller: str, sandbox_id: str, name: str, key: str | None = None) -> int:
    """A number from one of the sandbox's cgroup files (0 when the cgroup or the file is gone)."""
    try:
        text = cgroups.read(controller, sandbox_id, name)
        if key is None:
            return int(text)
        return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key + " ")), 0)
    except (OSError, ValueError, RuntimeError):
        return 0


def death_reason(sandbox_id: str, memory_mb: int) -> str:
    """Why a sandbox's processes are gone, read from its (still present) cgroups before teardown removes them."""
    if _counter("memory", sandbox_id, "memory.oom_control", "oom_kill") or \
            _counter("memory", sandbox_id, "memory.failcnt"):
        return f"out of memory (limit {memory_mb} MiB)"
    if _counter("pids", sandbox_id, "pids.events", "max"):
        return "too many processes (pids limit reached)"
    return "its processes exited"


class Watchdog:
    def __init__(self, manager: SandboxManager, interval: float) -> None:
        self.manager = manager
        self.interval = interval
        self.reasons: dict[str, str] = {}   # sandbox id -> why it died (kept while the server runs)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("watchdog sweep failed")

    async def sweep(self) -> list[str]:
        """Check every routed sandbox once; returns the ids found dead."""
        m = self.manager
        routed = [sid for sid in list(m._routes)]
        if not routed:
            return []
        with m.db.session() as s:
            rows = list(s.execute(select(SandboxRecord.id, SandboxRecord.runtime, SandboxRecord.team_id,
                                         SandboxRecord.memory_mb).where(SandboxRecord.id.in_(routed))))
        dead = []
        for sid, runtime_name, team_id, memory_mb in rows:
            runtime = m.runtimes.get(runtime_name)
            if runtime is None or sid not in m._routes or await runtime.is_alive(sid):
                continue
            if sid not in m._routes:
                continue  # killed by a request while we looked
            reason = death_reason(sid, memory_mb)
            self.reasons[sid] = reason
            log.warning("sandbox %s died: %s", sid, reason)
            with contextlib.suppress(Exception):
                audit.record(m.db, team_id=team_id, key_id=None, method="EVENT", route=f"sandbox died: {reason}",
                             target_id=sid, status=0)
            await m._kill(sid)
            dead.append(sid)
        return dead
