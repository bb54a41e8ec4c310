"""Benchmark: an exposed port through the gateway — HTTP requests/s and per-request latency (keep-alive clients)."""

from __future__ import annotations

import asyncio
import os
import time

import httpx

from benchmarks.stats import Figure

PORT = 8000
# A tiny keep-alive HTTP server inside the sandbox (the stdlib's http.server answers HTTP/1.0 and closes).
SERVER = r"""
import asyncio
BODY = b"ok"
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n" + BODY)
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", PORT)
    async with s:
        await s.serve_forever()
asyncio.run(main())
""".replace("PORT", str(PORT))


def bench_exposed_port(tier: str, seconds: float, clients: int) -> list[Figure]:
    """Start a sandbox serving PORT, then `clients` keep-alive clients hit it through the gateway for `seconds`."""
    from e2b import Sandbox

    sbx = Sandbox.create(metadata={"corral.runtime": tier})
    try:
        sbx.files.write("/tmp/srv.py", SERVER)
        sbx.commands.run("python3 /tmp/srv.py", background=True)
        # Routed by headers, as an SDK user's client would be with E2B_SANDBOX_URL (get_host() needs a domain).
        headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": str(PORT)}
        latencies, elapsed = asyncio.run(_load(os.environ["E2B_SANDBOX_URL"], headers, seconds, clients))
    finally:
        sbx.kill()
    rate = len(latencies) / elapsed
    label = f"{tier}: exposed port via gateway ({clients} keep-alive clients, {seconds:g}s)"
    return [Figure(f"{label}: requests/s", "req/s", len(latencies), rate, rate, rate, rate),
            Figure.of(f"{label}: request latency", latencies)]


async def _load(base: str, headers: dict[str, str], seconds: float, clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        deadline = time.monotonic() + 30
        while True:   # the server inside needs a moment to listen
            try:
                if (await client.get("/")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the in-sandbox server never answered through the gateway")
            await asyncio.sleep(0.1)
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await client.get("/")
                if r.status_code != 200:
                    raise RuntimeError(f"gateway answered {r.status_code}: {r.text[:200]}")
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - t0
