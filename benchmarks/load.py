"""Load figures through the stock SDK: create latency under concurrency, sustained creates/s, idle density."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.stats import Figure
from corral.pool import pool_member_ids

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _create_run_kill(meta: dict[str, str]) -> float:
    from e2b import Sandbox

    t0 = time.perf_counter()
    sbx = Sandbox.create(metadata=meta)
    sbx.commands.run("true")
    ms = (time.perf_counter() - t0) * 1000
    sbx.kill()
    return ms


def bench_concurrent_creates(tier: str, concurrency: int, rounds: int) -> Figure:
    """`concurrency` clients at once, each create -> first run('true') -> kill, `rounds` times."""
    meta = {"corral.runtime": tier}
    with ThreadPoolExecutor(concurrency) as ex:
        samples = list(ex.map(lambda _: _create_run_kill(meta), range(concurrency * rounds)))
    return Figure.of(f"{tier}: create -> first run('true'), {concurrency} concurrent clients", samples)


def bench_sustained(tier: str, workers: int, seconds: float) -> Figure:
    """Creates completed per second (create, run('true'), kill) by `workers` clients in a closed loop."""
    meta = {"corral.runtime": tier}
    done: list[float] = []
    stop_at = time.perf_counter() + seconds
    lock = threading.Lock()

    def loop() -> None:
        while time.perf_counter() < stop_at:
            ms = _create_run_kill(meta)
            with lock:
                done.append(ms)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = len(done) / (time.perf_counter() - t0)
    return Figure(f"{tier}: sustained creates/s (create+run+kill, {workers} clients, {seconds:g}s)", "creates/s",
                  len(done), rate, rate, rate, rate)


def _mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable")


def sandbox_pids(data_dir: Path) -> list[int]:
    """Host processes of a server's user sandboxes (runsc sandbox/gofer, runc init: the cmdline names the data dir),
    warm pool members left out."""
    needle = str(data_dir.resolve()).encode()
    members = [m.encode() for m in pool_member_ids(data_dir)]
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and b"corral.cli.main" not in cmdline and not any(m in cmdline for m in members):
                pids.append(int(p))
    return pids


def _pss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total


def bench_density(tier: str, count: int, data_dir: Path, idle_s: float = 10.0) -> list[Figure]:
    """Start `count` sandboxes, leave them idle, measure host memory and CPU per sandbox, check all still answer."""
    from e2b import Sandbox

    meta = {"corral.runtime": tier}
    members_before = len(pool_member_ids(data_dir))
    pss_before = _pss_kb(sandbox_pids(data_dir))
    avail_before = _mem_available_kb()
    with ThreadPoolExecutor(4) as ex:
        sandboxes = list(ex.map(lambda _: Sandbox.create(metadata=meta, timeout=1800), range(count)))
    try:
        time.sleep(3)  # let start-up work settle
        pids = sandbox_pids(data_dir)
        ticks0, t0 = _cpu_ticks(pids), time.perf_counter()
        time.sleep(idle_s)
        cpu_pct = (_cpu_ticks(pids) - ticks0) / CLK_TCK / (time.perf_counter() - t0) * 100
        pss_mb = (_pss_kb(pids) - pss_before) / 1024 / count
        # MemAvailable also pays for warm pool members started meanwhile (demand grows the pool): count them in.
        grown = max(0, len(pool_member_ids(data_dir)) - members_before)
        avail_mb = (avail_before - _mem_available_kb()) / 1024 / (count + grown)
        with ThreadPoolExecutor(4) as ex:
            answered = sum(ex.map(lambda s: s.commands.run("true").exit_code == 0, sandboxes))
    finally:
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda s: s.kill(), sandboxes))
    label = f"{tier}: {count} idle sandboxes"
    return [
        Figure(f"{label}, host PSS per sandbox (answering: {answered}/{count})", "MB", count, pss_mb, pss_mb, pss_mb,
               pss_mb),
        Figure(f"{label}, MemAvailable drop per sandbox", "MB", count, avail_mb, avail_mb, avail_mb, avail_mb),
        Figure(f"{label}, CPU per sandbox over {idle_s:g}s", "% of a core", count, cpu_pct / count, cpu_pct / count,
               cpu_pct / count, cpu_pct / count),
    ]
