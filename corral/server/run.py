"""`serve(settings)`: open the DB, re-attach sandboxes, run the REST API and the gateway until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from corral.config import Settings
from corral.db import open_database
from corral.errors import RuntimeFailure

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # uvicorn's own signal capture re-raises the signal after shutdown, which would kill the process before
    # serve() closes the gateway and the manager; serve() installs its own handlers instead.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Run Corral in the foreground; sandboxes survive a stop and are re-attached by the next start."""
    # Imported here so that unit tests of the API never need the runtime, template or gateway modules.
    from corral.net.service import NetworkService
    from corral.runtime import cgroups
    from corral.runtime.factory import make_runtimes
    from corral.sandboxes import SandboxManager
    from corral.server.app import create_app
    from corral.server.gateway import Gateway
    from corral.server.slow_clients import guarded_protocol
    from corral.templates.catalog import TemplateCatalog

    if not logging.getLogger().handlers:
        # Run from the CLI: our lifecycle lines (re-attach, timeouts, teardown failures) go to stderr.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per agent /init is noise
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        cgroups.set_parent_cpu_shares(settings.sandboxes_cpu_shares)
    except OSError as e:
        log.warning("could not set the sandboxes' CPU weight: %s", e)
    db = open_database(settings.db_url)
    network = NetworkService(settings) if settings.net_enabled else None
    manager = SandboxManager(settings, make_runtimes(settings), TemplateCatalog(settings), db=db,
                             warm_pool=settings.pool_size > 0, network=network)
    gateway = Gateway(resolve=manager.route, on_activity=manager.touch, domain=settings.domain, wake=manager.wake,
                      max_body_bytes=settings.gateway_max_upload_bytes)
    manager.busy = gateway.busy
    app = create_app(settings, manager)
    server = _Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                    log_level="info", access_log=False, lifespan="off",
                                    http=guarded_protocol(settings.api_read_timeout_s),
                                    h11_max_incomplete_event_size=settings.api_max_header_bytes))
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    api: asyncio.Task[None] | None = None

    def request_stop() -> None:
        if server.should_exit:
            server.force_exit = True  # a second signal: stop waiting for open connections
            return
        log.info("stopping Corral (sandboxes keep running)")
        server.should_exit = True

    try:
        if network is not None:
            await network.start()   # before re-attach: it re-applies the policies of surviving sandboxes
        await manager.start()
        await app.state.volumes.start()   # finishes destroys a crash interrupted, mounts quota'd volumes
        await gateway.start(settings.host, settings.gateway_port)
        for sig in stop_signals:
            loop.add_signal_handler(sig, request_stop)
        api = asyncio.create_task(server.serve())
        while not server.started and not api.done():
            await asyncio.sleep(0.05)
        if api.done():
            # uvicorn logs why (usually the port is taken) and exits.
            with contextlib.suppress(SystemExit, Exception):
                await api
            raise RuntimeFailure(f"the API could not listen on {settings.host}:{settings.port}")
        print(f"Corral ready: API http://{settings.host}:{settings.port}, "
              f"sandbox gateway http://{settings.host}:{settings.gateway_port}, data {settings.data_dir}", flush=True)
        await api
    finally:
        if api is not None and not api.done():
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(api, timeout=10)
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        await gateway.close()
        builds = getattr(app.state, "template_builds", None)
        if builds is not None:
            await builds.close()
        await manager.close()
        if network is not None:
            await network.close()
        db.close()
        log.info("Corral stopped")
