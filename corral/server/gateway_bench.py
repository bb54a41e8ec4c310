"""Benchmark: latency the gateway adds per request and its throughput (`python -m corral.server.gateway_bench [--agent BIN]`)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

from corral.server.route import Route

SANDBOX = "benchbenchbench01234"
_FRAME = b'{"event":{"start":{"pid":1}}}'
# A commands.run-like answer: a chunked Connect stream with start, end and end-of-stream envelopes.
_STREAM_BODY = b"".join(
    b"%x\r\n%b\r\n" % (len(f), f)
    for f in (
        struct.pack(">BI", 0, len(_FRAME)) + _FRAME,
        struct.pack(">BI", 0, 31) + b'{"event":{"end":{"exited":true}',
        struct.pack(">BI", 2, 2) + b"{}",
    )
) + b"0\r\n\r\n"
_STREAM_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/connect+json\r\ntransfer-encoding: chunked\r\n\r\n"
_STREAM_RESPONSE += _STREAM_BODY


async def _upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal keep-alive HTTP/1.1 responder standing in for the Go agent."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            writer.write(_STREAM_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _run_upstream(path: str) -> None:
    async def main() -> None:
        server = await asyncio.start_unix_server(_upstream_conn, path)
        await server.serve_forever()

    _run(main())


def _run_gateway(path: str, port: int) -> None:
    from corral.server.gateway import Gateway

    route = Route(SANDBOX, "team", Path(path), False, None, None)

    async def main() -> None:
        gw = Gateway(lambda sid: route if sid == SANDBOX else None)
        await gw.start("127.0.0.1", port)
        await asyncio.Event().wait()

    _run(main())


def _run(coro: object) -> None:
    if os.environ.get("CORRAL_BENCH_LOOP") != "asyncio":
        try:
            import uvloop

            uvloop.run(coro)  # type: ignore[arg-type]
            return
        except ImportError:
            pass
    asyncio.run(coro)  # type: ignore[arg-type]


_REQUEST = (
    b"POST /process.Process/Start HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n"
    b"Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\nKeepalive-Ping-Interval: 50\r\n"
    b"E2b-Sandbox-Id: " + SANDBOX.encode() + b"\r\nE2b-Sandbox-Port: 49983\r\nContent-Length: 90\r\n\r\n" + b"x" * 90
)


async def _one_client(open_conn: object, n: int, lat: list[float]) -> None:
    reader, writer = await open_conn()  # type: ignore[operator]
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(_REQUEST)
            await reader.readuntil(b"0\r\n\r\n")
            lat.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _measure(open_conn: object, n: int, concurrency: int) -> tuple[list[float], float]:
    await _one_client(open_conn, 200, [])        # warm up (pools, caches)
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_one_client(open_conn, n // concurrency, lat) for _ in range(concurrency)))
    return lat, (len(lat) / (time.perf_counter() - t0))


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6


async def _bench(path: str, port: int, n: int, concurrency: int) -> None:
    def direct() -> object:
        return asyncio.open_unix_connection(path)

    def via_gw() -> object:
        return asyncio.open_connection("127.0.0.1", port)

    for label, c in (("sequential", 1), (f"{concurrency} concurrent", concurrency)):
        d_lat, d_rps = await _measure(direct, n, c)
        g_lat, g_rps = await _measure(via_gw, n, c)
        print(f"[{label}] direct to upstream: p50 {_pct(d_lat, .5):.0f} us  p99 {_pct(d_lat, .99):.0f} us  "
              f"{d_rps:.0f} req/s")
        print(f"[{label}] through gateway:    p50 {_pct(g_lat, .5):.0f} us  p99 {_pct(g_lat, .99):.0f} us  "
              f"{g_rps:.0f} req/s")
        print(f"[{label}] added by gateway:   p50 {_pct(g_lat, .5) - _pct(d_lat, .5):.0f} us  "
              f"p99 {_pct(g_lat, .99) - _pct(d_lat, .99):.0f} us  (mean {statistics.mean(g_lat) * 1e6:.0f} us)")


def _sdk_bench(agent: str, path: str, port: int, n: int) -> None:
    """The stock e2b SDK against a real corral-agent: straight to it over TCP vs through the gateway."""
    import subprocess

    from e2b import Sandbox
    from e2b.connection_config import ConnectionConfig
    from packaging.version import Version

    direct_port = port + 1
    agents = [subprocess.Popen([agent, "serve", "--listen", listen], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
              for listen in (f"unix:{path}", f"tcp:127.0.0.1:{direct_port}")]
    try:
        time.sleep(1.0)
        for label, url in (("direct to agent", f"http://127.0.0.1:{direct_port}"),
                           ("through gateway", f"http://127.0.0.1:{port}")):
            config = ConnectionConfig(sandbox_url=url, api_key="e2b_bench", extra_sandbox_headers={
                "E2b-Sandbox-Id": SANDBOX, "E2b-Sandbox-Port": "49983"})
            sbx = Sandbox(sandbox_id=SANDBOX, sandbox_domain=None, envd_version=Version("0.6.4"),
                          envd_access_token=None, traffic_access_token=None, connection_config=config)
            ops = (("files.exists", lambda s=sbx: s.files.exists("/tmp"), n),
                   ('commands.run("true")', lambda s=sbx: s.commands.run("true"), max(20, n // 20)))
            for name, op, count in ops:
                for _ in range(10):
                    op()
                lat = []
                for _ in range(count):
                    t0 = time.perf_counter()
                    op()
                    lat.append(time.perf_counter() - t0)
                print(f"[sdk {label}] {name}: p50 {_pct(lat, .5) / 1000:.2f} ms  p99 {_pct(lat, .99) / 1000:.2f} ms")
    finally:
        for a in agents:
            a.terminate()
            a.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--agent", help="a corral-agent binary: also time the e2b SDK against it, direct vs gateway")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop of every process")
    args = ap.parse_args()
    os.environ["CORRAL_BENCH_LOOP"] = args.loop  # inherited by the spawned gateway and upstream
    port = args.port or 20000 + os.getpid() % 20000
    with tempfile.TemporaryDirectory(prefix="corral-gwbench-") as tmp:
        path = str(Path(tmp) / "agent.sock")
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_run_gateway, args=(path, port), daemon=True)]
        if not args.agent:
            procs.append(ctx.Process(target=_run_upstream, args=(path,), daemon=True))
        for p in procs:
            p.start()
        try:
            time.sleep(1.5)
            if args.agent:
                _sdk_bench(args.agent, path, port, args.requests // 5)
            else:
                _run(_bench(path, port, args.requests, args.concurrency))
        finally:
            for p in procs:
                p.terminate()
                p.join(5)


if __name__ == "__main__":
    main()
