"""Networking cost: cold create latency with a per-sandbox netns + nft policy vs without networking (no pool).

Both servers run at once and creates alternate between them, so load from elsewhere on the host hits both alike."""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.stats import Figure
from tests.integration.corral_server import CorralServer, teardown_server

VARIANTS = (("networked", "true"), ("no network", "false"))


def _create(server: CorralServer, key: str, tier: str) -> tuple[float, float]:
    from e2b import Sandbox

    t0 = time.perf_counter()
    sbx = Sandbox.create(metadata={"corral.runtime": tier}, api_key=key, api_url=server.api_url,
                         sandbox_url=server.sandbox_url)
    created = (time.perf_counter() - t0) * 1000
    sbx.commands.run("true")
    first = (time.perf_counter() - t0) * 1000
    sbx.kill()
    time.sleep(0.2)  # the background teardown of this one should not land on the next create
    return created, first


def bench_network(tiers: list[str], n: int) -> list[Figure]:
    """Two servers without warm pools (the pool would hide the cost): networking on (default) and off."""
    figures: list[Figure] = []
    with ExitStack() as stack:
        servers: dict[str, tuple[CorralServer, str]] = {}
        for label, enabled in VARIANTS:
            server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-bench-net-")),
                                  env={"CORRAL_NET_ENABLED": enabled})
            stack.callback(teardown_server, server, 0)
            server.prepare()
            server.start(("--pool-size", "0"))
            servers[label] = (server, server.create_key("bench"))
        for tier in tiers:
            samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in VARIANTS}
            for i in range(n + 2):
                for label, (server, key) in servers.items():
                    got = _create(server, key, tier)
                    if i >= 2:   # warm-up: page cache, imports
                        samples[label].append(got)
            for label, rows in samples.items():
                figures.append(Figure.of(f"{tier}: cold Sandbox.create() ({label}, no pool)", [r[0] for r in rows]))
                figures.append(Figure.of(f"{tier}: cold create -> first run('true') ({label}, no pool)",
                                         [r[1] for r in rows]))
    return figures
