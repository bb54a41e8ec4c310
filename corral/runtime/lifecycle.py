"""The create/destroy skeleton shared by the OCI backends (runsc, runc); subclasses only start, kill and delete."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from abc import ABC, abstractmethod
from pathlib import Path

from corral.config import Settings
from corral.errors import ConflictError, InvalidRequestError, RuntimeFailure
from corral.ids import is_sandbox_id
from corral.net.attach import attach, detach
from corral.runtime import cgroups, layout, oci
from corral.runtime.base import RuntimeHandle, SandboxSpec
from corral.runtime.health import wait_ready
from corral.runtime.layout import SandboxLayout
from corral.runtime.procs import reaped, run_cmd

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 15.0
LOG_TAIL_BYTES = 4000


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def pid_gone(pid: int) -> bool:
    """True when `pid` no longer exists or is a zombie (its resources are already released)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


async def kill_and_wait(pids: set[int], timeout: float = 5.0) -> None:
    """SIGKILL `pids` and wait until every one is gone (so mounts and cgroups they hold can be released)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while not all(pid_gone(p) for p in pids):
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"processes {sorted(p for p in pids if not pid_gone(p))} survived SIGKILL")
        await asyncio.sleep(0.002)


async def run_detached(argv: list[str], log_path: Path, timeout: float) -> None:
    """Run `<runtime> run --detach ...` with stdin /dev/null and stdout+stderr appended to `log_path`.

    With terminal=false the container's init inherits these fds, so agent.log outlives any server process.
    """
    # Opening /dev/null and a local log file never blocks for long: not worth a thread hop.
    with open(os.devnull, "rb") as stdin, open(log_path, "ab") as logf:  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=logf, stderr=logf)
        try:
            # On timeout or cancellation the CLI is stopped so it spawns nothing more; what it already spawned is
            # found by the rollback (cgroup members + /proc scan).
            rc = await reaped(proc, proc.wait(), timeout)
        except TimeoutError:
            raise RuntimeFailure(f"{' '.join(argv[:1] + argv[-3:])} timed out; log:\n{log_tail(log_path)}") from None
    if rc != 0:
        raise RuntimeFailure(f"{' '.join(argv[:1] + argv[-3:])} exited {rc}; log:\n{log_tail(log_path)}")


class OciRuntime(ABC):
    """Layer + overlay + bundle + `<runtime> run --detach` + readiness; destroy = kill, delete, cgroups, unmount, rm."""

    name: str
    hardened: bool          # runc tier: caps/masked paths/seccomp matter because the host kernel is exposed

    def __init__(self, settings: Settings, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.settings = settings
        self.ready_timeout = ready_timeout
        # Per-step seconds of the last successful create and destroy (for benchmarks and logs).
        self.last_create_timings: dict[str, float] = {}
        self.last_destroy_timings: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- backend hooks ---------------------------------------------------------------------------------------

    @abstractmethod
    async def _start(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        """Start the container detached from bundle/, stdio: /dev/null -> agent.log."""

    @abstractmethod
    async def _kill(self, sandbox_id: str) -> None:
        """SIGKILL every host process of the sandbox and wait until they are gone."""

    @abstractmethod
    async def _delete_state(self, sandbox_id: str) -> None:
        """Drop the runtime's own state for the id (must succeed when it has none)."""

    @abstractmethod
    async def _state_ids(self) -> list[str]:
        """Ids the runtime's --root has state for."""

    @abstractmethod
    async def _running(self, sandbox_id: str) -> bool:
        """True when the container's processes are alive."""

    @abstractmethod
    def exec_argv(self, sandbox_id: str, argv: list[str]) -> list[str]:
        """The host command that runs `argv` inside the sandbox as root (`runsc exec` / `runc exec`)."""

    async def exec_cmd(self, sandbox_id: str, argv: list[str], timeout: float = 30.0) -> tuple[int, str]:
        """Break-glass: run `argv` in the sandbox without the agent; returns (exit code, stdout+stderr).
        Never use it on gVisor sandboxes you will checkpoint (the exec'd process holds host fds)."""
        self._layout(sandbox_id)
        return await run_cmd(*self.exec_argv(sandbox_id, argv), timeout=timeout)

    # --- pause/resume hooks (corral/runtime/suspend.py) -------------------------------------------------------

    def checkpoint_blocker(self, sandbox_id: str) -> str | None:
        """Why this sandbox's memory cannot be checkpointed, or None when it can (the one predicate pause asks)."""
        return f"the {self.name} tier cannot checkpoint memory (pause it with mode 'filesystem')"

    def signal_argv(self, sandbox_id: str, sig: str) -> list[str]:
        """The host command that sends `sig` (e.g. "USR1") to the sandbox's init (the agent)."""
        raise NotImplementedError

    def checkpoint_argv(self, sandbox_id: str, image_dir: Path) -> list[str]:
        raise NotImplementedError

    def restore_argv(self, sandbox_id: str, image_dir: Path, lay: SandboxLayout) -> list[str]:
        raise NotImplementedError

    def before_first_create(self) -> None:
        """Host set-up a backend needs before any sandbox of it mounts anything (called on every create: cheap)."""

    async def before_restore(self, lay: SandboxLayout) -> None:
        """Host-side preparation a memory restore needs (e.g. the netns as runsc expects it)."""

    async def start_again(self, sandbox_id: str, lay: SandboxLayout) -> None:
        """Cold-boot a stopped sandbox from its existing bundle and mounted rootfs (filesystem-only resume)."""
        await self._start(SandboxSpec(sandbox_id=sandbox_id, template_rootfs=lay.rootfs), lay)

    async def _restore_clone(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        """Start from a snapshot's memory image under this new id; the image's agent is quiesced: re-listen."""
        assert spec.restore_from is not None
        await self.before_restore(lay)
        await run_detached(self.restore_argv(spec.sandbox_id, spec.restore_from / "image", lay), lay.agent_log,
                           self.ready_timeout)
        rc, out = await run_cmd(*self.signal_argv(spec.sandbox_id, "USR2"), timeout=10)
        if rc != 0:
            raise RuntimeFailure(f"sandbox {spec.sandbox_id}: could not wake the restored agent: {out}")

    def layout_of(self, sandbox_id: str) -> SandboxLayout:
        return self._layout(sandbox_id)

    def lock_of(self, sandbox_id: str) -> asyncio.Lock:
        return self._lock(sandbox_id)

    async def kill_processes(self, sandbox_id: str) -> None:
        await self._kill(sandbox_id)

    async def delete_runtime_state(self, sandbox_id: str) -> None:
        await self._delete_state(sandbox_id)

    async def is_running(self, sandbox_id: str) -> bool:
        return await self._running(sandbox_id)

    # --- Runtime protocol ------------------------------------------------------------------------------------

    def _layout(self, sandbox_id: str) -> SandboxLayout:
        if not is_sandbox_id(sandbox_id):
            # Also guards the path joins below against traversal.
            raise InvalidRequestError(f"bad sandbox id {sandbox_id!r}")
        return SandboxLayout.of(self.settings.sandboxes_dir, sandbox_id)

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def handle_for(self, sandbox_id: str) -> RuntimeHandle:
        lay = self._layout(sandbox_id)
        return RuntimeHandle(sandbox_id=sandbox_id, runtime=self.name, socket_path=lay.socket_path, sandbox_dir=lay.dir)

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        lay = self._layout(spec.sandbox_id)
        async with self._lock(spec.sandbox_id):
            self.settings.sandboxes_dir.mkdir(parents=True, exist_ok=True)
            self.before_first_create()
            try:
                lay.dir.mkdir()
            except FileExistsError:
                raise ConflictError(f"sandbox {spec.sandbox_id} already exists") from None
            timings: dict[str, float] = {}
            t = time.perf_counter()

            def step(name: str) -> None:
                nonlocal t
                now = time.perf_counter()
                timings[name] = now - t
                t = now

            try:
                lay.marker.write_text(self.name)
                lay.run.mkdir(mode=0o700)
                os.chmod(lay.run, 0o700)        # mkdir's mode is masked by the umask
                if not self.settings.agent_binary.is_file():
                    raise RuntimeFailure(f"agent binary {self.settings.agent_binary} is missing")
                if spec.restore_from is not None:
                    await layout.copy_layer(lay, spec.restore_from / "layer.img")
                else:
                    await layout.create_layer(lay, spec.disk_mb)
                step("layer")
                layout.mount_rootfs(lay, Path(spec.template_rootfs), oci.MOUNTPOINTS)
                step("overlay")
                spec, netns_path = await attach(self.settings, lay, spec)
                step("network")
                oci.write_bundle(spec, lay, self.settings.agent_binary, self.hardened, netns_path)
                step("bundle")
                if spec.restore_from is not None:
                    await self._restore_clone(spec, lay)
                else:
                    await self._start(spec, lay)
                step("start")
                ready = await wait_ready(
                    lay.socket_path, self.ready_timeout, lambda: bool(cgroups.pids(spec.sandbox_id))
                )
                step("ready")
                if not ready:
                    alive = await self._running(spec.sandbox_id)
                    why = "agent did not answer GET /health" if alive else "sandbox exited"
                    raise RuntimeFailure(
                        f"{self.name} sandbox {spec.sandbox_id}: {why} within {self.ready_timeout}s; "
                        f"agent.log tail:\n{log_tail(lay.agent_log)}"
                    )
            except BaseException as e:
                tail = log_tail(lay.agent_log)
                try:
                    await asyncio.shield(self._destroy_locked(spec.sandbox_id))
                except Exception as cleanup_err:  # noqa: BLE001 - report both, keep the original
                    log.error("rollback of %s failed: %s", spec.sandbox_id, cleanup_err)
                if isinstance(e, RuntimeFailure):
                    raise
                if isinstance(e, Exception):
                    raise RuntimeFailure(f"{self.name} create {spec.sandbox_id} failed: {e}\n{tail}") from e
                raise
            self.last_create_timings = timings
            log.debug("%s create %s: %s", self.name, spec.sandbox_id, timings)
            return self.handle_for(spec.sandbox_id)

    async def destroy(self, sandbox_id: str) -> None:
        self._layout(sandbox_id)
        async with self._lock(sandbox_id):
            await self._destroy_locked(sandbox_id)
        self._locks.pop(sandbox_id, None)

    async def _destroy_locked(self, sandbox_id: str) -> None:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        await self._kill(sandbox_id)
        timings["kill"] = time.perf_counter() - t
        await self._delete_state(sandbox_id)
        timings["delete"] = time.perf_counter() - timings["kill"] - t
        t1 = time.perf_counter()
        await detach(self.settings, self._layout(sandbox_id))
        timings["network"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        await cgroups.remove(sandbox_id)
        timings["cgroups"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        await layout.teardown(self._layout(sandbox_id))
        # A paused sandbox's checkpoint image (corral/runtime/suspend.py) goes with it.
        shutil.rmtree(self.settings.checkpoints_dir / sandbox_id, ignore_errors=True)
        timings["teardown"] = time.perf_counter() - t1
        self.last_destroy_timings = timings

    async def is_alive(self, sandbox_id: str) -> bool:
        self._layout(sandbox_id)
        return await self._running(sandbox_id)

    async def list_sandbox_ids(self) -> list[str]:
        ids = {i for i in await self._state_ids() if is_sandbox_id(i)}
        try:
            entries = list(self.settings.sandboxes_dir.iterdir())
        except FileNotFoundError:
            entries = []
        for d in entries:
            if not (d.is_dir() and is_sandbox_id(d.name)):
                continue
            owner = SandboxLayout(d).owner()
            # No marker = crashed right after mkdir: either backend may clean it.
            if owner in (None, self.name):
                ids.add(d.name)
        return sorted(ids)
