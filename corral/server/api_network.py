"""PUT /sandboxes/{id}/network: replace a running sandbox's egress policy (SandboxNetworkUpdateConfig)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from corral.errors import InvalidRequestError
from corral.net.policy import EgressPolicy
from corral.server.auth import require_team

router = APIRouter()
Team = Annotated[str, Depends(require_team)]


def check_unsupported(network: dict[str, Any], where: str) -> None:
    """Fields Corral cannot honour are refused, not dropped."""
    for key in ("egressProxy", "rules", "maskRequestHost", "dnsServers", "dns_servers"):
        if network.get(key):
            raise InvalidRequestError(f"{where}.{key}: not supported by this server")


def policy_from_update(body: Any) -> EgressPolicy:
    if not isinstance(body, dict):
        raise InvalidRequestError("body: must be a JSON object (SandboxNetworkUpdateConfig)")
    check_unsupported(body, "body")
    internet = body.get("allow_internet_access", body.get("allowInternetAccess"))
    if internet is not None and not isinstance(internet, bool):
        raise InvalidRequestError("allow_internet_access: must be a boolean")
    return EgressPolicy.from_wire(internet, body, where="body")


@router.put("/sandboxes/{sandbox_id}/network", status_code=204)
async def update_network(sandbox_id: str, request: Request, team: Team) -> Response:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise InvalidRequestError("body: not valid JSON") from None
    policy = policy_from_update(body)
    await request.app.state.manager.update_network(sandbox_id, team, policy)
    return Response(status_code=204)
