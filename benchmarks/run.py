"""One command for Corral's benchmarks: starts a server, measures through the stock SDK, runs a peer baseline.

    .venv/bin/python -m benchmarks.run [--n 30]

Prints a p50/p95/p99 table and writes benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.stats import Figure, table
from tests.integration.corral_server import CorralServer


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench_tier(tier: str, n: int) -> list[Figure]:
    from e2b import Sandbox

    meta = {"corral.runtime": tier}
    create_first: list[float] = []
    kill_ms: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        sbx = Sandbox.create(metadata=meta)
        sbx.commands.run("true")
        create_first.append((time.perf_counter() - t0) * 1000)
        kill_ms.append(timed(sbx.kill))
    sbx = Sandbox.create(metadata=meta)
    try:
        sbx.commands.run("true")
        rtt = [timed(lambda: sbx.commands.run("true")) for _ in range(n * 3)]
        payload = os.urandom(1024 * 1024)
        files = [timed(lambda: (sbx.files.write("/tmp/bench.bin", payload), sbx.files.read("/tmp/bench.bin", format="bytes")))
                 for _ in range(n)]
    finally:
        sbx.kill()
    return [
        Figure.of(f"{tier}: Sandbox.create() -> first commands.run('true')", create_first),
        Figure.of(f"{tier}: commands.run('true') round trip", rtt),
        Figure.of(f"{tier}: 1 MiB files.write + files.read", files),
        Figure.of(f"{tier}: kill()", kill_ms),
    ]


def bench_runsc_do(n: int, rootfs: Path) -> Figure:
    """Peer: plain `runsc do` of the same `true` in a fresh gVisor sandbox each time (create + exec + destroy)."""
    samples = []
    root = Path(tempfile.mkdtemp(prefix="bench-runsc-"))
    try:
        for _ in range(n):
            samples.append(timed(lambda: subprocess.run(
                ["runsc", "--root", str(root), "--platform", "ptrace", "--network", "none", "do", "true"],
                check=True, capture_output=True)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return Figure.of("peer: `runsc do true` (create+exec+destroy)", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30, help="samples per figure")
    parser.add_argument("--tiers", default="gvisor,runc")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latest.json")
    args = parser.parse_args()

    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-bench-")))
    server.prepare()
    server.start()
    figures: list[Figure] = []
    try:
        os.environ.update(E2B_API_URL=server.api_url, E2B_SANDBOX_URL=server.sandbox_url,
                          E2B_API_KEY=server.create_key("bench"))
        for tier in args.tiers.split(","):
            figures += bench_tier(tier, args.n)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    figures.append(bench_runsc_do(args.n, Path("/var/lib/corral/templates/base/rootfs")))
    print(table(figures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": [f.as_dict() for f in figures],
    }, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
