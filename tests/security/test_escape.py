"""Hostile code inside a sandbox (both tiers, as root unless noted) tries to reach the host; every boundary holds."""

from __future__ import annotations

import ast
import hashlib
import os
import time
from pathlib import Path

from e2b import Sandbox

from corral.config import DEFAULT_AGENT_BINARY
from tests.security.conftest import py, sh

SYSCALLS = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return r, ctypes.get_errno()
"""


def test_host_files_through_proc_symlinks_and_links(box: Sandbox, host_secret: tuple[Path, str]) -> None:
    path, secret = host_secret
    escape = Path(f"/tmp/corral-escape-{os.getpid()}-{box.tier}")  # type: ignore[attr-defined]
    script = f"""
import glob, os
target = {str(path)!r}
candidates = [target, "/proc/1/root" + target, "/proc/self/root" + target, "/proc/1/cwd/../../../.." + target,
              "/proc/self/cwd/../../../../../.." + target, "/../../../.." + target]
candidates += [p + target for p in glob.glob("/proc/[0-9]*/root")]
for c in candidates:
    try:
        print("READ", c, open(c).read())
    except OSError as e:
        print("DENIED", c, e.errno)
# Symlink and hard link to the host path, then read through them.
for kind, make in (("symlink", os.symlink), ("hardlink", os.link)):
    link = "/home/user/" + kind
    try:
        make(target, link)
        print("READ", kind, open(link).read())
    except OSError as e:
        print("DENIED", kind, e.errno)
# Write through /proc/*/root to where the host's /tmp would be.
for c in ["/proc/1/root{escape}", "/proc/self/root/../../..{escape}", "{escape}"]:
    try:
        open(c, "w").write("escaped")
        print("WROTE", c)
    except OSError as e:
        print("DENIED", c, e.errno)
"""
    out = py(box, script)
    assert secret not in out.stdout and secret not in out.stderr, out.stdout
    assert "DENIED" in out.stdout
    assert not escape.exists(), "a write inside the sandbox landed on the host"


def test_agent_binary_is_read_only_and_not_linkable(box: Sandbox) -> None:
    before = hashlib.sha256(DEFAULT_AGENT_BINARY.read_bytes()).hexdigest()
    out = sh(box, "ln /.corral/corral-agent /home/user/agent-hl; "
                  "echo pwn >> /.corral/corral-agent; echo pwn >> /home/user/agent-hl; "
                  "cp /dev/null /.corral/corral-agent; echo done")
    assert "done" in out.stdout
    assert hashlib.sha256(DEFAULT_AGENT_BINARY.read_bytes()).hexdigest() == before


def test_bind_and_mount_tricks_fail(box: Sandbox) -> None:
    cmds = ["mount --bind / /mnt", "mount -t proc proc /mnt", "mount -t tmpfs none /mnt", "mount -o remount,rw /sys",
            "unshare -m true"]
    if box.tier == "runc":  # type: ignore[attr-defined]
        # On runc new namespaces would be real host-kernel namespaces: seccomp refuses them. gVisor implements user
        # namespaces inside its own kernel (the Sentry), so there they are no way out and are allowed.
        cmds.append("unshare -U -r true")
    for cmd in cmds:
        r = sh(box, cmd)
        assert r.exit_code != 0, f"{cmd!r} succeeded: {r.stdout}"
    r = py(box, SYSCALLS + """
print(call(165, 0, 0, 0, 0, 0))  # mount(NULL, NULL, NULL, 0, NULL)
import ctypes
print(libc.mount(b"/", b"/mnt", None, 4096, None), ctypes.get_errno())  # MS_BIND
""")
    assert r.stdout.count("-1") >= 2, r.stdout


def test_host_processes_are_invisible(box: Sandbox) -> None:
    out = py(box, """
import glob
for p in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        print(open(p, "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
""")
    listing = out.stdout
    assert "pytest" not in listing and "corral.cli.main" not in listing and "runsc" not in listing
    assert "systemd" not in listing and "sshd" not in listing
    assert str(os.getpid()) not in sh(box, "ls /proc").stdout.split()  or len(listing.splitlines()) < 50


def test_ptrace_of_a_host_pid_fails(box: Sandbox) -> None:
    me = os.getpid()
    out = py(box, SYSCALLS + f"""
for pid in ({me}, {os.getppid()}):
    print(pid, *call(101, 16, pid, 0, 0))  # PTRACE_ATTACH (not pid 1: that is the sandbox's own agent)
""")
    lines = out.stdout.splitlines()
    assert lines[0].split()[1] == "-1" and lines[1].split()[1] == "-1", out.stdout
    status = Path(f"/proc/{me}/status").read_text()
    assert "TracerPid:\t0" in status


def test_kernel_modules_cannot_be_loaded(box: Sandbox) -> None:
    out = py(box, SYSCALLS + """
import os
fd = os.open("/bin/true", os.O_RDONLY)
print("init_module", *call(175, 0, 0, 0))
print("finit_module", *call(313, fd, 0, 0))
print("delete_module", *call(176, 0, 0))
""")
    for line in out.stdout.splitlines():
        assert line.split()[1] == "-1", out.stdout
    modules = Path("/proc/modules")
    modules_before = modules.read_text() if modules.exists() else ""
    sh(box, "modprobe dummy; insmod /nonexistent.ko")
    assert (modules.read_text() if modules.exists() else "") == modules_before


def test_raw_sockets_see_no_host_network(box: Sandbox) -> None:
    script = """
import socket, os
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("RAW-OPEN")
except OSError as e:
    print("RAW-DENIED", e.errno)
print("IFACES", sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else [])
"""
    as_user = py(box, script, user="user")
    assert "RAW-DENIED" in as_user.stdout, as_user.stdout
    as_root = py(box, script)
    # Root may open one (CAP_NET_RAW, as in Docker), but only the sandbox's own interfaces are there: loopback and
    # the sandbox end of its veth (named eth0 in its netns), none of the host's veths, bridges or NICs.
    ifaces = set(ast.literal_eval(as_root.stdout.split("IFACES", 1)[1].strip()))
    assert ifaces <= {"lo", "eth0"}, ifaces
    host_only = {i for i in os.listdir("/sys/class/net") if i not in ("lo", "eth0")}
    assert not ifaces & host_only, (ifaces, host_only)


def test_device_nodes_cannot_reach_host_devices(box: Sandbox) -> None:
    out = sh(box, "for d in 'b 8 0' 'b 7 0' 'c 1 1' 'c 1 2' 'b 259 0'; do "
                  "  n=/home/user/dev-$(echo $d | tr ' ' _); mknod $n $d 2>/dev/null; "
                  "  if head -c 16 $n >/dev/null 2>&1; then echo READABLE $n; else echo DENIED $n; fi; done")
    assert "READABLE" not in out.stdout, out.stdout
    assert out.stdout.count("DENIED") == 5


def test_clock_cannot_be_changed(box: Sandbox) -> None:
    before = time.time()
    r = sh(box, "date -s @0")
    assert r.exit_code != 0
    out = py(box, SYSCALLS + """
import ctypes
ts = (ctypes.c_long * 2)(1, 0)
print("clock_settime", libc.clock_settime(0, ts), ctypes.get_errno())
print("settimeofday", libc.settimeofday(ts, None), ctypes.get_errno())
print("adjtimex", *call(159, 0))
""")
    assert "clock_settime -1" in out.stdout and "settimeofday -1" in out.stdout, out.stdout
    assert abs(time.time() - before) < 120
    assert int(sh(box, "date +%Y").stdout) >= 2024


def test_cgroup_escape_fails(box: Sandbox) -> None:
    out = sh(box, "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/*/tasks "
                  "/sys/fs/cgroup/*/release_agent /sys/fs/cgroup/memory/memory.limit_in_bytes; do "
                  "  [ -e $f ] || continue; if echo $$ > $f 2>/dev/null; then echo WROTE $f; fi; done; "
                  "mkdir /sys/fs/cgroup/escape 2>/dev/null && echo MADE; echo end")
    assert "WROTE" not in out.stdout and "MADE" not in out.stdout, out.stdout
    # From the host: the sandbox's processes are still all inside its own cgroup.
    from corral.runtime import cgroups
    assert cgroups.pids(box.sandbox_id)
