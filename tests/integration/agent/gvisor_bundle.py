"""Run the agent as PID 1 of a throwaway runsc sandbox (own --root, template
rootfs read-only under a memory overlay) and expose its unix socket on a
loopback TCP port so the stock SDK can reach it. Test scaffolding only: the
real sandbox lifecycle lives in corral/runtime.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
]


def bundle_config(rootfs: Path, agent: Path, sockdir: Path) -> dict:
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/.corral/corral-agent", "serve", "--listen", "unix:/run/corral/agent.sock"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "agent-it",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/.corral/corral-agent", "type": "bind", "source": str(agent), "options": ["rbind", "ro"]},
            {"destination": "/run/corral", "type": "bind", "source": str(sockdir), "options": ["rbind", "rw"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }


class Relay:
    """Loopback TCP -> unix socket byte pump (one thread pair per connection)."""

    def __init__(self, uds: Path) -> None:
        self.uds = str(uds)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = int(self.lsock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            try:
                u.connect(self.uds)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.lsock.close()


class GvisorAgent:
    def __init__(self, rootfs: Path, agent: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.id = "agentit" + secrets.token_hex(7)  # fixed length: runsc prefix-matches ids
        self.sockdir = workdir / "run"
        self.sockdir.mkdir(mode=0o700)
        (workdir / "bundle").mkdir()
        (workdir / "bundle" / "config.json").write_text(json.dumps(bundle_config(rootfs, agent, self.sockdir)))
        self.runsc = [
            "runsc",
            "--root",
            str(workdir / "runsc-root"),
            "--network=none",
            "--host-uds=create",
            "--overlay2=root:memory",
        ]
        self.relay: Relay | None = None
        self.ready_ms = 0.0

    def start(self) -> None:
        t0 = time.monotonic()
        with open(self.workdir / "agent.log", "wb") as log:
            subprocess.run(
                [*self.runsc, "run", "--detach", "--bundle", str(self.workdir / "bundle"), self.id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
            )
        sock = self.sockdir / "agent.sock"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if sock.exists() and _health(sock):
                self.ready_ms = (time.monotonic() - t0) * 1000
                self.relay = Relay(sock)
                return
            time.sleep(0.01)
        raise TimeoutError("agent in gVisor did not answer /health: " + self.log_tail())

    def signal(self, sig: str) -> None:
        subprocess.run([*self.runsc, "kill", self.id, sig], check=True, capture_output=True, timeout=30)

    def wait_socket(self, present: bool, timeout: float = 10) -> None:
        sock = self.sockdir / "agent.sock"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (sock.exists() and _health(sock)) if present else not sock.exists():
                return
            time.sleep(0.01)
        raise TimeoutError(f"agent socket present={not present} after {timeout}s: " + self.log_tail())

    def checkpoint_restore(self) -> tuple[float, float]:
        """Quiesce (SIGUSR1), checkpoint, restore, reopen (SIGUSR2); returns the
        checkpoint and restore-to-healthy times in ms."""
        self.signal("USR1")
        self.wait_socket(present=False)
        img = self.workdir / "img"
        t0 = time.monotonic()
        subprocess.run([*self.runsc, "checkpoint", f"--image-path={img}", self.id], check=True, timeout=60)
        t1 = time.monotonic()
        subprocess.run([*self.runsc, "delete", "-force", self.id], check=True, timeout=60)
        t2 = time.monotonic()
        with open(self.workdir / "agent.log", "ab") as log:
            subprocess.run(
                [
                    *self.runsc,
                    "restore",
                    f"--image-path={img}",
                    "--detach",
                    "--bundle",
                    str(self.workdir / "bundle"),
                    self.id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
            )
        self.signal("USR2")
        self.wait_socket(present=True)
        return (t1 - t0) * 1000, (time.monotonic() - t2) * 1000

    def log_tail(self) -> str:
        return (self.workdir / "agent.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.relay:
            self.relay.close()
        subprocess.run([*self.runsc, "kill", self.id, "KILL"], capture_output=True, timeout=30, check=False)
        subprocess.run([*self.runsc, "delete", "-force", self.id], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _health(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 204")
    except OSError:
        return False


def runsc_available() -> bool:
    return shutil.which("runsc") is not None and os.geteuid() == 0
