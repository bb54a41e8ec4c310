"""Create/destroy latency per backend and per step: `sudo .venv/bin/python -m tests.integration.runtime.bench_runtime
[-n 10] [--rootfs DIR] [--runtime gvisor|runc ...]` (default rootfs: a busybox dir; pass the base template's rootfs)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from corral.agent.build import build_agent
from corral.config import Settings
from corral.ids import new_sandbox_id
from corral.runtime.base import SandboxSpec
from tests.integration.runtime.helpers import leftovers, make_runtime


def _busybox_rootfs(d: Path) -> Path:
    root = d / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


def _ms(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs) * 1000:7.1f} ms  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"


async def bench(name: str, settings: Settings, rootfs: Path, n: int) -> None:
    rt = make_runtime(name, settings)
    create: list[float] = []
    destroy: list[float] = []
    steps: dict[str, list[float]] = {}
    dsteps: dict[str, list[float]] = {}
    for _ in range(n):
        sid = new_sandbox_id()
        t = time.perf_counter()
        await rt.create(SandboxSpec(sandbox_id=sid, template_rootfs=rootfs))
        create.append(time.perf_counter() - t)
        for k, v in rt.last_create_timings.items():
            steps.setdefault(k, []).append(v)
        t = time.perf_counter()
        await rt.destroy(sid)
        destroy.append(time.perf_counter() - t)
        for k, v in rt.last_destroy_timings.items():
            dsteps.setdefault(k, []).append(v)
        assert not leftovers(settings, sid), leftovers(settings, sid)
    print(f"{name}: n={n} rootfs={rootfs}")
    print(f"  create  {_ms(create)}")
    for k, v in steps.items():
        print(f"    {k:9s} {_ms(v)}")
    print(f"  destroy {_ms(destroy)}")
    for k, v in dsteps.items():
        print(f"    {k:9s} {_ms(v)}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--rootfs", type=Path)
    ap.add_argument("--runtime", action="append", choices=["gvisor", "runc"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    try:
        settings = Settings(data_dir=work / "data", agent_binary=build_agent(work / "corral-agent"))
        rootfs = args.rootfs or _busybox_rootfs(work)
        for name in args.runtime or ["gvisor", "runc"]:
            await bench(name, settings, rootfs, args.n)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    asyncio.run(main())
