"""Both backends for real: create -> health -> destroy, limits, disk quota, rollback, crash cleanup, re-attach."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import ConflictError, InvalidRequestError, RuntimeFailure
from corral.runtime import cgroups
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.health import health_status
from corral.runtime.layout import is_mountpoint, loops_backed_by
from corral.runtime.lifecycle import OciRuntime
from corral.runtime.procs import run_cmd
from tests.integration.runtime.helpers import assert_no_leaks, leftovers, make_runtime, mode_of, spec_for


async def test_create_health_destroy(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs, env={"FOO": "bar"})
    handle = await runtime.create(spec)
    sid = spec.sandbox_id
    assert handle.runtime == runtime.name and handle.sandbox_id == sid
    assert handle.socket_path == settings.sandboxes_dir / sid / "run" / "agent.sock"
    assert await health_status(handle.socket_path) == 204
    assert await runtime.is_alive(sid)
    assert sid in await runtime.list_sandbox_ids()
    # layout as documented: quota'd layer mounted, overlay root, 0700 run dir, bundle
    assert is_mountpoint(handle.sandbox_dir / "layer") and is_mountpoint(handle.sandbox_dir / "rootfs")
    assert len(loops_backed_by(handle.sandbox_dir / "layer.img")) == 1
    assert mode_of(handle.sandbox_dir / "run") == 0o700
    config = json.loads((handle.sandbox_dir / "bundle" / "config.json").read_text())
    assert "FOO=bar" in config["process"]["env"]
    # the agent runs as PID 1 inside its own pid namespace
    rc, out = await runtime.exec_cmd(sid, ["cat", "/proc/1/cmdline"])
    assert rc == 0 and "corral-agent" in out, out
    # writes land in the per-sandbox upper, never in the template
    rc, out = await runtime.exec_cmd(sid, ["touch", "/written-inside"])
    assert rc == 0, out
    assert (handle.sandbox_dir / "layer" / "upper" / "written-inside").exists()
    assert not (tiny_rootfs / "written-inside").exists()
    # its own netns: loopback and eth0 (nftables deny-all until a server applies a policy; corral/net);
    # with networking off, loopback only
    rc, out = await runtime.exec_cmd(sid, ["cat", "/proc/net/dev"])
    ifaces = {line.split(":")[0].strip() for line in out.splitlines() if ":" in line}
    want = {"lo", "eth0"} if runtime.settings.net_enabled else {"lo"}
    assert rc == 0 and ifaces - {"lo"} == want - {"lo"}, out

    t = time.perf_counter()
    await runtime.destroy(sid)
    elapsed = time.perf_counter() - t
    assert_no_leaks(settings, sid)
    assert not await runtime.is_alive(sid)
    assert sid not in await runtime.list_sandbox_ids()
    assert elapsed < 1.0, f"destroy took {elapsed:.3f}s"
    await runtime.destroy(sid)       # idempotent
    rc, out = await run_cmd(*_list_argv(runtime))
    assert rc == 0 and sid not in out, out    # the runtime itself has forgotten it too
    assert not (tiny_rootfs / "written-inside").exists()


async def test_limits_applied(runtime: OciRuntime, tiny_rootfs: Path) -> None:
    spec = spec_for(tiny_rootfs, cpu_count=1, memory_mb=384, pids_limit=777)
    await runtime.create(spec)
    sid = spec.sandbox_id
    assert int(cgroups.read("memory", sid, "memory.limit_in_bytes")) == 384 << 20
    assert int(cgroups.read("cpu", sid, "cpu.cfs_quota_us")) == 100_000
    assert int(cgroups.read("cpu", sid, "cpu.cfs_period_us")) == 100_000
    assert cgroups.read("pids", sid, "pids.max") == "777"
    # the sandbox's host processes are really inside those cgroups
    assert cgroups.pids(sid)
    procs_in_mem = set(map(int, cgroups.read("memory", sid, "cgroup.procs").split()))
    assert procs_in_mem and procs_in_mem <= cgroups.pids(sid)
    await runtime.destroy(sid)


async def test_disk_quota(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs, disk_mb=64)
    handle = await runtime.create(spec)
    sid = spec.sandbox_id
    rc, out = await runtime.exec_cmd(sid, ["dd", "if=/dev/zero", "of=/big", "bs=1M", "count=100"], timeout=60)
    assert rc != 0 and "No space left" in out, out
    written = (handle.sandbox_dir / "layer" / "upper" / "big").stat().st_size
    assert 32 << 20 < written < 64 << 20
    # the image stays sparse-ish: only what was written costs disk
    img = handle.sandbox_dir / "layer.img"
    assert img.stat().st_size == 64 << 20
    rc, out = await runtime.exec_cmd(sid, ["rm", "/big"])
    assert rc == 0, out
    await runtime.destroy(sid)


async def test_runc_hardening(settings: Settings, tiny_rootfs: Path) -> None:
    rt = make_runtime("runc", settings)
    spec = spec_for(tiny_rootfs)
    await rt.create(spec)
    sid = spec.sandbox_id
    try:
        rc, out = await rt.exec_cmd(sid, ["unshare", "-U", "true"])        # seccomp: no new namespaces
        assert rc != 0, out
        rc, out = await rt.exec_cmd(sid, ["cat", "/proc/1/status"])
        cap_eff = int(next(ln for ln in out.splitlines() if ln.startswith("CapEff:")).split()[1], 16)
        assert cap_eff & (1 << 6) and cap_eff & (1 << 7) and cap_eff & (1 << 0)    # SETGID, SETUID, CHOWN
        assert not cap_eff & (1 << 21)                                           # no SYS_ADMIN
        rc, out = await rt.exec_cmd(sid, ["cat", "/proc/kcore"])
        assert rc != 0 or out == "", out                                         # masked
    finally:
        await rt.destroy(sid)
    assert_no_leaks(settings, sid)


async def test_rollback_missing_rootfs(runtime: OciRuntime, work_dir: Path, settings: Settings) -> None:
    spec = spec_for(work_dir / "does-not-exist")
    with pytest.raises(RuntimeFailure, match="template rootfs"):
        await runtime.create(spec)
    assert_no_leaks(settings, spec.sandbox_id)


async def test_rollback_agent_never_ready(
    runtime: OciRuntime, tiny_rootfs: Path, settings: Settings, work_dir: Path
) -> None:
    agent = work_dir / f"sleepy-agent-{runtime.name}"
    agent.write_text("#!/bin/sh\necho sleepy agent starting\nexec sleep 1000\n")
    agent.chmod(0o755)
    rt = make_runtime(runtime.name, settings.model_copy(update={"agent_binary": agent}), ready_timeout=1.5)
    spec = spec_for(tiny_rootfs)
    t = time.perf_counter()
    with pytest.raises(RuntimeFailure, match="did not answer") as err:
        await rt.create(spec)
    assert "sleepy agent starting" in str(err.value)
    assert time.perf_counter() - t < 5
    assert_no_leaks(settings, spec.sandbox_id)


async def test_rollback_agent_exits(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings, work_dir: Path) -> None:
    agent = work_dir / f"crashing-agent-{runtime.name}"
    agent.write_text("#!/bin/sh\necho boom: cannot start >&2\nexit 3\n")
    agent.chmod(0o755)
    rt = make_runtime(runtime.name, settings.model_copy(update={"agent_binary": agent}), ready_timeout=10)
    spec = spec_for(tiny_rootfs)
    t = time.perf_counter()
    with pytest.raises(RuntimeFailure, match="boom: cannot start"):
        await rt.create(spec)
    assert time.perf_counter() - t < 3, "an exited sandbox must fail fast, not after the ready timeout"
    assert_no_leaks(settings, spec.sandbox_id)


async def test_rollback_missing_agent(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    rt = make_runtime(runtime.name, settings.model_copy(update={"agent_binary": Path("/nonexistent/agent")}))
    spec = spec_for(tiny_rootfs)
    with pytest.raises(RuntimeFailure, match="agent binary"):
        await rt.create(spec)
    assert_no_leaks(settings, spec.sandbox_id)


@pytest.mark.parametrize("delay", [0.005, 0.03, 0.06, 0.1, 0.14])
async def test_rollback_on_cancel(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings, delay: float) -> None:
    """Cancel create at several points (layer, overlay, `run` in flight, readiness): nothing may be left."""
    spec = spec_for(tiny_rootfs)
    task = asyncio.ensure_future(runtime.create(spec))
    await asyncio.sleep(delay)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:                           # it won the race: fine, but it must then be destroyable
        await runtime.destroy(spec.sandbox_id)
    assert_no_leaks(settings, spec.sandbox_id)
    assert spec.sandbox_id not in await runtime.list_sandbox_ids()


async def test_duplicate_and_bad_ids(runtime: OciRuntime, tiny_rootfs: Path) -> None:
    spec = spec_for(tiny_rootfs)
    await runtime.create(spec)
    with pytest.raises(ConflictError):
        await runtime.create(spec)
    assert await runtime.is_alive(spec.sandbox_id)       # the failed duplicate did not tear the first one down
    with pytest.raises(InvalidRequestError):
        await runtime.destroy("../../etc")
    with pytest.raises(InvalidRequestError):
        runtime.handle_for("short")
    await runtime.destroy(spec.sandbox_id)


async def test_reattach_after_restart(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs)
    await runtime.create(spec)
    sid = spec.sandbox_id
    fresh = make_runtime(runtime.name, settings)      # a new server process knows nothing but the data dir
    assert sid in await fresh.list_sandbox_ids()
    assert await fresh.is_alive(sid)
    handle = fresh.handle_for(sid)
    assert handle.runtime == runtime.name
    assert await health_status(handle.socket_path) == 204
    other = make_runtime("runc" if runtime.name == "gvisor" else "gvisor", settings)
    assert sid not in await other.list_sandbox_ids()   # each backend only claims its own sandboxes
    await fresh.destroy(sid)
    assert_no_leaks(settings, sid)


async def test_cleanup_after_sandbox_crash(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs)
    await runtime.create(spec)
    sid = spec.sandbox_id
    # the sandbox dies behind our back (OOM killer, a crash): SIGKILL one of its host processes
    victim = min(cgroups.pids(sid))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while await runtime.is_alive(sid):
        assert time.monotonic() < deadline, "sandbox still alive after its main process was killed"
        await asyncio.sleep(0.02)
    fresh = make_runtime(runtime.name, settings)
    assert sid in await fresh.list_sandbox_ids()
    await fresh.destroy(sid)
    assert_no_leaks(settings, sid)


async def test_cleanup_after_server_crash_mid_create(tiny_rootfs: Path, settings: Settings) -> None:
    """A dir with a mounted layer and overlay but no container (the server died between steps)."""
    from corral.runtime import layout

    rt = make_runtime("gvisor", settings)
    spec = spec_for(tiny_rootfs)
    lay = layout.SandboxLayout.of(settings.sandboxes_dir, spec.sandbox_id)
    lay.dir.mkdir(parents=True)
    await layout.create_layer(lay, 64)
    layout.mount_rootfs(lay, tiny_rootfs, [".corral/"])
    assert leftovers(settings, spec.sandbox_id)
    assert spec.sandbox_id in await rt.list_sandbox_ids()   # no marker: either backend may claim it
    await rt.destroy(spec.sandbox_id)
    assert_no_leaks(settings, spec.sandbox_id)


def _list_argv(runtime: OciRuntime) -> list[str]:
    if isinstance(runtime, GVisorRuntime):
        return [runtime.settings.runsc_binary, *runtime.global_flags(), "list"]
    return [runtime.settings.runc_binary, f"--root={runtime.settings.runc_root}", "list"]



BASE_ROOTFS = Path("/var/lib/corral/templates/base/rootfs")


@pytest.mark.skipif(not (BASE_ROOTFS / "usr" / "bin" / "sudo").exists(), reason="base template not built")
async def test_base_template_user_and_sudo(runtime: OciRuntime, settings: Settings) -> None:
    """On the real debootstrap template: bash runs, the user is unprivileged, and on runc it can sudo
    (noNewPrivileges off, setuid/setgid caps in the bounding set)."""
    spec = spec_for(BASE_ROOTFS)
    await runtime.create(spec)
    sid = spec.sandbox_id
    rc, out = await runtime.exec_cmd(sid, ["/bin/bash", "-c", "echo hi from $(hostname)"])
    assert rc == 0 and out == "hi from corral", out
    as_user = ["setpriv", "--reuid=1000", "--regid=1000", "--init-groups"]
    rc, out = await runtime.exec_cmd(sid, [*as_user, "id", "-u"])
    assert rc == 0 and out == "1000", out
    rc, out = await runtime.exec_cmd(sid, [*as_user, "sudo", "-n", "id", "-u"], timeout=60)
    if runtime.name == "gvisor":
        # runsc 20240729 ignores setuid bits (google/gvisor#212: "as if all processes had NO_NEW_PRIVS"), so sudo
        # refuses whatever the spec says. Fails (and should be updated) once a runsc build supports setuid.
        assert rc != 0 and "no new privileges" in out, out
    else:
        assert rc == 0 and out.splitlines()[-1] == "0", out
    rc, out = await runtime.exec_cmd(sid, [*as_user, "touch", "/etc/nope"])
    assert rc != 0, out                 # and the user really is unprivileged
    await runtime.destroy(sid)


async def test_concurrent_creates_and_destroys(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:

    specs = [spec_for(tiny_rootfs, disk_mb=64) for _ in range(4)]
    handles = await asyncio.gather(*(runtime.create(s) for s in specs))
    assert len({h.socket_path for h in handles}) == 4
    loops = {dev for h in handles for dev in loops_backed_by(h.sandbox_dir / "layer.img")}
    assert len(loops) == 4                                  # one loop device each, no sharing
    assert all([await health_status(h.socket_path) == 204 for h in handles])
    await asyncio.gather(*(runtime.destroy(s.sandbox_id) for s in specs))
    for s in specs:
        assert_no_leaks(settings, s.sandbox_id)


async def test_unmarked_leftover_destroyed_by_both_backends_at_once(tiny_rootfs: Path, settings: Settings) -> None:

    from corral.runtime import layout

    spec = spec_for(tiny_rootfs)
    lay = layout.SandboxLayout.of(settings.sandboxes_dir, spec.sandbox_id)
    lay.dir.mkdir(parents=True)
    await layout.create_layer(lay, 64)
    layout.mount_rootfs(lay, tiny_rootfs, [".corral/"])
    await asyncio.gather(make_runtime("gvisor", settings).destroy(spec.sandbox_id),
                         make_runtime("runc", settings).destroy(spec.sandbox_id))
    assert_no_leaks(settings, spec.sandbox_id)


async def test_memory_limit_enforced(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs, memory_mb=128)
    await runtime.create(spec)
    sid = spec.sandbox_id
    # dd's 300 MiB buffer, filled from /dev/zero, is far above the 128 MiB limit
    rc, out = await runtime.exec_cmd(sid, ["dd", "if=/dev/zero", "of=/dev/null", "bs=300M", "count=1"], timeout=60)
    assert rc != 0, out
    assert "oom_kill 1" in cgroups.read("memory", sid, "memory.oom_control")
    if runtime.name == "runc":
        assert rc == 137 and await runtime.is_alive(sid)     # only the hog died
    else:
        # gVisor: the host kernel OOM-kills the Sentry, i.e. the whole sandbox.
        deadline = time.monotonic() + 5
        while await runtime.is_alive(sid):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    await runtime.destroy(sid)
    assert_no_leaks(settings, sid)


async def test_id_reusable_after_destroy(runtime: OciRuntime, tiny_rootfs: Path) -> None:
    """Our fast destroy (no `runsc delete`) must leave no runtime state that blocks the same id."""
    spec = spec_for(tiny_rootfs)
    for _ in range(2):
        handle = await runtime.create(spec)
        assert await health_status(handle.socket_path) == 204
        await runtime.destroy(spec.sandbox_id)


async def test_destroy_with_many_processes(runtime: OciRuntime, tiny_rootfs: Path, settings: Settings) -> None:
    spec = spec_for(tiny_rootfs)
    await runtime.create(spec)
    sid = spec.sandbox_id
    script = "for i in $(seq 150); do sleep 1000 >/dev/null 2>&1 & done; echo started"
    rc, out = await runtime.exec_cmd(sid, ["sh", "-c", script], timeout=60)
    assert rc == 0 and "started" in out, out
    rc, out = await runtime.exec_cmd(sid, ["sh", "-c", "ps | grep -c 'sleep 1000'"])
    assert int(out.split()[-1]) >= 150, out
    t = time.perf_counter()
    await runtime.destroy(sid)
    assert time.perf_counter() - t < 2.0
    assert_no_leaks(settings, sid)


async def test_layer_has_room_for_many_files(runtime: OciRuntime, tiny_rootfs: Path) -> None:
    spec = spec_for(tiny_rootfs, disk_mb=1024)
    handle = await runtime.create(spec)
    st = os.statvfs(handle.sandbox_dir / "layer")
    assert st.f_files >= 120_000                      # inodes: node_modules-sized trees fit
    assert st.f_blocks * st.f_frsize > 900 << 20      # and the quota is (almost) all usable space
    assert (handle.sandbox_dir / "layer.img").stat().st_blocks * 512 < 64 << 20   # still sparse on the host
    await runtime.destroy(spec.sandbox_id)
