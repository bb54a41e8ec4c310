"""Pause/resume benchmarks: API latency of pause and resume (idle, and holding 256 MiB), fork, disk per paused sandbox."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from benchmarks.stats import Figure
from corral.runtime.suspend import allocated_bytes

# Fills 256 MiB with incompressible bytes and keeps it (a checkpoint must write all of it).
HOLD_256 = ("python3 -c 'import os, time\nchunks = [os.urandom(1 << 20) "
            "for _ in range(256)]\nopen(\"/tmp/ready\", \"w\").write(\"1\")\ntime.sleep(100000)\n'")


def _cycle(api: str, key: str, sid: str, n: int, label: str, first_cmd: bool) -> list[Figure]:
    from e2b import Sandbox

    pauses: list[float] = []
    resumes: list[float] = []
    firsts: list[float] = []
    headers = {"X-API-KEY": key}
    with httpx.Client(base_url=api, headers=headers, timeout=120) as client:
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(f"/sandboxes/{sid}/pause", json={})
            pauses.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 204, r.text
            t = time.perf_counter()
            r = client.post(f"/v2/sandboxes/{sid}/connect", json={"timeout": 600})
            resumes.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 201, r.text
            if first_cmd:
                Sandbox.connect(sid).commands.run("true")   # the connect answers 200 now: it is running
                firsts.append((time.perf_counter() - t) * 1000)
    figures = [Figure.of(f"pause ({label}): POST /pause -> 204", pauses),
               Figure.of(f"resume ({label}): POST /connect -> 201 (agent answering)", resumes)]
    if firsts:
        figures.append(Figure.of(f"resume ({label}) -> first command done (incl. SDK connect)", firsts))
    return figures


def bench_pause(n: int, data_dir: Path, api: str, key: str, forks: int = 10) -> list[Figure]:
    """Every figure of the pause work, on the gVisor tier, against a running server."""
    from e2b import Sandbox

    figures: list[Figure] = []
    idle = Sandbox.create(metadata={"corral.runtime": "gvisor"}, timeout=600)
    try:
        figures += _cycle(api, key, idle.sandbox_id, n, "idle", first_cmd=True)
        # Disk of one paused idle sandbox: its directory (sparse layer.img, bundle, log) + its checkpoint image.
        with httpx.Client(base_url=api, headers={"X-API-KEY": key}, timeout=120) as client:
            assert client.post(f"/sandboxes/{idle.sandbox_id}/pause", json={}).status_code == 204
            disk = allocated_bytes([data_dir / "sandboxes" / idle.sandbox_id, data_dir / "checkpoints" / idle.sandbox_id])
            figures.append(Figure.of("disk per paused idle sandbox", [disk / (1 << 20)], unit="MiB"))
            assert client.post(f"/v2/sandboxes/{idle.sandbox_id}/connect", json={"timeout": 600}).status_code == 201
        if forks:
            t = time.perf_counter()
            try:
                made = Sandbox.fork(idle.sandbox_id, count=forks)
            except Exception as e:  # noqa: BLE001 - a server without fork: say so, measure the rest
                print(f"fork not measured: {e}")
                made = []
            else:
                elapsed = (time.perf_counter() - t) * 1000
                ok = [m for m in made if not isinstance(m, Exception)]
                figures.append(Figure.of(f"fork of {forks}: POST /fork -> {len(ok)} running", [elapsed]))
            for m in made:
                if not isinstance(m, Exception):
                    m.kill()
    finally:
        idle.kill()
    big = Sandbox.create(metadata={"corral.runtime": "gvisor"}, timeout=600)
    try:
        big.commands.run(HOLD_256, background=True)
        deadline = time.monotonic() + 120
        while not big.files.exists("/tmp/ready"):
            if time.monotonic() > deadline:
                raise RuntimeError("the 256 MiB holder did not start")
            time.sleep(0.2)
        figures += _cycle(api, key, big.sandbox_id, max(3, n // 3), "holding 256 MiB", first_cmd=False)
        with httpx.Client(base_url=api, headers={"X-API-KEY": key}, timeout=120) as client:
            assert client.post(f"/sandboxes/{big.sandbox_id}/pause", json={}).status_code == 204
            disk = allocated_bytes([data_dir / "checkpoints" / big.sandbox_id])
            figures.append(Figure.of("checkpoint image of a sandbox holding 256 MiB", [disk / (1 << 20)], unit="MiB"))
    finally:
        big.kill()
    return figures


def bench_paused_density(count: int, data_dir: Path, api: str, key: str) -> list[Figure]:
    """`count` idle gVisor sandboxes paused at once: disk per sandbox, and that none holds a process or a mount."""
    from e2b import Sandbox

    ids: list[str] = []
    try:
        with httpx.Client(base_url=api, headers={"X-API-KEY": key}, timeout=120) as client:
            for _ in range(count):
                sid = Sandbox.create(metadata={"corral.runtime": "gvisor"}, timeout=600).sandbox_id
                ids.append(sid)
                assert client.post(f"/sandboxes/{sid}/pause", json={}).status_code == 204
            disk = allocated_bytes([data_dir / "sandboxes", data_dir / "checkpoints"]) / count / (1 << 20)
            procs = _host_processes_of(ids)
            mounts = sum(1 for line in Path("/proc/self/mountinfo").read_text().splitlines()
                         if any(sid in line for sid in ids))
            print(f"{count} paused sandboxes: {disk:.2f} MiB each, {procs} host processes, {mounts} mounts")
            t = time.perf_counter()
            assert client.post(f"/v2/sandboxes/{ids[0]}/connect", json={"timeout": 60}).status_code == 201
            resumed = (time.perf_counter() - t) * 1000
    finally:
        for sid in ids:
            Sandbox.kill(sid)
    return [Figure.of(f"disk per paused idle sandbox ({count} paused)", [disk], unit="MiB"),
            Figure.of(f"host processes + mounts of {count} paused sandboxes", [float(procs + mounts)], unit="count"),
            Figure.of(f"resume of one among {count} paused", [resumed])]


def _host_processes_of(ids: list[str]) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        n += any(sid in cmd for sid in ids)
    return n
