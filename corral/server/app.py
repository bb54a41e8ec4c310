"""The REST control plane as a FastAPI app: `create_app(settings, manager)`."""

from __future__ import annotations

import re

from fastapi import FastAPI, Response

from corral import __version__
from corral.config import Settings
from corral.sandboxes import SandboxManager
from corral.server.api_admin import router as admin_router
from corral.server.api_network import router as network_router
from corral.server.api_sandboxes import router as sandboxes_router
from corral.server.api_snapshots import router as snapshots_router
from corral.server.api_templates import router as templates_router
from corral.server.api_volumecontent import router as volumecontent_router
from corral.server.api_volumes import router as volumes_router
from corral.server.guards import AuditLog, RequestGuard
from corral.server.http_errors import install_error_handlers
from corral.volumes.store import VolumeStore


def create_app(settings: Settings, manager: SandboxManager) -> FastAPI:
    """The API app; the manager's lifetime (start/close) belongs to the caller (corral.server.run.serve)."""
    app = FastAPI(title="Corral", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.manager = manager
    app.state.volumes = VolumeStore(manager.db, settings.volumes_dir, size_mb=settings.volume_size_mb)
    install_error_handlers(app)

    @app.get("/health", status_code=204)
    async def health() -> Response:
        return Response(status_code=204)

    app.include_router(sandboxes_router)
    app.include_router(volumes_router)
    app.include_router(volumecontent_router)
    app.include_router(templates_router)
    app.include_router(network_router)
    app.include_router(snapshots_router)
    app.include_router(admin_router)
    # Added last = outermost: the audit log sees even the calls the guard refuses.
    uploads = [("PUT", re.compile(r"/volumecontent/[^/]+/file"), settings.gateway_max_upload_bytes),
               ("PUT", re.compile(r"/_corral/template-files/[^/]+"), settings.build_upload_max_mb << 20)]
    app.add_middleware(RequestGuard, max_body=settings.api_max_body_bytes,
                       max_header_bytes=settings.api_max_header_bytes, uploads=uploads)
    app.add_middleware(AuditLog, db=manager.db)
    return app
