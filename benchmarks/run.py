"""One command for Corral's benchmarks: starts a server, measures through the stock SDK, runs a peer baseline.

    .venv/bin/python -m benchmarks.run [--n 30] [--network | --network-only]

Prints a p50/p95/p99 table, the speedup against each peer, and writes benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.interpreter import bench_interpreter
from benchmarks.load import bench_concurrent_creates, bench_density, bench_sustained
from benchmarks.network import bench_network
from benchmarks.pause import bench_pause, bench_paused_density
from benchmarks.peers import bench_llm_sandbox, bench_podman_runsc, bench_runsc_do
from benchmarks.ports import bench_exposed_port
from benchmarks.stats import Figure, ratio_table, ratios, table
from benchmarks.steady import wait_pool_full
from tests.integration.corral_server import BASE_TEMPLATES, CorralServer, teardown_server

ROOTFS = BASE_TEMPLATES / "base" / "rootfs"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench_tier(tier: str, n: int, data_dir: Path, pool_size: int) -> list[Figure]:
    from e2b import Sandbox

    meta = {"corral.runtime": tier}
    create_first: list[float] = []
    kill_ms: list[float] = []
    for _ in range(n):
        wait_pool_full(data_dir, tier, pool_size)
        t0 = time.perf_counter()
        sbx = Sandbox.create(metadata=meta)
        sbx.commands.run("true")
        create_first.append((time.perf_counter() - t0) * 1000)
        kill_ms.append(timed(sbx.kill))
    sbx = Sandbox.create(metadata=meta)
    try:
        sbx.commands.run("true")
        rtt = [timed(lambda: sbx.commands.run("true")) for _ in range(n * 3)]
        spaced = []
        for _ in range(n * 3):
            time.sleep(0.05)  # an agent's pace: the model thinks between commands (the warm shell is remade meanwhile)
            spaced.append(timed(lambda: sbx.commands.run("true")))
        payload = os.urandom(1024 * 1024)
        files = [timed(lambda: (sbx.files.write("/tmp/bench.bin", payload), sbx.files.read("/tmp/bench.bin", format="bytes")))
                 for _ in range(n)]
    finally:
        sbx.kill()
    warm = "warm pool" if pool_size else "no pool"
    return [
        Figure.of(f"{tier}: Sandbox.create() -> first commands.run('true') ({warm})", create_first),
        Figure.of(f"{tier}: commands.run('true') round trip, back to back", rtt),
        Figure.of(f"{tier}: commands.run('true') round trip, 50 ms apart", spaced),
        Figure.of(f"{tier}: 1 MiB files.write + files.read", files),
        Figure.of(f"{tier}: kill()", kill_ms),
    ]


def bench_peers(names: list[str], n: int, rootfs: Path) -> tuple[list[Figure], dict[str, str]]:
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name == "runsc":
            figures.append(bench_runsc_do(n))
        elif name == "podman":
            got = bench_podman_runsc(n, rootfs)
            if isinstance(got, Figure):
                figures.append(got)
            else:
                skipped[name] = got
        elif name == "llm-sandbox":
            got = bench_llm_sandbox(min(n, 5), rootfs)  # each close waits 10 s
            if isinstance(got, Figure):
                figures.append(got)
            else:
                skipped[name] = got
    return figures, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30, help="samples per figure")
    parser.add_argument("--tiers", default="gvisor,runc")
    parser.add_argument("--pool-size", type=int, default=2, help="the server's warm pool size (0: off)")
    parser.add_argument("--concurrency", type=int, default=10, help="clients for the concurrent-create figure")
    parser.add_argument("--sustained-s", type=float, default=10.0, help="seconds of the sustained-creates figure")
    parser.add_argument("--density", type=int, default=50, help="idle sandboxes for the density figures (0: skip)")
    parser.add_argument("--peers", default="runsc,podman,llm-sandbox")
    parser.add_argument("--network", action="store_true",
                        help="also: cold create latency with networking (netns + nft policy) vs without, no pool")
    parser.add_argument("--port-s", type=float, default=5.0,
                        help="seconds of the exposed-port throughput figure per tier (0: skip)")
    parser.add_argument("--port-clients", type=int, default=8, help="keep-alive clients for the exposed-port figure")
    parser.add_argument("--interpreter", action="store_true",
                        help="also: code interpreter create, first run_code and trivial-cell figures")
    parser.add_argument("--network-only", action="store_true", help="only the --network figures")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latest.json")
    parser.add_argument("--pause", action="store_true",
                        help="only the pause/resume figures (benchmarks/pause.py): pause, resume, fork, disk")
    parser.add_argument("--paused-density", type=int, default=50,
                        help="with --pause: this many idle sandboxes paused at once (0: skip)")
    args = parser.parse_args()
    if args.network_only:
        figures_only = bench_network(args.tiers.split(","), args.n)
        print(table(figures_only))
        _write(args.out, figures_only, [], {})
        return
    if args.pause:
        args.tiers, args.peers, args.pool_size = "", "", 0

    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-bench-")))
    server.prepare()
    server.start(("--pool-size", str(args.pool_size)))
    figures: list[Figure] = []
    try:
        os.environ.update(E2B_API_URL=server.api_url, E2B_SANDBOX_URL=server.sandbox_url,
                          E2B_API_KEY=server.create_key("bench"))
        if args.pause:
            figures += bench_pause(args.n, server.data_dir, server.api_url, os.environ["E2B_API_KEY"])
            if args.paused_density:
                figures += bench_paused_density(args.paused_density, server.data_dir, server.api_url,
                                                os.environ["E2B_API_KEY"])
        for tier in [t for t in args.tiers.split(",") if t]:
            figures += bench_tier(tier, args.n, server.data_dir, args.pool_size)
            if args.port_s:
                figures += bench_exposed_port(tier, args.port_s, args.port_clients)
            if args.interpreter:
                figures += bench_interpreter(tier, args.n, server.data_dir, args.pool_size)
        gvisor = "gvisor" in args.tiers.split(",")
        if gvisor:
            figures.append(bench_concurrent_creates("gvisor", args.concurrency, max(1, args.n // args.concurrency)))
            figures.append(bench_sustained("gvisor", 4, args.sustained_s))
            if args.density:
                figures += bench_density("gvisor", args.density, server.data_dir)
    finally:
        teardown_server(server, log_lines=0)  # also what a stop leaves by design: the data dir's shared bind
    if args.network:
        figures += bench_network(args.tiers.split(","), args.n)
    peers, skipped = bench_peers([p for p in args.peers.split(",") if p], args.n, ROOTFS)
    figures += peers
    creates = {f.name.split(":")[0]: f for f in figures if "Sandbox.create() -> first" in f.name}
    rows = ratios(creates["gvisor"], peers) if "gvisor" in creates else []
    if "runc" in creates:  # llm-sandbox runs on runc here: also against our runc tier
        rows += ratios(creates["runc"], [p for p in peers if "runc)" in p.name])
    print(table(figures))
    if rows:
        print()
        print(ratio_table(rows))
    for name, why in skipped.items():
        print(f"peer {name} not measured: {why}")
    _write(args.out, figures, rows, skipped)


def _write(out: Path, figures: list[Figure], rows: list[dict[str, object]], skipped: dict[str, str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
        "figures": [f.as_dict() for f in figures],
        "ratios": rows,
        "peers_skipped": skipped,
    }, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
