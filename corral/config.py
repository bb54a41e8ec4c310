"""Corral's settings, resolved in one place: defaults, then CORRAL_* environment variables, then CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_AGENT_BINARY = PACKAGE_DIR / "agent" / "_bin" / "corral-agent"

RuntimeName = Literal["gvisor", "runc"]


def _env_proxy() -> str | None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        if os.environ.get(name):
            return os.environ[name]
    return None


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
    pool_max_total: int = Field(default=16, ge=0)  # ready members over all keys (gVisor: ~15 MB each; ~90 MB with Jupyter)
    pool_wait_s: float = Field(default=2.0, ge=0)  # a create that misses waits this long at most for a running refill
    pool_window_s: float = Field(default=10.0, gt=0)
    pool_idle_s: float = Field(default=600.0, gt=0)
    pool_prewarm: list[str] = Field(default_factory=lambda: ["base"])

    # Base images (corral/images). registries maps a reference's registry to the OCI registry Corral pulls it from
    # with skopeo, e.g. CORRAL_REGISTRIES='{"docker.io": "127.0.0.1:5000"}'; empty (the default) means never pull.
    registries: dict[str, str] = Field(default_factory=dict)
    registry_tls_verify: bool = True
    registry_pull_timeout_s: float = Field(default=600.0, gt=0)
    image_max_bytes: int = Field(default=20 * 2**30, ge=1)  # unpacked size cap for one imported image

    # Size quota of each new volume in MiB: a sparse ext4 image loop-mounted as its data (0: no quota, a plain dir).
    volume_size_mb: int = Field(default=0, ge=0)

    # Custom template builds (corral/templates/builder.py): limits per step and per build, build sandbox size.
    build_step_timeout_s: float = Field(default=600.0, gt=0)
    build_timeout_s: float = Field(default=1800.0, gt=0)
    build_memory_mb: int = Field(default=2048, ge=256)
    build_disk_mb: int = Field(default=8192, ge=256)
    build_upload_ttl_s: int = Field(default=3600, ge=10)   # lifetime of a file-upload link handed to the SDK
    build_upload_max_mb: int = Field(default=2048, ge=1)   # largest COPY archive accepted
    # Where upload links point (the API's own address); empty = the address the request came to.
    public_api_url: str = ""

    # Networking (corral/net): every sandbox gets its own netns + veth with a /30 out of net_cidr; egress is policed
    # by the nftables table `inet <net_tag>`. The first address of net_cidr serves DNS and the HTTP(S) proxy.
    # Two servers on one host need distinct net_cidr and net_tag (interface names are `<net_tag><hex index>`).
    net_enabled: bool = True
    net_cidr: str = Field(default="10.231.0.0/16", pattern=r"^\d+\.\d+\.\d+\.\d+/(1[0-9]|2[0-2])$")
    net_tag: str = Field(default="corral", pattern=r"^[a-z][a-z0-9]{1,5}$")
    net_dns_port: int = Field(default=53, ge=1, le=65535)
    net_proxy_port: int = Field(default=3128, ge=1, le=65535)
    # The machine's own proxy, which the sandbox proxy chains to (CONNECT); None: connect directly.
    net_upstream_proxy: str | None = Field(default_factory=lambda: _env_proxy())
    net_upstream_dns: list[str] = Field(default_factory=list)  # empty: the nameservers of /etc/resolv.conf
    net_static_hosts: dict[str, str] = Field(default_factory=dict)  # name -> IPv4 answered by the sandbox resolver
    net_dns_min_ttl_s: int = Field(default=60, ge=1)  # an allowed name's IPs stay allowed at least this long

    # Pause/resume (corral/pausing.py): checkpoint images live in checkpoint_dir (default <data_dir>/checkpoints);
    # hibernate_after_s > 0 pauses a sandbox idle that long (resumed by its next gateway request); None = off.
    checkpoint_dir: Path | None = None
    # none: resume of an idle sandbox ~220 ms p50 and 4.2 MiB of disk when paused; flate: ~335 ms and 1.4 MiB (measured).
    checkpoint_compression: Literal["none", "flate-best-speed"] = "none"
    hibernate_after_s: float | None = Field(default=None, gt=0)
    # Templates with a start command are captured once with it running; their gVisor sandboxes restore that image.
    template_snapshots: bool = True
    # Warm pool members of a template with a start command as restores of its memory snapshot (create ~30 ms for
    # code-interpreter-v1). Off: in one CI run two such idle members' interpreter server spun at ~50 % of a core each
    # for minutes after the restore (seen once; not yet understood), starving everything else on 2 cores.
    pool_snapshot_restores: bool = False


    # Per-team quotas (corral/quotas.py): the defaults of teams without their own; None = unlimited.
    quota_max_sandboxes: int | None = Field(default=None, ge=0)
    quota_creates_per_s: float | None = Field(default=None, ge=0)
    quota_memory_mb: int | None = Field(default=None, ge=0)
    quota_disk_mb: int | None = Field(default=None, ge=0)

    # Request limits of the REST API (corral/server/limits.py) and the gateway.
    api_max_body_bytes: int = Field(default=1 << 20, ge=1024)      # JSON bodies
    api_max_header_bytes: int = Field(default=16 << 10, ge=1024)
    api_read_timeout_s: float = Field(default=15.0, gt=0)          # a request's head + body must arrive in this
    gateway_max_upload_bytes: int = Field(default=1 << 30, ge=1024)  # one envd upload (the disk quota caps too)

    # Limits inside every sandbox (corral/runtime/oci.py, the agent).
    sandbox_nofile: int = Field(default=65536, ge=64)             # RLIMIT_NOFILE of the agent and its commands
    sandbox_pids: int = Field(default=4096, ge=64)
    sandbox_tmp_mb: int = Field(default=256, ge=1)                 # /tmp is tmpfs: it costs sandbox memory
    sandboxes_cpu_shares: int = Field(default=128, ge=2)            # all sandboxes' weight vs the host (1024)
    watchdog_interval_s: float = Field(default=2.0, ge=0)           # how often dead sandboxes are looked for (0: off)
    agent_output_buffer_bytes: int = Field(default=1 << 20, ge=64 << 10)  # output held for one slow reader

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

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
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def checkpoints_dir(self) -> Path:
        return self.checkpoint_dir if self.checkpoint_dir is not None else self.data_dir / "checkpoints"

    @property
    def runsc_root(self) -> Path:
        return self.data_dir / "runsc-root"

    @property
    def runc_root(self) -> Path:
        return self.data_dir / "runc-root"
