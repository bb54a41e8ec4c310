"""runc backend: the fast, weaker tier (host kernel exposed; Docker-like caps, masked paths and a seccomp denylist)."""

from __future__ import annotations

import json
import os

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.runtime import cgroups, procs
from corral.runtime.base import SandboxSpec
from corral.runtime.layout import SandboxLayout
from corral.runtime.lifecycle import READY_TIMEOUT_S, OciRuntime, kill_and_wait, pid_gone, run_detached
from corral.runtime.procs import run_cmd


class RuncRuntime(OciRuntime):
    """Each sandbox is a runc container (fresh pid/ipc/uts/mount/net namespaces, cgroup v1 limits)."""

    name = "runc"
    hardened = True

    def __init__(self, settings: Settings, ready_timeout: float = READY_TIMEOUT_S) -> None:
        super().__init__(settings, ready_timeout)
        self.root = settings.runc_root

    def _runc(self, *args: str) -> list[str]:
        # `--root=` as one argument: procs.find matches it.
        return [self.settings.runc_binary, f"--root={self.root}", *args]

    async def _start(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = self._runc("run", "--detach", f"--bundle={lay.bundle}", spec.sandbox_id)
        await run_detached(argv, lay.agent_log, self.ready_timeout)

    def _init_pid(self, sandbox_id: str) -> int | None:
        try:
            state = json.loads((self.root / sandbox_id / "state.json").read_text())
            return int(state["init_process_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def _kill(self, sandbox_id: str) -> None:
        # Freeze first so nothing forks between reading cgroup.procs and SIGKILL (a fork bomb cannot outrun us).
        freezer = cgroups.hierarchies().get("freezer")
        fdir = freezer / cgroups.cgroups_path(sandbox_id).lstrip("/") if freezer else None
        frozen = False
        if fdir is not None and fdir.is_dir():
            try:
                (fdir / "freezer.state").write_text("FROZEN")
                frozen = True
            except OSError:
                pass
        victims = cgroups.pids(sandbox_id) | set(procs.find(self.root, sandbox_id, "runc"))
        init = self._init_pid(sandbox_id)
        if init is not None and not pid_gone(init):
            victims.add(init)
        for pid in victims:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if frozen:
            # SIGKILL is delivered once thawed.
            try:
                (fdir / "freezer.state").write_text("THAWED")  # type: ignore[operator]
            except OSError:
                pass
        await kill_and_wait(victims)

    async def _delete_state(self, sandbox_id: str) -> None:
        if not (self.root / sandbox_id).exists():
            return
        rc, out = await run_cmd(*self._runc("delete", "--force", sandbox_id))
        if rc != 0 and (self.root / sandbox_id).exists():
            raise RuntimeFailure(f"runc delete {sandbox_id} failed: {out}")

    async def _state_ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root) if (self.root / n).is_dir())
        except FileNotFoundError:
            return []

    def exec_argv(self, sandbox_id: str, argv: list[str]) -> list[str]:
        return self._runc("exec", sandbox_id, *argv)

    async def _running(self, sandbox_id: str) -> bool:
        pid = self._init_pid(sandbox_id)
        return pid is not None and not pid_gone(pid) and pid in cgroups.pids(sandbox_id)
