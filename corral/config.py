"""Corral's settings, resolved in one place: defaults, then CORRAL_* environment variables, then CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_AGENT_BINARY = PACKAGE_DIR / "agent" / "_bin" / "corral-agent"

RuntimeName = Literal["gvisor", "runc"]


class Settings(BaseSettings):
    """Everything the server, the CLI and the tests configure."""

    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="forbid")

    data_dir: Path = Path("/var/lib/corral")
    host: str = "127.0.0.1"
    port: int = 3000
    gateway_port: int = 3002
    # The domain reported to the SDK; `{port}-{sandboxID}.{domain}` Host headers are routed by the gateway.
    domain: str = "localhost"

    default_runtime: RuntimeName = "gvisor"
    # ptrace idles at ~0 % CPU per sandbox; systrap forks faster but costs ~2 % of a core per idle sandbox.
    runsc_platform: Literal["ptrace", "systrap"] = "ptrace"
    runsc_binary: str = "runsc"
    runc_binary: str = "runc"
    agent_binary: Path = DEFAULT_AGENT_BINARY

    default_cpu_count: int = Field(default=2, ge=1)
    default_memory_mb: int = Field(default=512, ge=64)
    default_disk_mb: int = Field(default=1024, ge=64)
    default_timeout_s: int = Field(default=300, ge=1)
    max_timeout_s: int = Field(default=24 * 3600, ge=1)

    # Warm pools (corral/pool.py), per (template, runtime): pool_size kept ready once a key is in demand (0 disables
    # pools), more while more creates than that arrive per pool_window_s, never over pool_max; a key with no create
    # for pool_idle_s is emptied unless listed in pool_prewarm (started with the server on its default runtime).
    pool_size: int = Field(default=2, ge=0)
    pool_max: int = Field(default=8, ge=0)
    pool_max_total: int = Field(default=16, ge=0)  # ready members over all keys (memory: ~15 MB each on gVisor)
    pool_wait_s: float = Field(default=2.0, ge=0)  # a create that misses waits this long at most for a running refill
    pool_window_s: float = Field(default=10.0, gt=0)
    pool_idle_s: float = Field(default=600.0, gt=0)
    pool_prewarm: list[str] = Field(default_factory=lambda: ["base"])

    # Pause/resume (corral/pausing.py): checkpoint images live in checkpoint_dir (default <data_dir>/checkpoints);
    # hibernate_after_s > 0 pauses a sandbox idle that long (resumed by its next gateway request); None = off.
    checkpoint_dir: Path | None = None
    # none: resume of an idle sandbox ~220 ms p50 and 4.2 MiB of disk when paused; flate: ~335 ms and 1.4 MiB (measured).
    checkpoint_compression: Literal["none", "flate-best-speed"] = "none"
    hibernate_after_s: float | None = Field(default=None, gt=0)
    # Templates with a start command are captured once with it running; their gVisor sandboxes restore that image.
    template_snapshots: bool = True

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'corral.db'}"

    @property
    def templates_dir(self) -> Path:
        return self.data_dir / "templates"

    @property
    def sandboxes_dir(self) -> Path:
        return self.data_dir / "sandboxes"

    @property
    def checkpoints_dir(self) -> Path:
        return self.checkpoint_dir if self.checkpoint_dir is not None else self.data_dir / "checkpoints"

    @property
    def runsc_root(self) -> Path:
        return self.data_dir / "runsc-root"

    @property
    def runc_root(self) -> Path:
        return self.data_dir / "runc-root"
