"""Pause, resume, auto-resume, hibernation and crash reconciliation of sandboxes, on top of the SandboxManager."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from corral.db import SandboxRecord
from corral.db.models import utcnow
from corral.errors import ConflictError, CorralError, NotFoundError, RuntimeFailure
from corral.runtime import suspend
from corral.runtime.lifecycle import OciRuntime
from corral.server.route import Route

if TYPE_CHECKING:
    from corral.sandboxes import SandboxManager

log = logging.getLogger(__name__)

RUNNING = "running"
PAUSED = "paused"
PAUSING = "pausing"
RESUMING = "resuming"
# States a client sees as a live (running or paused) sandbox; mid-transition rows show what they were.
VISIBLE = (RUNNING, PAUSED, PAUSING, RESUMING)
SHOWN_AS = {PAUSING: RUNNING, RESUMING: PAUSED}
# Metadata key (in replies only) telling a client how a paused sandbox was paused.
PAUSE_MODE_KEY = "corral.pause_mode"


class Pauser:
    """One per manager; every pause/resume of a sandbox runs under that sandbox's lock."""

    def __init__(self, manager: SandboxManager) -> None:
        self.m = manager
        self._locks: dict[str, asyncio.Lock] = {}
        self._hibernator: asyncio.Task[None] | None = None
        self.last_timings: dict[str, float] = {}   # seconds of the last pause/resume at the runtime level

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def row(self, sandbox_id: str) -> SandboxRecord | None:
        with self.m.db.session() as s:
            return s.get(SandboxRecord, sandbox_id)

    def _set(self, sandbox_id: str, **values: object) -> SandboxRecord:
        with self.m.db.session() as s:
            row = s.get(SandboxRecord, sandbox_id)
            if row is None or row.state == "killed":
                # Killed while a pause/resume ran: the kill wins (its teardown waits for the runtime lock).
                raise NotFoundError(f"sandbox {sandbox_id!r} not found")
            for k, v in values.items():
                setattr(row, k, v)
        return row

    def _runtime(self, row: SandboxRecord) -> OciRuntime:
        rt = self.m.runtimes.get(row.runtime)
        if not isinstance(rt, OciRuntime):
            raise ConflictError(f"pause: the {row.runtime} runtime of sandbox {row.id} cannot pause sandboxes")
        return rt

    # ---- pause ----

    async def pause(self, sandbox_id: str, team_id: str, *, memory: bool | None = None, by: str = "api") -> None:
        """Pause a running sandbox (409 when already paused or when it cannot be checkpointed; it keeps running)."""
        self.m.get(sandbox_id, team_id, states=VISIBLE)
        async with self.lock(sandbox_id):
            row = self.row(sandbox_id)
            if row is None or row.state == "killed":
                raise NotFoundError(f"sandbox {sandbox_id!r} not found")
            if row.state != RUNNING:
                raise ConflictError(f"sandbox {sandbox_id} is already paused")
            await self.pause_locked(row, memory, by)

    def _mode(self, rt: OciRuntime, row: SandboxRecord, memory: bool | None) -> str:
        if memory is False:
            return suspend.FILESYSTEM
        blocker = rt.checkpoint_blocker(row.id)
        if blocker is None:
            return suspend.MEMORY
        if rt.name == "runc" and memory is None:
            return suspend.FILESYSTEM   # runc has no memory checkpoints: its pause is filesystem-only, and says so
        raise ConflictError(f"pause: sandbox {row.id} cannot be checkpointed: {blocker}; it keeps running")

    async def pause_locked(self, row: SandboxRecord, memory: bool | None, by: str) -> None:
        rt = self._runtime(row)
        mode = self._mode(rt, row, memory)
        sandbox_id = row.id
        routed = self.m.unroute(sandbox_id)   # new gateway requests wait for the lock (wake) instead
        self._set(sandbox_id, state=PAUSING)
        try:
            self.last_timings["pause"] = await suspend.pause(rt, sandbox_id, mode)
        except BaseException as e:
            alive = await asyncio.shield(self._alive(rt, sandbox_id))
            settled = "running" if alive else await asyncio.shield(self._settle(rt, sandbox_id))
            if settled == "paused":
                # The checkpoint was complete and only the cleanup after it failed (and is now done): paused.
                log.warning("sandbox %s: pause finished only on the second try (%s)", sandbox_id, e)
                self._set(sandbox_id, state=PAUSED, pause_mode=mode, paused_by=by, paused_at=utcnow())
                return
            if alive and routed:
                self.m.reroute(self._set(sandbox_id, state=RUNNING))
            else:
                log.error("sandbox %s died during a failed pause (%s); killing it", sandbox_id, e)
                self._set(sandbox_id, state=RUNNING)
                await self.m.kill_now(sandbox_id)
                if isinstance(e, Exception) and not isinstance(e, CorralError):
                    raise RuntimeFailure(f"pause of {sandbox_id} failed and the sandbox was lost: {e}") from e
            raise
        self._set(sandbox_id, state=PAUSED, pause_mode=mode, paused_by=by, paused_at=utcnow())
        log.info("sandbox %s paused (%s, by %s) in %.3fs", sandbox_id, mode, by, self.last_timings["pause"])

    async def _settle(self, rt: OciRuntime, sandbox_id: str) -> str:
        try:
            return await suspend.settle(rt, sandbox_id)
        except Exception:
            log.exception("sandbox %s: settling after a failed pause failed", sandbox_id)
            return "dead"

    async def _alive(self, rt: OciRuntime, sandbox_id: str) -> bool:
        try:
            return await rt.is_running(sandbox_id)
        except Exception:  # noqa: BLE001 - a runtime that cannot tell: treat the sandbox as gone
            return False

    # ---- resume ----

    async def resume(self, sandbox_id: str, team_id: str, timeout_s: int) -> tuple[SandboxRecord, bool]:
        """Running: extend its end (only) and say False. Paused: bring it back, end = now + timeout, say True."""
        self.m.get(sandbox_id, team_id, states=VISIBLE)
        async with self.lock(sandbox_id):
            row = self.row(sandbox_id)
            if row is None or row.state == "killed":
                raise NotFoundError(f"sandbox {sandbox_id!r} not found")
            if row.state == RUNNING:
                return self.m.extend(sandbox_id, team_id, timeout_s), False
            return await self.resume_locked(row, timeout_s), True

    async def resume_locked(self, row: SandboxRecord, timeout_s: int, end_at: datetime | None = None) -> SandboxRecord:
        rt = self._runtime(row)
        sandbox_id = row.id
        self._set(sandbox_id, state=RESUMING)
        try:
            self.last_timings["resume"] = await suspend.resume(rt, sandbox_id)
            if row.pause_mode == suspend.FILESYSTEM:
                await self.m.boot_agent(row, rt.handle_for(sandbox_id).socket_path)
        except BaseException:
            self._set(sandbox_id, state=PAUSED)
            raise
        row = self._set(sandbox_id, state=RUNNING, pause_mode=None, paused_by=None, paused_at=None,
                        end_at=end_at or utcnow() + timedelta(seconds=timeout_s))
        self.m.reroute(row)
        log.info("sandbox %s resumed in %.3fs", sandbox_id, self.last_timings["resume"])
        return row

    # ---- gateway, timers, hibernation ----

    async def wake(self, sandbox_id: str) -> Route | None:
        """Gateway hook for a sandbox with no route: resume it when it may be resumed by traffic, else say why not."""
        row = self.row(sandbox_id)
        if row is None or row.state not in (PAUSED, PAUSING, RESUMING):
            return None
        may_wake = row.paused_by == "hibernate" or row.auto_resume
        if not may_wake and row.state != RESUMING:
            raise ConflictError(f"The sandbox {sandbox_id} is paused; resume it with Sandbox.connect() first")
        async with self.lock(sandbox_id):
            row = self.row(sandbox_id)
            if row is None or row.state == "killed":
                return None
            if row.state == PAUSED:
                if not (row.paused_by == "hibernate" or row.auto_resume):
                    raise ConflictError(f"The sandbox {sandbox_id} is paused; resume it with Sandbox.connect() first")
                if row.pause_mode != suspend.MEMORY:
                    raise ConflictError(f"The sandbox {sandbox_id} was paused filesystem-only; resume it with "
                                        f"Sandbox.connect() (auto-resume never reboots a sandbox)")
                # Hibernated: the time it had left; paused at its timeout: a fresh default timeout.
                left = int((row.end_at - row.paused_at).total_seconds()) if row.paused_at else 0
                await self.resume_locked(row, left if left >= 15 else self.m.settings.default_timeout_s)
        return self.m.route(sandbox_id)

    def on_timeout(self, sandbox_id: str) -> bool:
        """Timer hook: True when the sandbox pauses instead of dying at its timeout (the pause runs in the background)."""
        row = self.row(sandbox_id)
        if row is None or row.on_timeout != "pause":
            return False
        self.m.spawn(self._pause_background(sandbox_id, "timeout"))
        return True

    async def _pause_background(self, sandbox_id: str, by: str) -> None:
        if by == "timeout":
            await self._wait_checkpointable(sandbox_id)
        try:
            async with self.lock(sandbox_id):
                row = self.row(sandbox_id)
                if row is not None and row.state == RUNNING:
                    await self.pause_locked(row, None, by)
        except CorralError as e:
            log.warning("sandbox %s: %s pause failed: %s", sandbox_id, by, e)
            if by == "timeout":
                await self._pause_files_or_kill(sandbox_id)

    async def _wait_checkpointable(self, sandbox_id: str, limit_s: float = 75.0, every_s: float = 2.0) -> None:
        """A timeout pause waits (the sandbox runs on meanwhile) while a checkpoint blocker may clear by itself, e.g.
        TCP endpoints in TIME_WAIT (corral/net/conntrack.py: gVisor forgets them after 60 s)."""
        row = self.row(sandbox_id)
        rt = self._runtime(row) if row is not None else None
        deadline = asyncio.get_running_loop().time() + limit_s
        while rt is not None and rt.checkpoint_blocker(sandbox_id) is not None and rt.name != "runc":
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(every_s)

    async def _pause_files_or_kill(self, sandbox_id: str) -> None:
        """The timeout pause could not keep memory: keep the files at least (a filesystem-only pause), else kill."""
        try:
            async with self.lock(sandbox_id):
                row = self.row(sandbox_id)
                if row is None or row.state != RUNNING:
                    return          # paused, killed or gone meanwhile: nothing left to decide
                await self.pause_locked(row, False, "timeout")
                log.warning("sandbox %s: paused at its timeout with its files only", sandbox_id)
                return
        except CorralError as e:
            log.warning("sandbox %s: filesystem-only pause failed too (%s); killing it", sandbox_id, e)
        row = self.row(sandbox_id)
        if row is not None and row.state == RUNNING:
            await self.m.kill_now(sandbox_id)

    def start(self) -> None:
        if self.m.settings.hibernate_after_s and self._hibernator is None:
            self._hibernator = asyncio.ensure_future(self._hibernate_loop(self.m.settings.hibernate_after_s))

    async def close(self) -> None:
        if self._hibernator is not None:
            self._hibernator.cancel()
            await asyncio.gather(self._hibernator, return_exceptions=True)
            self._hibernator = None

    async def _hibernate_loop(self, idle_s: float) -> None:
        while True:
            await asyncio.sleep(min(5.0, idle_s / 4))
            now = time.monotonic()
            for sandbox_id in self.m.idle_since(now - idle_s):
                row = self.row(sandbox_id)
                if row is None or row.state != RUNNING:
                    continue
                rt = self.m.runtimes.get(row.runtime)
                if isinstance(rt, OciRuntime) and rt.checkpoint_blocker(sandbox_id) is None:
                    await self._pause_background(sandbox_id, "hibernate")

    # ---- server start ----

    async def reconcile(self, row: SandboxRecord) -> str:
        """A paused or mid-transition row at server start: settle the runtime and the row on one state."""
        rt = self.m.runtimes.get(row.runtime)
        if not isinstance(rt, OciRuntime):
            return "dead"
        try:
            state = await suspend.settle(rt, row.id)
        except Exception:
            log.exception("sandbox %s: could not settle its pause state", row.id)
            return "dead"
        if state == "paused":
            mode = row.pause_mode or (suspend.paused_info(rt.layout_of(row.id)) or suspend.PausedInfo("", "")).mode
            self._set(row.id, state=PAUSED, pause_mode=mode, paused_by=row.paused_by or "api",
                      paused_at=row.paused_at or utcnow())
        elif state == "running":
            self._set(row.id, state=RUNNING, pause_mode=None, paused_by=None, paused_at=None)
        log.info("sandbox %s was %s at the last stop; now %s", row.id, row.state, state)
        return state
