"""Pause and resume at the runtime level: gVisor memory checkpoints (runsc checkpoint/restore) and filesystem-only
pauses (any OCI backend); a paused sandbox keeps only layer.img, its bundle and (gVisor) its checkpoint image."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ConflictError, RuntimeFailure, StorageFullError
from corral.runtime import cgroups, layout, procs
from corral.runtime.health import wait_ready
from corral.runtime.layout import SandboxLayout
from corral.runtime.lifecycle import OciRuntime, log_tail, run_detached
from corral.runtime.procs import run_cmd

log = logging.getLogger(__name__)

MEMORY = "memory"          # processes and memory kept (gVisor checkpoint)
FILESYSTEM = "filesystem"  # files kept, processes lost: resume cold-boots the sandbox
PAUSED_FILE = "paused.json"  # in the sandbox dir: {"mode", "lowerdir"}; present = the sandbox is paused
COMPLETE_FILE = "complete"   # in the image dir, written last: an image without it is never restored
QUIESCE_TIMEOUT_S = 5.0
# A checkpoint image is about the sandbox's memory; keep this much more free than the cgroup's usage (or fail 507).
FREE_SPACE_MARGIN = 1.2
FREE_SPACE_MIN = 64 << 20


@dataclass(frozen=True)
class PausedInfo:
    mode: str
    lowerdir: str


def image_dir(rt: OciRuntime, sandbox_id: str) -> Path:
    return rt.settings.checkpoints_dir / sandbox_id


def image_complete(rt: OciRuntime, sandbox_id: str) -> bool:
    return (image_dir(rt, sandbox_id) / COMPLETE_FILE).exists()


def paused_info(lay: SandboxLayout) -> PausedInfo | None:
    """What pause recorded, or None when the sandbox is not (fully) paused."""
    try:
        raw = json.loads((lay.dir / PAUSED_FILE).read_text())
        return PausedInfo(mode=str(raw["mode"]), lowerdir=str(raw["lowerdir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    # Atomic against a killed server (rename); no fsync: it can stall the event loop for seconds on a busy disk,
    # and the crash this guards against is the server's, not the host's (the page cache survives it).
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _memory_bytes(sandbox_id: str) -> int:
    for d in cgroups.dirs(sandbox_id):
        p = d / "memory.usage_in_bytes"
        if p.exists():
            try:
                return int(p.read_text())
            except (OSError, ValueError):
                pass
    return 0


def check_free_space(rt: OciRuntime, sandbox_id: str) -> None:
    """Refuse a checkpoint that cannot fit before touching the sandbox (a failed checkpoint can kill it)."""
    base = rt.settings.checkpoints_dir
    base.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(base)
    free = st.f_bavail * st.f_frsize
    need = max(FREE_SPACE_MIN, int(_memory_bytes(sandbox_id) * FREE_SPACE_MARGIN))
    if free < need:
        raise StorageFullError(
            f"pause: not enough disk for the checkpoint image in {base}: {free >> 20} MiB free, about "
            f"{need >> 20} MiB needed; the sandbox keeps running")


async def _signal(rt: OciRuntime, sandbox_id: str, sig: str) -> None:
    rc, out = await run_cmd(*rt.signal_argv(sandbox_id, sig), timeout=10)
    if rc != 0:
        raise RuntimeFailure(f"signal {sig} to sandbox {sandbox_id} failed: {out}")


async def _quiesce(rt: OciRuntime, sandbox_id: str, lay: SandboxLayout) -> None:
    """SIGUSR1: the agent closes its host socket (a bound host UDS cannot be checkpointed) and removes the file."""
    await _signal(rt, sandbox_id, "USR1")
    deadline = time.monotonic() + QUIESCE_TIMEOUT_S
    while lay.socket_path.exists():
        if time.monotonic() > deadline:
            await _relisten(rt, sandbox_id, lay)
            raise RuntimeFailure(f"sandbox {sandbox_id}: agent did not close its socket; pause abandoned")
        await asyncio.sleep(0.002)


async def _relisten(rt: OciRuntime, sandbox_id: str, lay: SandboxLayout) -> None:
    await _signal(rt, sandbox_id, "USR2")
    if not await wait_ready(lay.socket_path, rt.ready_timeout):
        raise RuntimeFailure(f"sandbox {sandbox_id}: agent did not listen again; log:\n{log_tail(lay.agent_log)}")


async def _stop_and_unmount(rt: OciRuntime, sandbox_id: str, lay: SandboxLayout) -> None:
    """Free processes, runtime state, cgroups and mounts; layer.img and the bundle stay."""
    await rt.kill_processes(sandbox_id)
    await rt.delete_runtime_state(sandbox_id)
    await cgroups.remove(sandbox_id)
    await layout.unmount_layers(lay)
    await layout.wait_released(lay.layer_img)   # paused = layer.img quiet on disk (copyable, remountable)


async def pause(rt: OciRuntime, sandbox_id: str, mode: str) -> float:
    """Pause a running sandbox; returns seconds taken. On failure before the point of no return it keeps running."""
    lay = rt.layout_of(sandbox_id)
    async with rt.lock_of(sandbox_id):
        started = time.perf_counter()
        lowerdir = layout.overlay_lowerdir(lay.rootfs)
        if lowerdir is None:
            raise RuntimeFailure(f"sandbox {sandbox_id}: rootfs overlay is not mounted")
        img = image_dir(rt, sandbox_id)
        if mode == MEMORY:
            blocker = rt.checkpoint_blocker(sandbox_id)
            if blocker:
                raise ConflictError(f"pause: sandbox {sandbox_id} cannot be checkpointed: {blocker}")
            check_free_space(rt, sandbox_id)
            shutil.rmtree(img, ignore_errors=True)
            img.mkdir(parents=True)
            # The intent first: if the server dies from here on, settle() decides by the image's COMPLETE marker.
            _write_atomic(lay.dir / PAUSED_FILE, json.dumps({"mode": mode, "lowerdir": lowerdir}))
            try:
                await _quiesce(rt, sandbox_id, lay)
            except BaseException:
                (lay.dir / PAUSED_FILE).unlink(missing_ok=True)
                raise
            # The marker is written by the same shell that ran the checkpoint, so it appears even if we die.
            argv = ["/bin/sh", "-c", '"$@" && : > "$0"', str(img / COMPLETE_FILE),
                    *rt.checkpoint_argv(sandbox_id, img)]
            rc, out = await run_cmd(*argv, timeout=120)
            if rc != 0 or not image_complete(rt, sandbox_id):
                (lay.dir / PAUSED_FILE).unlink(missing_ok=True)
                shutil.rmtree(img, ignore_errors=True)
                alive = await rt.is_running(sandbox_id)
                if alive:
                    try:
                        await _relisten(rt, sandbox_id, lay)
                    except RuntimeFailure as e:   # the Sentry died with the checkpoint: report why it failed
                        log.warning("sandbox %s: no agent after a failed checkpoint: %s", sandbox_id, e)
                        alive = False
                log.warning("sandbox %s: runsc checkpoint failed (exit %s):\n%s", sandbox_id, rc, out[-8000:])
                nospace = "no space" in out.lower()
                msg = (f"pause: checkpoint of {sandbox_id} failed: {out[-500:]}; "
                       + ("the sandbox keeps running" if alive else "the sandbox did not survive it"))
                if nospace and alive:
                    raise StorageFullError(msg)
                raise RuntimeFailure(msg)
        else:
            # Recorded before anything is stopped: from here on a crash settles to "paused" (settle()).
            _write_atomic(lay.dir / PAUSED_FILE, json.dumps({"mode": mode, "lowerdir": lowerdir}))
        await _stop_and_unmount(rt, sandbox_id, lay)
        return time.perf_counter() - started


async def resume(rt: OciRuntime, sandbox_id: str) -> float:
    """Bring a paused sandbox back (restore its memory image, or cold-boot it on its files); seconds taken."""
    lay = rt.layout_of(sandbox_id)
    async with rt.lock_of(sandbox_id):
        started = time.perf_counter()
        info = paused_info(lay)
        if info is None:
            raise RuntimeFailure(f"sandbox {sandbox_id} has no pause record; cannot resume it")
        img = image_dir(rt, sandbox_id)
        if info.mode == MEMORY and not image_complete(rt, sandbox_id):
            raise RuntimeFailure(f"sandbox {sandbox_id}: checkpoint image {img} is incomplete")
        try:
            if not layout.is_mountpoint(lay.layer):
                await layout.mount_layer(lay)
            if not layout.is_mountpoint(lay.rootfs):
                layout.mount_rootfs(lay, Path(info.lowerdir), [])
            lay.socket_path.unlink(missing_ok=True)
            if info.mode == MEMORY:
                await rt.before_restore(lay)
                await run_detached(rt.restore_argv(sandbox_id, img, lay), lay.agent_log, rt.ready_timeout)
                await _relisten(rt, sandbox_id, lay)
            else:
                await rt.start_again(sandbox_id, lay)
                if not await wait_ready(lay.socket_path, rt.ready_timeout):
                    raise RuntimeFailure(f"sandbox {sandbox_id}: agent did not start; log:\n{log_tail(lay.agent_log)}")
        except BaseException:
            # Back to a clean paused state: the image and layer.img are untouched, so resume can be retried.
            await asyncio.shield(_stop_and_unmount(rt, sandbox_id, lay))
            raise
        (lay.dir / PAUSED_FILE).unlink(missing_ok=True)
        shutil.rmtree(img, ignore_errors=True)
        return time.perf_counter() - started


async def settle(rt: OciRuntime, sandbox_id: str) -> str:
    """After a crash mid pause/resume: make the runtime state whole again; returns "running", "paused" or "dead"."""
    lay = rt.layout_of(sandbox_id)
    async with rt.lock_of(sandbox_id):
        await _wait_cli_done(rt, sandbox_id)
        info = paused_info(lay)
        restorable = info is not None and (info.mode == FILESYSTEM or image_complete(rt, sandbox_id))
        if await rt.is_running(sandbox_id):
            try:
                if not lay.socket_path.exists():
                    # Quiesced but not checkpointed, or restored but not re-listened yet.
                    await _relisten(rt, sandbox_id, lay)
            except RuntimeFailure:
                if not restorable:
                    return "dead"
            else:
                (lay.dir / PAUSED_FILE).unlink(missing_ok=True)
                shutil.rmtree(image_dir(rt, sandbox_id), ignore_errors=True)
                return "running"
        if restorable and lay.layer_img.exists():
            await _stop_and_unmount(rt, sandbox_id, lay)
            return "paused"
        return "dead"


async def _wait_cli_done(rt: OciRuntime, sandbox_id: str, timeout: float = 120.0) -> None:
    """A crashed server's `checkpoint`/`restore` child lives on: let it finish before judging the sandbox."""
    root = getattr(rt, "root", None)
    if root is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The runsc CLI and the shell wrapping a checkpoint (it writes the COMPLETE marker after).
        busy = [pid for pid, argv in procs.find(root, sandbox_id, "").items()
                if not os.path.basename(argv[0]).startswith("runsc-") and ("checkpoint" in argv or "restore" in argv)]
        if not busy:
            return
        await asyncio.sleep(0.05)


def disk_bytes(rt: OciRuntime, sandbox_id: str) -> int:
    """Host disk a paused sandbox holds (allocated blocks of its files, sparse layer.img included)."""
    return allocated_bytes([rt.layout_of(sandbox_id).dir, image_dir(rt, sandbox_id)])


def allocated_bytes(paths: list[Path]) -> int:
    """Disk blocks allocated to every file under `paths` (what sparse files really cost)."""
    total = 0
    for top in paths:
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
    return total
