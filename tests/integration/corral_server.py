"""Start and stop a real `corral serve` on loopback for integration tests, and check what it leaves behind."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from corral.pool import pool_member_ids

BASE_TEMPLATES = Path(os.environ.get("CORRAL_BASE_TEMPLATES", "/var/lib/corral/templates"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal a process this test run started, wait for it, and SIGKILL it if it does not go in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


_octets_handed_out: set[int] = set()


def free_net_octet() -> int:
    """A second octet for a test server's 10.X.0.0/16 that no server of this session got and no host address or
    nft table uses (two servers on one range collide on the resolver's address: "could not bind 10.X.0.1:53")."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout.split()
    candidates = [o for o in range(64, 192) if o not in _octets_handed_out and f" 10.{o}." not in used
                  and f"ct{o:x}" not in tables]
    octet = random.choice(candidates)
    _octets_handed_out.add(octet)
    return octet


@dataclass
class CorralServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Extra CORRAL_* settings. Every test server also gets its own sandbox network (CIDR, nft table, interface
    # names): several servers run on one host at once.
    env: dict[str, str] = field(default_factory=dict)
    net_octet: int = field(default_factory=lambda: free_net_octet())

    @property
    def net_tag(self) -> str:
        return f"ct{self.net_octet:x}"

    @property
    def net_cidr(self) -> str:
        return f"10.{self.net_octet}.0.0/16"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def prepare(self) -> None:
        """Give the data dir the machine's built templates (read-only lowers, shared safely)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        link = self.data_dir / "templates"
        if not link.exists():
            link.symlink_to(BASE_TEMPLATES)

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "corral.cli.main", *args, "--data-dir", str(self.data_dir)],
                             capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"corral {' '.join(args)} failed: {out.stderr}")
        return out.stdout.strip()

    def create_key(self, name: str = "tests", team: str = "default") -> str:
        return self.cli("keys", "create", "--name", name, "--team", team)

    def start(self, extra: tuple[str, ...] = ()) -> None:
        self.log_path = self.data_dir / f"server-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "corral.cli.main", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--gateway-port", str(self.gateway_port), *extra],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "CORRAL_NET_TAG": self.net_tag, "CORRAL_NET_CIDR": self.net_cidr, **self.env})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"corral serve exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"corral serve did not become healthy:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig)

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@contextlib.contextmanager
def serving(server: CorralServer, extra: tuple[str, ...] = (), log_lines: int = 200) -> Iterator[CorralServer]:
    """Start `server`; on exit stop it, print its log tail and remove its data dir."""
    server.prepare()
    server.start(extra)
    try:
        yield server
    finally:
        teardown_server(server, log_lines)


def destroy_remaining(server: CorralServer) -> None:
    """After the server stopped: destroy what its sandboxes still hold (a stop leaves sandboxes running, by design),
    and its nft table, so that a test session leaves nothing on the host. Tests assert their own cleanup."""
    import asyncio

    from corral.config import Settings
    from corral.runtime.factory import make_runtimes

    settings = Settings(data_dir=server.data_dir, net_tag=server.net_tag, net_cidr=server.net_cidr)
    runtimes = make_runtimes(settings)

    async def destroy() -> None:
        for d in sorted((server.data_dir / "sandboxes").glob("*")):
            kind = (d / "runtime").read_text().strip() if (d / "runtime").is_file() else "gvisor"
            print(f"session teardown: destroying sandbox {d.name} ({kind}) left running")
            await runtimes[kind].destroy(d.name)

    asyncio.run(destroy())
    subprocess.run(["nft", "delete", "table", "inet", server.net_tag], capture_output=True, check=False)
    # Volume images (CORRAL_VOLUME_SIZE_MB) stay mounted over a server stop, by design: unmount them too.
    # So does the data dir's own bind mount (corral/net/gvisor_netns.ensure_shared).
    root = str(server.data_dir.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(root) or m + "/" == root), key=len, reverse=True):
        print(f"session teardown: unmounting {target}")
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    for line in loops.splitlines():
        if root in line:
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True, check=False)


def teardown_server(server: CorralServer, log_lines: int = 200) -> None:
    """Stop a test server, print its log tail (log_lines=0: none), destroy what it left, remove its data dir."""
    server.stop()
    if log_lines:
        print(server.log_tail(log_lines))
    destroy_remaining(server)
    shutil.rmtree(server.data_dir, ignore_errors=True)


def leftovers(data_dir: Path, sandbox_ids: list[str] | None = None) -> list[str]:
    """Everything a killed sandbox could leave on the host: processes, mounts, loop devices, cgroups, dirs.

    Warm pool members (named by the server's pool markers, corral.pool.pool_member_ids) are not leftovers.
    """
    members = pool_member_ids(data_dir)
    return [line for line in _leftovers(data_dir, sandbox_ids, members) if not any(m in line for m in members)]


def _leftovers(data_dir: Path, sandbox_ids: list[str] | None, members: set[str]) -> list[str]:
    found: list[str] = []
    data = str(data_dir.resolve())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmdline for m in members):
            continue  # matched on the whole command line: the reported one is cut at 200 characters
        if ("runsc" in cmdline or "runc" in cmdline or "corral-agent" in cmdline) and data in cmdline or sandbox_ids and any(sid in cmdline for sid in sandbox_ids) and "pytest" not in cmdline:
            found.append(f"process {pid}: {cmdline[:200]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if data in line and line.split()[4] != data:   # the data dir's own shared bind (gvisor_netns) is by design
            found.append(f"mount: {line}")
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    found += [f"loop: {l}" for l in losetup.splitlines() if data in l]
    sandboxes = data_dir / "sandboxes"
    if sandboxes.exists():
        found += [f"dir: {p}" for p in sandboxes.iterdir()]
    wanted = set(sandbox_ids or [])
    # Their network namespaces (corral/net: /run/netns/corral-<id>; the veth pair dies with it).
    found += [f"netns: corral-{sid}" for sid in wanted if Path(f"/run/netns/corral-{sid}").exists()]
    if wanted:
        # os.walk ignores directories that vanish mid-walk: other sandboxes' cgroups come and go while we look.
        for top, dirs, _ in os.walk("/sys/fs/cgroup", onerror=lambda _e: None):
            found += [f"cgroup: {os.path.join(top, d)}" for d in dirs if d in wanted]
    return found


@contextlib.contextmanager
def started(server: CorralServer, extra: tuple[str, ...] = ()) -> Iterator[CorralServer]:
    """Run a prepared server for a fixture's lifetime; afterwards stop it, print its log tail, remove its data dir."""
    server.start(extra)
    try:
        yield server
    finally:
        teardown_server(server, 100)
