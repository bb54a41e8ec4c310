"""`python3 -m corral.interpreter`: serve the code interpreter (or `--list-kernels` to check an image)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="corral.interpreter")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=49999)
    p.add_argument("--cwd", default=os.environ.get("HOME") or os.getcwd(), help="default cwd of new contexts")
    p.add_argument("--no-warm", action="store_true", help="do not start the default Python kernel at startup")
    p.add_argument("--list-kernels", action="store_true", help="print the installed kernels and exit")
    args = p.parse_args(argv)
    if args.list_kernels:
        from corral.interpreter.kernels import list_kernels

        return list_kernels()
    # Listen before the slow imports (uvicorn, starlette, jupyter_client: ~1 s in gVisor): the sandbox is handed to
    # the SDK as soon as this process starts, and a first call that connects early then waits in the backlog
    # instead of being refused.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it a keep-alive request waited ~40 ms for its response's last
    # segment (Nagle against the client's delayed ACK), on every call after a connection's first.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from corral.interpreter.server import make_app

    app = make_app(args.cwd, warm=not args.no_warm)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
