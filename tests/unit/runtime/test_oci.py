"""The OCI spec we hand runsc/runc: agent as init, limits, namespaces, mounts, and the runc tier's hardening."""

from __future__ import annotations

from pathlib import Path

from corral.runtime.base import SandboxSpec
from corral.runtime.layout import SandboxLayout
from corral.runtime.oci import AGENT_ARGS, build_config

SID = "abcdefghij0123456789"


def _config(hardened: bool, **kw: object) -> dict:
    spec = SandboxSpec(sandbox_id=SID, template_rootfs=Path("/tpl"), **kw)  # type: ignore[arg-type]
    lay = SandboxLayout.of(Path("/data/sandboxes"), SID)
    return build_config(spec, lay, Path("/opt/agent"), hardened)


def test_process_is_the_agent_as_root() -> None:
    c = _config(False, env={"A": "1", "PATH": "/custom"})
    p = c["process"]
    assert AGENT_ARGS == ["/.corral/corral-agent", "serve", "--listen", "unix:/run/corral/agent.sock"]
    assert p["args"] == [*AGENT_ARGS, "--output-buffer", str(1 << 20)]
    assert p["user"] == {"uid": 0, "gid": 0} and p["cwd"] == "/" and p["terminal"] is False
    assert "A=1" in p["env"] and "PATH=/custom" in p["env"]
    assert sum(e.startswith("PATH=") for e in p["env"]) == 1
    assert p["noNewPrivileges"] is False


def test_root_hostname_and_mounts() -> None:
    c = _config(False, hostname="box")
    assert c["root"]["path"] == f"/data/sandboxes/{SID}/rootfs" and c["hostname"] == "box"
    by_dest = {m["destination"]: m for m in c["mounts"]}
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/tmp", "/run/corral", "/.corral/corral-agent"} <= set(
        by_dest
    )
    assert by_dest["/run/corral"]["source"] == f"/data/sandboxes/{SID}/run"
    assert "rw" in by_dest["/run/corral"]["options"]
    agent = by_dest["/.corral/corral-agent"]
    assert agent["source"] == "/opt/agent" and "ro" in agent["options"]
    assert by_dest["/tmp"]["type"] == "tmpfs"


def test_limits_and_namespaces() -> None:
    c = _config(False, cpu_count=3, memory_mb=256, pids_limit=99)
    linux = c["linux"]
    assert linux["cgroupsPath"] == f"/corral/{SID}"
    r = linux["resources"]
    assert r["memory"]["limit"] == 256 << 20
    assert r["cpu"] == {"quota": 300_000, "period": 100_000, "shares": 3 * 1024}
    assert r["pids"]["limit"] == 99
    c = _config(False, nofile=1000, tmp_mb=64, output_buffer_bytes=65536)
    assert c["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 1000}]
    assert "size=64m" in {m["destination"]: m for m in c["mounts"]}["/tmp"]["options"]
    assert c["process"]["args"][-2:] == ["--output-buffer", "65536"]
    ns = linux["namespaces"]
    assert {n["type"] for n in ns} == {"pid", "ipc", "uts", "mount", "network"}
    assert all("path" not in n for n in ns)   # fresh, empty namespaces


def test_capabilities_allow_agent_work_but_not_sys_admin() -> None:
    for hardened in (False, True):
        caps = _config(hardened)["process"]["capabilities"]
        for s in ("bounding", "effective", "permitted"):
            assert {"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"} <= set(caps[s])
            assert "CAP_SYS_ADMIN" not in caps[s]


def test_hardening_only_on_runc_tier() -> None:
    soft, hard = _config(False)["linux"], _config(True)["linux"]
    assert "seccomp" not in soft and "maskedPaths" not in soft
    assert "/proc/kcore" in hard["maskedPaths"] and "/proc/sys" in hard["readonlyPaths"]
    sc = hard["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {n for rule in sc["syscalls"] if "args" not in rule for n in rule["names"]}
    assert {"unshare", "setns", "mount", "bpf", "keyctl", "clone3"} <= denied
    # clone is filtered per namespace flag only: plain thread/process creation must stay allowed
    clone_rules = [r for r in sc["syscalls"] if r["names"] == ["clone"]]
    assert len(clone_rules) == 7
    assert all(r["args"][0]["value"] == r["args"][0]["valueTwo"] for r in clone_rules)
    thread_flags = 0x003D0F00     # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    assert not any(thread_flags & r["args"][0]["value"] for r in clone_rules)
