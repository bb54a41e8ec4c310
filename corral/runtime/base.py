"""The contract every isolation backend implements: start a sandbox from a spec, find it again, free it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class VolumeBind:
    """A volume's host data directory bound read-write at `destination` inside the sandbox (corral/volumes)."""

    volume_id: str
    volume_name: str
    source: Path
    destination: str


@dataclass(frozen=True)
class SandboxSpec:
    """What a backend needs to start one sandbox. Limits are enforced by cgroups (v1 on these hosts)."""

    sandbox_id: str
    template_rootfs: Path          # read-only lower layer
    cpu_count: int = 2
    memory_mb: int = 512
    disk_mb: int = 1024            # size of the writable layer
    pids_limit: int = 4096         # generous: gVisor counts its own threads too
    nofile: int = 65536            # RLIMIT_NOFILE of the agent and every command
    tmp_mb: int = 256              # size of the /tmp tmpfs (it is memory, charged to the sandbox)
    output_buffer_bytes: int = 1 << 20  # one command's output the agent holds for a slow reader
    env: dict[str, str] = field(default_factory=dict)  # environment of the agent (inherited by commands)
    hostname: str = "corral"
    volumes: tuple[VolumeBind, ...] = ()
    # A snapshot dir (layer.img + image/, corral/snapshots.py): start by restoring its memory image onto a copy of
    # its writable layer instead of booting (template_rootfs must be the lower layer the snapshot was taken on).
    restore_from: Path | None = None


@dataclass(frozen=True)
class RuntimeHandle:
    """A running sandbox as the host sees it."""

    sandbox_id: str
    runtime: str                   # "gvisor" | "runc"
    socket_path: Path              # the agent's HTTP socket on the host
    sandbox_dir: Path


class Runtime(Protocol):
    """An isolation backend. Every method is safe to call again after a crash (idempotent cleanup)."""

    name: str

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        """Start the sandbox and return once its agent answers GET /health. On any failure nothing is left behind."""
        ...

    async def destroy(self, sandbox_id: str) -> None:
        """Kill every process, unmount, remove cgroups and the sandbox directory. No error if already gone."""
        ...

    async def is_alive(self, sandbox_id: str) -> bool:
        """True when the sandbox's processes still run (used to re-attach after a server restart)."""
        ...

    def handle_for(self, sandbox_id: str) -> RuntimeHandle:
        """The handle of a sandbox started earlier (maybe by a previous server process)."""
        ...

    async def list_sandbox_ids(self) -> list[str]:
        """Ids of sandboxes this backend has state for (running or left over from a crash)."""
        ...
