"""Benchmark: the code interpreter through the stock e2b-code-interpreter SDK — create, first run_code, trivial cell."""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.stats import Figure
from benchmarks.steady import wait_pool_full

TEMPLATE = "code-interpreter-v1"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def wait_template_snapshot(data_dir: Path, template_id: str, timeout: float = 120.0) -> bool:
    """Whether the template's memory snapshot is captured (the first create of a template starts the capture)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((data_dir / "template-snapshots" / template_id).glob("*/complete")):
            return True
        time.sleep(0.2)
    return False


def bench_interpreter(tier: str, n: int, data_dir: Path, pool_size: int) -> list[Figure]:
    """`n` fresh sandboxes of code-interpreter-v1: Sandbox.create(), the first run_code on it (what an agent waits
    for after create), and create + first run_code together; then 3n trivial cells on one sandbox. On gVisor the
    samples start once the template's memory snapshot exists and, with CORRAL_POOL_SNAPSHOT_RESTORES=1, each once the
    template's warm pool (restores of that snapshot) has refilled. runc has neither: its creates are cold."""
    from e2b_code_interpreter import Sandbox

    meta = {"corral.runtime": tier}
    Sandbox.create(metadata=meta).kill()
    snapshots = tier == "gvisor"
    if snapshots and not wait_template_snapshot(data_dir, TEMPLATE):
        raise RuntimeError(f"{TEMPLATE}: no template memory snapshot after 120 s")
    create_ms: list[float] = []
    first_ms: list[float] = []
    total_ms: list[float] = []
    pooled = snapshots and pool_size and os.environ.get("CORRAL_POOL_SNAPSHOT_RESTORES", "").lower() in ("1", "true")
    for _ in range(n):
        if pooled:
            wait_pool_full(data_dir, tier, pool_size, timeout=30, template=TEMPLATE)
        t0 = time.perf_counter()
        sbx = Sandbox.create(metadata=meta)
        created = _ms(t0)
        try:
            t1 = time.perf_counter()
            ex = sbx.run_code("1 + 1")
            first = _ms(t1)
            if ex.error or not ex.results or ex.results[0].text != "2":
                raise RuntimeError(f"first run_code answered {ex!r}")
        finally:
            sbx.kill()
        create_ms.append(created)
        first_ms.append(first)
        total_ms.append(created + first)
    sbx = Sandbox.create(metadata=meta)
    try:
        sbx.run_code("x = 0")
        rounds = []
        for _ in range(3 * n):
            t0 = time.perf_counter()
            sbx.run_code("x += 1; x")
            rounds.append(_ms(t0))
    finally:
        sbx.kill()
    return [
        Figure.of(f"{tier}: code interpreter Sandbox.create()", create_ms),
        Figure.of(f"{tier}: first run_code('1 + 1') on a new sandbox", first_ms),
        Figure.of(f"{tier}: create + first run_code", total_ms),
        Figure.of(f"{tier}: run_code round trip, trivial cell", rounds),
    ]
