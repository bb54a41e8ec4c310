"""OCI bundle config.json generation for a sandbox (one spec, with a hardened variant for the runc tier)."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from corral.runtime import cgroups
from corral.runtime.base import SandboxSpec
from corral.runtime.layout import SandboxLayout

AGENT_PATH = "/.corral/corral-agent"
AGENT_RUN_DIR = "/run/corral"
AGENT_ARGS = [AGENT_PATH, "serve", "--listen", f"unix:{AGENT_RUN_DIR}/agent.sock"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Relative to rootfs/: created in the upper layer before start so no runtime has to create them in a shared lower.
MOUNTPOINTS = [".corral/", "run/corral/", ".corral/corral-agent"]
CPU_PERIOD_US = 100_000
CPU_SHARES_PER_VCPU = 1024  # fair share under contention, on top of the hard quota

# Docker's default capability set: enough for the agent to setuid/setgid/chown/kill (and sudo inside), no SYS_ADMIN.
CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
# Docker's masked / read-only paths.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Kernel attack surface a sandbox never needs (runc tier only; gVisor implements syscalls itself).
# Blocked with EPERM like Docker's profile does for unprivileged containers.
DENIED_SYSCALLS = [
    "add_key", "bpf", "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "init_module",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
    "name_to_handle_at", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "quotactl", "reboot",
    "request_key", "setns", "swapoff", "swapon", "umount2", "unshare", "userfaultfd", "acct", "settimeofday",
    "clock_settime", "syslog", "vhangup", "iopl", "ioperm", "uselib",
]
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (Docker's 0x7E020000 mask, bit by bit)
CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]


def _volume_mounts(spec: SandboxSpec) -> list[dict[str, Any]]:
    # nosuid/nodev: a sandbox may plant setuid files or device nodes in a volume; they must stay inert in the next.
    return [{"destination": v.destination, "type": "bind", "source": str(v.source),
             "options": ["rbind", "rw", "nosuid", "nodev"]} for v in spec.volumes]


def _mounts(layout: SandboxLayout, agent_binary: Path, tmp_mb: int) -> list[dict[str, Any]]:
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": nosuid_noexec_nodev},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nosuid_noexec_nodev, "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={tmp_mb}m"]},
        {"destination": AGENT_RUN_DIR, "type": "bind", "source": str(layout.run), "options": ["rbind", "rw"]},
        {"destination": AGENT_PATH, "type": "bind", "source": str(agent_binary),
         "options": ["bind", "ro", "nosuid", "nodev"]},
    ]


def _resources(spec: SandboxSpec) -> dict[str, Any]:
    mem = spec.memory_mb << 20
    return {
        "devices": [{"allow": False, "access": "rwm"}],    # runtimes then allow only their default device nodes
        "memory": {"limit": mem},
        "cpu": {"quota": spec.cpu_count * CPU_PERIOD_US, "period": CPU_PERIOD_US,
                "shares": spec.cpu_count * CPU_SHARES_PER_VCPU},
        "pids": {"limit": spec.pids_limit},
    }


def _seccomp() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            # No new namespaces from inside (user namespaces would hand out fresh capabilities).
            # One rule per flag: with a default-allow policy "any flag set" is an OR of masked compares.
            *[
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
                for flag in CLONE_NS_FLAGS
            ],
            # clone3 passes flags in a struct seccomp cannot inspect: ENOSYS makes libc fall back to clone.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }


def build_config(spec: SandboxSpec, layout: SandboxLayout, agent_binary: Path, hardened: bool,
                 netns_path: str | None = None) -> dict[str, Any]:
    """The OCI runtime spec. `hardened` adds the runc tier's caps, masked paths and seccomp (gVisor needs none).
    `netns_path`: join that network namespace (corral/net) instead of a fresh empty one."""
    env = {"PATH": DEFAULT_PATH, **spec.env}
    # runc applies rlimits after dropping CAP_SYS_RESOURCE: it cannot go above our own hard limit.
    nofile = min(spec.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": [*AGENT_ARGS, "--output-buffer", str(spec.output_buffer_bytes)],
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": "/",
        "noNewPrivileges": False,     # sudo inside the sandbox must work
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
    }
    linux: dict[str, Any] = {
        "cgroupsPath": cgroups.cgroups_path(spec.sandbox_id),
        "resources": _resources(spec),
        # No network path: a fresh, empty netns (runc); runsc runs with --network=none.
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
    }
    if netns_path:
        linux["namespaces"][-1]["path"] = netns_path
    # runsc gives a spec without capabilities an empty set, so both tiers name them.
    process["capabilities"] = {k: list(CAPS) for k in ("bounding", "effective", "permitted")}
    if hardened:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
        linux["seccomp"] = _seccomp()
        linux["rootfsPropagation"] = "private"
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(layout.rootfs), "readonly": False},
        "hostname": spec.hostname,
        "mounts": _mounts(layout, agent_binary, spec.tmp_mb) + _volume_mounts(spec),
        "linux": linux,
    }


def write_bundle(spec: SandboxSpec, layout: SandboxLayout, agent_binary: Path, hardened: bool,
                 netns_path: str | None = None) -> Path:
    layout.bundle.mkdir(exist_ok=True)
    config = build_config(spec, layout, agent_binary, hardened, netns_path)
    layout.config_json.write_text(json.dumps(config, indent=1))
    return layout.config_json
