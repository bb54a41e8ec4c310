"""One build step in an isolated gVisor sandbox: lowers = the layers so far, its writable upper = the new layer.

The sandbox runs the agent like any other; the step's command goes through `process.Process/Start` and its output is
streamed to the build log. Afterwards every process is killed and the upper dir is copied out as the step's layer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.ids import new_sandbox_id
from corral.net import netns
from corral.net.policy import EgressPolicy
from corral.net.service import NetworkService
from corral.runtime.base import SandboxSpec
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.layout import SandboxLayout
from corral.runtime.procs import run_cmd
from corral.server.agent_calls import run_process

log = logging.getLogger(__name__)

CONTEXT_MOUNT = "/.corral-build"   # the step's files (COPY), read-only
# Paths the sandbox machinery creates in every upper: never part of a layer.
SCRATCH = [".corral", "run/corral", "run/corral-init", CONTEXT_MOUNT.lstrip("/")]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def build_network_flags(settings: Settings) -> list[str]:
    """How build sandboxes reach the package registries.

    With networking on (the default), a build sandbox is networked like any other: its own netns, gVisor's netstack,
    and the default egress policy (the internet through Corral's proxy and resolver; never the host, its loopback
    services, other sandboxes or private ranges). Only when the operator turned networking off do builds fall back
    to the host's stack (runsc --network=host), so that apt/pip/npm steps can still run.
    """
    return [] if settings.net_enabled else ["--network=host"]


def proxy_env() -> dict[str, str]:
    """The machine's proxy settings, for build steps on the host's stack (with networking off only)."""
    return {k: v for k in PROXY_VARS if (v := os.environ.get(k))}


class BuildRuntime(GVisorRuntime):
    """gVisor with build networking and the step's context directory bind-mounted read-only."""

    def __init__(self, settings: Settings, network: NetworkService | None = None) -> None:
        super().__init__(settings)
        self.network = network       # applies the build sandbox's egress policy (None: networking is off)
        self.context_dirs: dict[str, Path] = {}

    def global_flags(self) -> list[str]:
        flags = build_network_flags(self.settings)
        if not flags:
            return super().global_flags()
        return [f for f in super().global_flags() if not f.startswith("--network=")] + flags

    async def _start(self, spec: SandboxSpec, lay: SandboxLayout) -> None:
        config = json.loads(lay.config_json.read_text())
        if not self.settings.net_enabled:
            # --network=host only reaches the host's stack when the spec asks for no network namespace of its own.
            linux = config["linux"]
            linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        ctx = self.context_dirs.get(spec.sandbox_id)
        if ctx is not None:
            (lay.rootfs / CONTEXT_MOUNT.lstrip("/")).mkdir(exist_ok=True)
            config["mounts"].append({"destination": CONTEXT_MOUNT, "type": "bind", "source": str(ctx),
                                     "options": ["rbind", "ro", "nosuid", "nodev"]})
        lay.config_json.write_text(json.dumps(config, indent=1))
        await super()._start(spec, lay)

    async def freeze(self, sandbox_id: str) -> None:
        """Kill every process of the sandbox (so nothing writes to the upper while it is copied)."""
        await self._kill(sandbox_id)


Log = Callable[[str, str], None]   # (level, message)


async def run_in_sandbox(socket_path: Path, argv: list[str], *, user: str, cwd: str, envs: dict[str, str],
                         on_output: Log) -> int:
    """Run argv through the agent, stream stdout/stderr lines to on_output, return the exit code."""
    request = {"process": {"cmd": argv[0], "args": argv[1:], "envs": envs, "cwd": cwd}}
    pending = {"stdout": b"", "stderr": b""}

    def emit(stream: str, data: bytes, flush: bool = False) -> None:
        pending[stream] += data
        *lines, pending[stream] = pending[stream].split(b"\n")
        if flush and pending[stream]:
            lines.append(pending[stream])
            pending[stream] = b""
        for line in lines:
            on_output("info" if stream == "stdout" else "warn", line.decode(errors="replace").rstrip("\r"))

    def on_event(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        for stream in ("stdout", "stderr"):
            if data.get(stream):
                emit(stream, base64.b64decode(data[stream]))
        end = event.get("end")
        if end is not None:
            emit("stdout", b"", flush=True)
            emit("stderr", b"", flush=True)
            if not end.get("exited", True) and end.get("status"):
                on_output("warn", f"process ended: {end['status']}")

    # No client-side deadline: the builder's step limit stops the sandbox, which ends the stream.
    return await run_process(socket_path, request, user=user, access_token=None, timeout=None, until="end",
                             on_event=on_event)


async def copy_out(upper: Path, dest: Path) -> None:
    """Copy an overlay upper dir (whiteouts, opaque-dir xattrs, owners, modes) into a layer dir, minus scratch paths."""
    for rel in SCRATCH:
        p = upper / rel
        if p.is_dir() and not p.is_symlink():
            await run_cmd("rm", "-rf", "--one-file-system", str(p))
    run_dir = upper / "run"
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()       # only there as the parent of run/corral and run/corral-init
    rc, out = await run_cmd("cp", "-a", "--no-target-directory", str(upper), str(dest), timeout=600)
    if rc != 0:
        raise RuntimeFailure(f"copying the step's layer out failed: {out[-500:]}")


async def run_step(runtime: BuildRuntime, settings: Settings, lowers_rootfs: Path, argv: list[str], *, user: str,
                   cwd: str, envs: dict[str, str], context: Path | None, layer_root: Path, on_output: Log) -> int:
    """Start a build sandbox over `lowers_rootfs`, run argv, and (exit 0) copy the changes to `layer_root`."""
    sandbox_id = new_sandbox_id()
    spec = SandboxSpec(sandbox_id=sandbox_id, template_rootfs=lowers_rootfs, cpu_count=settings.default_cpu_count,
                       memory_mb=settings.build_memory_mb, disk_mb=settings.build_disk_mb, hostname="corral-build")
    if context is not None:
        runtime.context_dirs[sandbox_id] = context
    try:
        handle = await runtime.create(spec)
        if runtime.network is not None and (info := netns.read_info(handle.sandbox_dir)) is not None:
            # The default policy: the internet (registries) through Corral's proxy, nothing of the host's.
            await runtime.network.apply(sandbox_id, handle.sandbox_dir, EgressPolicy())
            envs = {**envs, **netns.proxy_env(info, settings)}
        code = await run_in_sandbox(handle.socket_path, argv, user=user, cwd=cwd, envs=envs, on_output=on_output)
        if code == 0:
            await runtime.freeze(sandbox_id)
            layer_root.rmdir()    # cp recreates it with the upper's owner and mode
            await copy_out(SandboxLayout(handle.sandbox_dir).upper, layer_root)
        return code
    finally:
        runtime.context_dirs.pop(sandbox_id, None)
        if runtime.network is not None:
            runtime.network.forget(sandbox_id)
        await asyncio.shield(runtime.destroy(sandbox_id))
