"""In-sandbox ports through the gateway: a server started by the stock SDK, reached by headers and by Host."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create, wait_until

PORT = 8000
CLOSED = 8001


@pytest.fixture(params=["public", "private"])
def served(request: pytest.FixtureRequest, e2b: CorralServer, tier: str) -> Iterator[Sandbox]:
    """A sandbox running `python3 -m http.server 8000`; "private" sandboxes get a traffic token."""
    network = {"allow_public_traffic": request.param == "public"}
    sbx = create(tier, network=network)
    try:
        sbx.commands.run("mkdir -p /tmp/site && printf 'hello from the sandbox' > /tmp/site/hello.txt")
        sbx.commands.run(f"python3 -m http.server {PORT} --bind 127.0.0.1", background=True, cwd="/tmp/site")
        # The create response carries a traffic token exactly when public traffic is off.
        assert bool(sbx.traffic_access_token) == (request.param == "private")
        yield sbx
    finally:
        sbx.kill()


def _token(sbx: Sandbox) -> dict[str, str]:
    token = sbx.traffic_access_token
    return {"E2B-Traffic-Access-Token": token} if token else {}


def test_port_by_headers_and_host(served: Sandbox, e2b: CorralServer) -> None:
    by_headers = {"E2b-Sandbox-Id": served.sandbox_id, "E2b-Sandbox-Port": str(PORT), **_token(served)}
    with httpx.Client(base_url=e2b.sandbox_url, timeout=10) as client:
        # The server takes a moment to bind; until then the port answers 502.
        assert wait_until(lambda: client.get("/hello.txt", headers=by_headers).status_code == 200, timeout=20)
        r = client.get("/hello.txt", headers=by_headers)
        assert r.text == "hello from the sandbox"
        r = client.get("/hello.txt", headers={"Host": f"{PORT}-{served.sandbox_id}.localhost", **_token(served)})
        assert r.status_code == 200 and r.text == "hello from the sandbox"
        listing = client.get("/", headers=by_headers)
        assert listing.status_code == 200 and "hello.txt" in listing.text
        if served.traffic_access_token:
            r = client.get("/hello.txt", headers={"E2b-Sandbox-Id": served.sandbox_id,
                                                  "E2b-Sandbox-Port": str(PORT)})
            assert r.status_code == 401
        closed = {"E2b-Sandbox-Id": served.sandbox_id, "E2b-Sandbox-Port": str(CLOSED), **_token(served)}
        r = client.get("/", headers=closed)
        assert r.status_code == 502
        body = r.json()
        assert body["code"] == 502 and f"port {CLOSED}" in body["message"] and "port is not open" in body["message"]
