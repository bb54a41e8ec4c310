"""gVisor backend: runsc (ptrace/systrap) with a host overlay rootfs, gVisor's netstack in the sandbox's netns
(--network=sandbox; --network=none when networking is off) and a host-backed agent socket."""

from __future__ import annotations

import os
from pathlib import Path

from corral.config import Settings
from corral.net import netns
from corral.net.conntrack import tcp_blocker
from corral.net.gvisor_netns import ensure_shared, netstack_wrap
from corral.runtime import cgroups, procs
from corral.runtime.base import SandboxSpec
from corral.runtime.layout import SandboxLayout
from corral.runtime.lifecycle import READY_TIMEOUT_S, OciRuntime, kill_and_wait, run_detached
from corral.runtime.procs import run_cmd


class GVisorRuntime(OciRuntime):
    """The default, strong tier: every sandbox is a runsc-sandbox (Sentry) + runsc-gofer pair."""

    name = "gvisor"
    hardened = False

    def __init__(self, settings: Settings, ready_timeout: float = READY_TIMEOUT_S) -> None:
        super().__init__(settings, ready_timeout)
        self.root = settings.runsc_root
        self._shared = False   # the data dir is a shared mount (ensure_shared), checked once per runtime

    def global_flags(self) -> list[str]:
        """Flags every runsc call for our sandboxes must repeat (runsc re-reads config from them, not from state).
        `--root=` (one argument) is also how procs.find recognises our processes."""
        return [
            f"--root={self.root}",
            f"--platform={self.settings.runsc_platform}",
            "--network=sandbox" if self.settings.net_enabled else "--network=none",
            "--host-uds=create",   # the agent bind()s /run/corral/agent.sock and the host must see it
            "--overlay2=none",     # writes go to our host overlay (quota'd ext4 upper), not Sentry memory
        ]

    def _runsc(self, *args: str) -> list[str]:
        return [self.settings.runsc_binary, *self.global_flags(), *args]

    async def _start(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # --detach: runsc returns once the sandbox runs; Sentry keeps agent.log as the agent's stdout/stderr.
        argv = self._runsc("run", "--detach", f"--bundle={lay.bundle}", spec.sandbox_id)
        await run_detached(self.netstack_argv(argv), lay.agent_log, self.ready_timeout)

    def netstack_argv(self, argv: list[str]) -> list[str]:
        """Wrap a `runsc run`/`runsc restore` that sets up --network=sandbox (see corral/net/gvisor_netns.py)."""
        return netstack_wrap(argv) if self.settings.net_enabled else argv

    def before_first_create(self) -> None:
        # Before the first layer is mounted: a bind made later would hide earlier mounts (gvisor_netns.py).
        if self.settings.net_enabled and not self._shared:
            ensure_shared(self.settings.data_dir)
            self._shared = True

    def _pids(self, sandbox_id: str) -> set[int]:
        # The cgroup holds sandbox, gofer and ptrace stubs; the /proc scan also catches processes started before
        # their cgroup existed (a crash during `runsc run`).
        return cgroups.pids(sandbox_id) | set(procs.find(self.root, sandbox_id, "runsc"))

    async def _kill(self, sandbox_id: str) -> None:
        # `runsc kill` + `delete --force` spends ~1 s in a poll loop waiting for the Sentry to die (measured);
        # SIGKILL to every process we know is immediate and leaves nothing that delete would clean besides files.
        await kill_and_wait(self._pids(sandbox_id))

    def _state_files(self, sandbox_id: str) -> list[Path]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        # <sandbox>_sandbox:<container>.{state,lock} and the control socket a killed `runsc run` leaves behind.
        return [
            self.root / n for n in names
            if n.startswith(f"{sandbox_id}_sandbox:") or n == f"runsc-{sandbox_id}.sock"
        ]

    async def _delete_state(self, sandbox_id: str) -> None:
        # Processes are dead, so what `runsc delete` would do is: drop cgroups (cgroups.remove) and the state
        # files. Doing it here saves its ~1 s wait; a racing `runsc run` is impossible (we hold the id's lock).
        for p in self._state_files(sandbox_id):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    async def _state_ids(self) -> list[str]:
        ids = set()
        for p in self.root.glob("*_sandbox:*.state") if self.root.is_dir() else []:
            ids.add(p.name.split("_sandbox:", 1)[0])
        for p in self.root.glob("runsc-*.sock") if self.root.is_dir() else []:
            ids.add(p.name[len("runsc-"):-len(".sock")])
        return sorted(ids)

    async def _running(self, sandbox_id: str) -> bool:
        # The Sentry is the sandbox: alive when a runsc-sandbox process for this id under our root exists.
        # Only the cgroup's members are candidates: cheap even with thousands of host processes.
        return any(
            argv[-1] == sandbox_id and "boot" in argv
            for argv in procs.find(self.root, sandbox_id, "runsc-sandbox", cgroups.pids(sandbox_id)).values()
        )

    def checkpoint_blocker(self, sandbox_id: str) -> str | None:
        # --network=none and --network=sandbox (gVisor's own netstack) both checkpoint; only hostinet cannot.
        if "--network=host" in self.global_flags():
            return "it uses host networking (runsc --network=host), which gVisor cannot checkpoint"
        info = netns.read_info(self._layout(sandbox_id).dir) if self.settings.net_enabled else None
        return tcp_blocker(info.sandbox_ip) if info is not None else None

    async def before_restore(self, lay: SandboxLayout) -> None:
        # runsc --network=sandbox moved eth0's address and route into its netstack at start; the restore reads them
        # from the netns again (corral/net/gvisor_netns.py).
        info = netns.read_info(lay.dir) if self.settings.net_enabled else None
        if info is not None:
            await netns.address_sandbox_end(info)

    def signal_argv(self, sandbox_id: str, sig: str) -> list[str]:
        return self._runsc("kill", sandbox_id, sig)

    def checkpoint_argv(self, sandbox_id: str, image_dir: Path) -> list[str]:
        return self._runsc("checkpoint", f"--image-path={image_dir}",
                           f"--compression={self.settings.checkpoint_compression}", sandbox_id)

    def restore_argv(self, sandbox_id: str, image_dir: Path, lay: SandboxLayout) -> list[str]:
        return self.netstack_argv(
            self._runsc("restore", "--detach", f"--image-path={image_dir}", f"--bundle={lay.bundle}", sandbox_id))

    def exec_argv(self, sandbox_id: str, argv: list[str]) -> list[str]:
        return self._runsc("exec", sandbox_id, *argv)

    async def runsc_state(self, sandbox_id: str) -> str:
        """`runsc state` output (for debugging and tests)."""
        _rc, out = await run_cmd(*self._runsc("state", sandbox_id))
        return out
