"""`corral doctor`: checks that this host can run sandboxes and says how to fix each missing piece."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from corral.config import Settings

INSTALL_HINT = "run scripts/install-system.sh as root (it installs runsc from bookworm-backports, runc, debootstrap, Go)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else f"exit {out.returncode}"


def check_binary(name: str, binary: str, version_args: list[str], fix: str) -> Check:
    path = shutil.which(binary)
    if not path:
        return Check(name, False, f"{binary} not found on PATH", fix)
    return Check(name, True, f"{path}: {_version([path, *version_args])}")


def check_runsc_platform(settings: Settings) -> Check:
    runsc = shutil.which(settings.runsc_binary)
    if not runsc:
        return Check("runsc platform", False, "runsc missing", INSTALL_HINT)
    flags = subprocess.run([runsc, "flags"], capture_output=True, text=True, check=False)
    out = flags.stdout + flags.stderr
    if "host-uds" not in out:
        return Check("runsc platform", False, "this runsc lacks --host-uds=create (too old)",
                     "install runsc from bookworm-backports: " + INSTALL_HINT)
    return Check("runsc platform", True, f"platform {settings.runsc_platform}, --host-uds supported")


def check_cgroups() -> Check:
    missing = [c for c in ("memory", "cpu", "pids", "freezer") if not Path(f"/sys/fs/cgroup/{c}").is_dir()]
    if Path("/sys/fs/cgroup/cgroup.controllers").exists() and missing:
        return Check("cgroups", True, "cgroup v2 (unified)")
    if missing:
        return Check("cgroups", False, f"v1 controllers missing: {', '.join(missing)}",
                     "mount the cgroup v1 controllers memory, cpu, pids and freezer under /sys/fs/cgroup")
    return Check("cgroups", True, "v1 memory, cpu, pids, freezer")


def check_overlay() -> Check:
    text = Path("/proc/filesystems").read_text()
    if "overlay" not in text:
        return Check("overlayfs", False, "overlay not in /proc/filesystems", "modprobe overlay")
    return Check("overlayfs", True, "available")


def check_loop() -> Check:
    if not Path("/dev/loop-control").exists():
        return Check("loop devices", False, "/dev/loop-control missing (writable layers are ext4 images)",
                     "modprobe loop")
    return Check("loop devices", True, "/dev/loop-control present")


def check_disk(settings: Settings) -> Check:
    target = settings.data_dir if settings.data_dir.exists() else settings.data_dir.parent
    free_gb = shutil.disk_usage(target).free / 2**30
    if free_gb < 5:
        return Check("disk", False, f"{free_gb:.1f} GiB free under {target}", "free at least 5 GiB or use --data-dir")
    return Check("disk", True, f"{free_gb:.1f} GiB free under {target}")


def check_agent(settings: Settings) -> Check:
    if not settings.agent_binary.exists():
        return Check("agent", False, f"{settings.agent_binary} not built", "python -m corral.agent.build")
    return Check("agent", True, str(settings.agent_binary))


def check_base_template(settings: Settings) -> Check:
    rootfs = settings.templates_dir / "base" / "rootfs"
    if not (rootfs / "bin").exists():
        return Check("base template", False, f"{rootfs} not built", "corral template build base")
    return Check("base template", True, str(rootfs))


def run_checks(settings: Settings) -> list[Check]:
    return [
        Check("root", os.geteuid() == 0, f"euid {os.geteuid()}", "run Corral as root"),
        check_binary("runsc", settings.runsc_binary, ["--version"], INSTALL_HINT),
        check_runsc_platform(settings),
        check_binary("runc", settings.runc_binary, ["--version"], INSTALL_HINT),
        check_binary("debootstrap", "debootstrap", ["--version"], INSTALL_HINT),
        check_binary("go", "go", ["version"], INSTALL_HINT),
        # Sandbox networking (corral/net): netns/veth, the egress table, runsc's netstack wrapper.
        check_binary("nft", "nft", ["--version"], INSTALL_HINT),
        check_binary("ip", "ip", ["-V"], INSTALL_HINT),
        check_binary("unshare", "unshare", ["--version"], INSTALL_HINT),
        check_cgroups(),
        check_overlay(),
        check_loop(),
        check_disk(settings),
        check_agent(settings),
        check_base_template(settings),
    ]
