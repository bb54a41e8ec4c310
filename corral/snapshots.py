"""Snapshots (a sandbox's memory image + writable layer) that new sandboxes start from, and fork (N at once)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from corral.db import SandboxRecord, SnapshotRecord
from corral.db.models import utcnow
from corral.errors import ConflictError, CorralError, InvalidRequestError, NotFoundError, RuntimeFailure
from corral.ids import new_access_token, new_sandbox_id
from corral.pausing import PAUSED, RUNNING
from corral.runtime import suspend
from corral.runtime.base import SandboxSpec
from corral.runtime.layout import copy_layer_file
from corral.runtime.lifecycle import OciRuntime
from corral.server.agent_calls import init_agent

if TYPE_CHECKING:
    from corral.sandboxes import CreateRequest, SandboxManager

log = logging.getLogger(__name__)

MAX_FORKS = 100


class Snapshots:
    """Capture, list, delete snapshots; start sandboxes from them. Snapshot files: <data_dir>/snapshots/<id>/."""

    def __init__(self, manager: SandboxManager) -> None:
        self.m = manager
        self.last_timings: dict[str, float] = {}

    @property
    def base(self) -> Path:
        return self.m.settings.data_dir / "snapshots"

    def _dir(self, snapshot_id: str) -> Path:
        return self.base / snapshot_id

    # ---- capture ----

    async def capture(self, sandbox_id: str, team_id: str, name: str | None = None, *,
                      hidden: bool = False) -> SnapshotRecord:
        """Checkpoint the sandbox in place (a running one is paused and resumed, keeping its id and end)."""
        self.m.get(sandbox_id, team_id, states=(RUNNING, PAUSED))
        pauser = self.m.pauser
        async with pauser.lock(sandbox_id):
            row = pauser.row(sandbox_id)
            if row is None or row.state not in (RUNNING, PAUSED):
                raise ConflictError(f"sandbox {sandbox_id} is changing state; try again")
            rt = self.m.runtimes.get(row.runtime)
            if not isinstance(rt, OciRuntime) or rt.checkpoint_blocker(sandbox_id) is not None:
                why = rt.checkpoint_blocker(sandbox_id) if isinstance(rt, OciRuntime) else "no checkpoints"
                raise ConflictError(f"snapshot: sandbox {sandbox_id} cannot be checkpointed: {why}")
            if row.state == PAUSED and row.pause_mode != suspend.MEMORY:
                raise ConflictError(f"snapshot: sandbox {sandbox_id} was paused filesystem-only; resume it first")
            was_running = row.state == RUNNING
            end_at = row.end_at
            started = time.perf_counter()
            if was_running:
                await pauser.pause_locked(row, True, "snapshot")
            try:
                snap = await self._copy(rt, row, name, hidden)
            finally:
                if was_running:
                    paused = pauser.row(sandbox_id)
                    if paused is not None and paused.state == PAUSED:
                        await pauser.resume_locked(paused, 1, end_at=end_at)
            self.last_timings["capture"] = time.perf_counter() - started
        log.info("snapshot %s of sandbox %s taken in %.3fs", snap.id, sandbox_id, self.last_timings["capture"])
        return snap

    async def _copy(self, rt: OciRuntime, row: SandboxRecord, name: str | None, hidden: bool) -> SnapshotRecord:
        info = suspend.paused_info(rt.layout_of(row.id))
        if info is None:
            raise RuntimeFailure(f"sandbox {row.id} has no pause record")
        snapshot_id = "snap" + new_sandbox_id()[4:]
        final = self._dir(snapshot_id)
        tmp = final.with_name(final.name + ".tmp")
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            tmp.mkdir()
            await asyncio.to_thread(shutil.copytree, suspend.image_dir(rt, row.id), tmp / "image")
            await copy_layer_file(rt.layout_of(row.id).layer_img, tmp / "layer.img")
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        snap = SnapshotRecord(
            id=snapshot_id, team_id=row.team_id, name=name, source_sandbox_id=row.id, template_id=row.template_id,
            alias=row.alias, runtime=row.runtime, cpu_count=row.cpu_count, memory_mb=row.memory_mb,
            disk_mb=row.disk_mb, lowerdir=info.lowerdir, env_vars=dict(row.env_vars or {}),
            envd_access_token=row.envd_access_token, hidden=hidden, created_at=utcnow())
        with self.m.db.session() as s:
            s.add(snap)
        return snap

    def sweep(self) -> None:
        """Server start: drop half-copied snapshots (a crash mid-capture) and files no row names."""
        with self.m.db.session() as s:
            # A fork's own snapshot lives only during the fork: one left by a crash is dropped.
            s.execute(delete(SnapshotRecord).where(SnapshotRecord.hidden.is_(True)))
            known = set(s.scalars(select(SnapshotRecord.id)))
        for d in self.base.iterdir() if self.base.is_dir() else []:
            if d.name not in known:
                log.info("removing leftover snapshot files %s", d)
                shutil.rmtree(d, ignore_errors=True)

    # ---- queries ----

    def find(self, team_id: str, id_or_name: str) -> SnapshotRecord | None:
        """A listed snapshot of the team by id or name (the newest of that name)."""
        with self.m.db.session() as s:
            rows = list(s.scalars(select(SnapshotRecord).where(
                SnapshotRecord.team_id == team_id, SnapshotRecord.hidden.is_(False),
                (SnapshotRecord.id == id_or_name) | (SnapshotRecord.name == id_or_name))))
        return max(rows, key=lambda r: r.created_at) if rows else None

    def listed(self, team_id: str, sandbox_id: str | None = None, name: str | None = None) -> list[SnapshotRecord]:
        with self.m.db.session() as s:
            q = select(SnapshotRecord).where(SnapshotRecord.team_id == team_id, SnapshotRecord.hidden.is_(False))
            if sandbox_id:
                q = q.where(SnapshotRecord.source_sandbox_id == sandbox_id)
            if name:
                q = q.where((SnapshotRecord.id == name) | (SnapshotRecord.name == name))
            return sorted(s.scalars(q), key=lambda r: (r.created_at, r.id))

    async def delete(self, team_id: str, id_or_name: str) -> None:
        snap = self.find(team_id, id_or_name)
        if snap is None:
            raise NotFoundError(f"snapshot {id_or_name!r} not found")
        await self._drop(snap.id)

    async def _drop(self, snapshot_id: str) -> None:
        with self.m.db.session() as s:
            row = s.get(SnapshotRecord, snapshot_id)
            if row is not None:
                s.delete(row)
        # Sandboxes restored from it keep running: their layers are copies, and open image files outlive unlink.
        await asyncio.to_thread(shutil.rmtree, self._dir(snapshot_id), True)

    # ---- start ----

    async def start(self, req: CreateRequest, snap: SnapshotRecord, restore_dir: Path | None = None) -> SandboxRecord:
        """A new sandbox from a snapshot: its own copy of the layer, the memory image restored under its own id."""
        self.m.check_timeout(req.timeout_s)
        rt = self.m.runtimes.get(snap.runtime)
        if not isinstance(rt, OciRuntime):
            raise ConflictError(f"snapshot {snap.id}: runtime {snap.runtime} is not available")
        sandbox_id = new_sandbox_id()
        spec = SandboxSpec(sandbox_id=sandbox_id, template_rootfs=Path(snap.lowerdir), cpu_count=snap.cpu_count,
                           memory_mb=snap.memory_mb, disk_mb=snap.disk_mb,
                           restore_from=restore_dir or self._dir(snap.id))
        envd_token = new_access_token() if req.secure else None
        started = time.perf_counter()
        try:
            handle = await rt.create(spec)
            # The restored agent holds the source's token and env: give it this sandbox's own.
            if self.m.network is not None and self.m.network.has_network(handle.sandbox_dir):
                await self.m.network.apply(sandbox_id, handle.sandbox_dir, req.egress)
            await init_agent(handle.socket_path, {"accessToken": envd_token or "", "envVars": dict(req.env_vars)},
                             current_token=snap.envd_access_token)
            now = utcnow()
            record = SandboxRecord(
                id=sandbox_id, team_id=req.team_id, template_id=snap.template_id, alias=snap.alias,
                runtime=snap.runtime, state=RUNNING, cpu_count=snap.cpu_count, memory_mb=snap.memory_mb,
                disk_mb=snap.disk_mb, metadata_=dict(req.metadata), secure=req.secure, envd_access_token=envd_token,
                traffic_access_token=new_access_token() if req.require_traffic_token else None,
                allow_internet_access=req.allow_internet_access, network=req.egress.to_json(), started_at=now,
                end_at=now + timedelta(seconds=req.timeout_s), on_timeout=req.on_timeout,
                auto_resume=req.auto_resume, env_vars={**(snap.env_vars or {}), **req.env_vars})
            self.m.adopt(record, handle.socket_path)
        except BaseException as e:
            if self.m.network is not None:
                self.m.network.forget(sandbox_id)
            await asyncio.shield(self.m.destroy_now(snap.runtime, sandbox_id))
            if isinstance(e, CorralError) or not isinstance(e, Exception):
                raise
            raise RuntimeFailure(f"could not start sandbox from snapshot {snap.id}: {e}") from e
        self.last_timings["start"] = time.perf_counter() - started
        log.info("sandbox %s started from snapshot %s in %.3fs", sandbox_id, snap.id, self.last_timings["start"])
        return record

    async def fork(self, sandbox_id: str, team_id: str, count: int, timeout_s: int) -> list[SandboxRecord | CorralError]:
        """`count` new sandboxes from the sandbox's current state (captured once); each succeeds or fails alone."""
        from corral.sandboxes import CreateRequest

        if not 1 <= count <= MAX_FORKS:
            raise InvalidRequestError(f"count: must be between 1 and {MAX_FORKS}, got {count}")
        self.m.check_timeout(timeout_s)
        source = self.m.get(sandbox_id, team_id, states=(RUNNING, PAUSED))
        snap = await self.capture(sandbox_id, team_id, hidden=True)
        results: list[SandboxRecord | CorralError] = []
        try:
            req = CreateRequest(team_id=team_id, template=snap.id, timeout_s=timeout_s,
                                metadata=dict(source.metadata_ or {}), secure=source.secure,
                                allow_internet_access=source.allow_internet_access,
                                require_traffic_token=source.traffic_access_token is not None)
            # One after another: every restore is CPU-bound on the same few cores anyway.
            for _ in range(count):
                try:
                    results.append(await self.start(req, snap))
                except CorralError as e:
                    log.warning("fork of %s: one copy failed: %s", sandbox_id, e)
                    results.append(e)
        finally:
            await self._drop(snap.id)
        return results
