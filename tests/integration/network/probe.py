"""What the network tests run inside sandboxes: TCP connects (by name or address) timed, and proxy requests."""

from __future__ import annotations

import json
from typing import Any

from e2b import Sandbox

PROBE_PATH = "/tmp/corral_probe.py"
# argv: host:port ...; prints [[target, "ok:<status line>" | "err:<exception>", seconds], ...]
PROBE = r'''
import json, socket, sys, time
out = []
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    t = time.monotonic()
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"GET / HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
        data = s.recv(200)
        s.close()
        r = "ok:" + data.split(b"\r\n")[0].decode()
    except OSError as e:
        r = "err:" + type(e).__name__
    out.append([target, r, round(time.monotonic() - t, 3)])
print(json.dumps(out))
'''
# argv: proxied URL; prints "<status> <first bytes of body>" using the proxy env the sandbox got
FETCH = r'''
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(r.status, r.read(60).decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read(200).decode().strip())
'''


# argv: host:port; a CONNECT through the proxy named by HTTPS_PROXY, then a GET in the tunnel
CONNECT = r'''
import os, socket, sys, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
s.sendall(b"CONNECT " + sys.argv[1].encode() + b" HTTP/1.1\r\n\r\n")
head = s.recv(4096).split(b"\r\n")[0].decode()
if " 200 " in head + " ":
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    head += " | " + s.recv(200).split(b"\r\n")[0].decode()
print(head)
'''


def connect_via_proxy(sbx: Sandbox, target: str) -> str:
    sbx.files.write("/tmp/corral_connect.py", CONNECT)
    return sbx.commands.run(f"python3 /tmp/corral_connect.py {target}", timeout=60).stdout.strip()


def probe(sbx: Sandbox, *targets: str) -> dict[str, tuple[str, float]]:
    sbx.files.write(PROBE_PATH, PROBE)
    r = sbx.commands.run(f"python3 {PROBE_PATH} {' '.join(targets)}", timeout=60)
    rows: list[Any] = json.loads(r.stdout)
    return {t: (res, secs) for t, res, secs in rows}


def fetch(sbx: Sandbox, url: str, *, force_proxy: bool = False) -> str:
    """GET through the proxy env; force_proxy also ignores NO_PROXY (to ask the proxy for loopback URLs)."""
    sbx.files.write("/tmp/corral_fetch.py", FETCH)
    prefix = "env -u no_proxy -u NO_PROXY " if force_proxy else ""
    return sbx.commands.run(f"{prefix}python3 /tmp/corral_fetch.py {url}", timeout=60).stdout.strip()


def assert_blocked(results: dict[str, tuple[str, float]], *targets: str, within_s: float = 1.0) -> None:
    for t in targets:
        res, secs = results[t]
        assert res.startswith("err:"), f"{t} was reachable: {res}"
        assert secs < within_s, f"{t} failed slowly ({secs}s, {res}): denied traffic must fail fast"


def assert_reached(results: dict[str, tuple[str, float]], *targets: str) -> None:
    for t in targets:
        res, _ = results[t]
        assert res.startswith("ok:HTTP/1.0 200"), f"{t} not reached: {res}"
