"""Egress policy and isolation of networked sandboxes, on both tiers, driven by the stock SDK.

The "internet" is two HTTP servers in test-made network namespaces (site-a.test, site-b.test); a listener on the
host's 0.0.0.0 stands for every host service a sandbox must not reach."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.network.internet import PORT, SERVE, Internet, net_info
from tests.integration.network.probe import assert_blocked, assert_reached, connect_via_proxy, fetch, probe
from tests.integration.sdk.helpers import wait_until

ALL = "0.0.0.0/0"
A, B = "site-a.test", "site-b.test"


@pytest.fixture(scope="module")
def host_service() -> Iterator[int]:
    """A TCP service on all host addresses answering like HTTP: reaching it from a sandbox is the failure."""
    srv = socket.create_server(("0.0.0.0", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost service\n")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join()
    srv.close()


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo" not in line.split()[1]
            and not line.split()[1].startswith(("ct", "veth"))]


def site(internet: Internet, name: str) -> str:
    return f"{internet.sites[name].ip}:{PORT}"


def test_default_policy_reaches_internet_not_host(sandboxes: Callable[..., Sandbox], internet: Internet,
                                                  e2b: CorralServer, host_service: int) -> None:
    sbx = sandboxes()
    info = net_info(e2b.data_dir, sbx.sandbox_id)
    forbidden = [f"{info.host_ip}:{host_service}", f"{info.service_ip}:{host_service}",
                 f"{info.service_ip}:{e2b.port}", f"{info.service_ip}:{e2b.gateway_port}",
                 "169.254.169.254:80", *(f"{ip}:{host_service}" for ip in host_addresses())]
    results = probe(sbx, f"{A}:{PORT}", site(internet, B), *forbidden)
    print("default policy probe (target, outcome, seconds):", results)  # the fail-fast figures of the report
    assert_reached(results, f"{A}:{PORT}", site(internet, B))
    assert_blocked(results, *forbidden)
    # The sandbox's 127.0.0.1 is its own: the host's loopback services (Corral's API, gateway) are not there.
    own = probe(sbx, f"127.0.0.1:{e2b.port}", f"127.0.0.1:{e2b.gateway_port}")
    assert_blocked(own, *own)


def test_no_internet_blocks_all_egress(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes(allow_internet_access=False)
    results = probe(sbx, site(internet, A), site(internet, B), f"{A}:{PORT}")
    assert_blocked(results, *results)
    assert results[f"{A}:{PORT}"][0] == "err:gaierror"   # the resolver refuses names too


def test_cidr_rules(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes(network={"deny_out": [ALL], "allow_out": [internet.sites[A].ip + "/24"]})
    results = probe(sbx, site(internet, A), site(internet, B))
    assert_reached(results, site(internet, A))
    assert_blocked(results, site(internet, B))


def test_allow_by_domain_holds_for_connect_by_ip(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes(network={"deny_out": [ALL], "allow_out": [A]})
    results = probe(sbx, f"{A}:{PORT}", site(internet, A), site(internet, B), f"{B}:{PORT}")
    assert_reached(results, f"{A}:{PORT}", site(internet, A))
    assert_blocked(results, site(internet, B), f"{B}:{PORT}")


def test_deny_by_domain_blocks_its_ips(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes(network={"deny_out": [B]})
    results = probe(sbx, site(internet, B), f"{B}:{PORT}", f"{A}:{PORT}")
    assert_blocked(results, site(internet, B), f"{B}:{PORT}")
    assert_reached(results, f"{A}:{PORT}")


def test_update_network_applies_to_running_sandbox(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes()
    assert_reached(probe(sbx, site(internet, A)), site(internet, A))
    sbx.update_network({"allow_internet_access": False})
    assert_blocked(probe(sbx, site(internet, A)), site(internet, A))
    sbx.update_network({"deny_out": [ALL], "allow_out": [A]})
    results = probe(sbx, f"{A}:{PORT}", site(internet, B))
    assert_reached(results, f"{A}:{PORT}")
    assert_blocked(results, site(internet, B))
    assert Sandbox.get_info(sbx.sandbox_id).allow_internet_access is False


def test_neighbour_sandbox_unreachable(sandboxes: Callable[..., Sandbox], e2b: CorralServer) -> None:
    a, b = sandboxes(), sandboxes()
    b.files.write("/tmp/serve.py", SERVE)
    b.commands.run("python3 /tmp/serve.py 0.0.0.0 8080", background=True, cwd="/tmp")
    assert wait_until(lambda: probe(b, "127.0.0.1:8080")["127.0.0.1:8080"][0].startswith("ok:"), 15)
    target = f"{net_info(e2b.data_dir, b.sandbox_id).sandbox_ip}:8080"
    assert_blocked(probe(a, target), target)


def test_proxy_enforces_policy_by_name(sandboxes: Callable[..., Sandbox], e2b: CorralServer,
                                       host_service: int) -> None:
    sbx = sandboxes(network={"deny_out": [B]})
    assert fetch(sbx, f"http://{A}:{PORT}/").startswith("200 hello from site-a.test")
    assert fetch(sbx, f"http://{B}:{PORT}/").startswith("403 ")
    info = net_info(e2b.data_dir, sbx.sandbox_id)
    # The proxy runs on the host: it must not become a way to the host's own services.
    assert fetch(sbx, f"http://127.0.0.1:{e2b.port}/health", force_proxy=True).startswith("403 ")
    assert fetch(sbx, f"http://localhost:{e2b.gateway_port}/", force_proxy=True).startswith("403 ")
    assert fetch(sbx, f"http://{info.host_ip}:{host_service}/").startswith("403 ")
    for ip in host_addresses():   # also when the host's address is not in a private range (TEST-NET here)
        assert fetch(sbx, f"http://{ip}:{host_service}/", force_proxy=True).startswith("403 "), ip


def test_bad_network_bodies(sandboxes: Callable[..., Sandbox], e2b: CorralServer, api_key: str) -> None:
    sbx = sandboxes()
    key = {"X-API-KEY": api_key}
    with httpx.Client(base_url=e2b.api_url, timeout=30) as client:
        r = client.post("/v2/sandboxes", json={"templateID": "base", "network": {"allowOut": ["not a domain!"]}},
                        headers=key)
        assert r.status_code == 400 and "network.allowOut[0]" in r.text, r.text
        url = f"/sandboxes/{sbx.sandbox_id}/network"
        r = client.put(url, json={"allowOut": "site-a.test"}, headers=key)
        assert r.status_code == 400 and "body.allowOut" in r.text, r.text
        r = client.put(url, json={"egressProxy": {"address": "x:1"}}, headers=key)
        assert r.status_code == 400 and "egressProxy" in r.text, r.text
        assert client.put(url, json={}, headers={"X-API-KEY": "wrong"}).status_code == 401
        assert client.put("/sandboxes/aaaaaaaaaaaaaaaaaaaa/network", json={}, headers=key).status_code == 404
    # None of that changed the running sandbox's (default) policy.
    assert_reached(probe(sbx, f"{A}:{PORT}"), f"{A}:{PORT}")


def test_wildcard_domain_learns_addresses_through_the_resolver(sandboxes: Callable[..., Sandbox],
                                                               internet: Internet) -> None:
    """`*.site-a.test` cannot be resolved ahead: its addresses are allowed once the sandbox looks a name up."""
    sbx = sandboxes(network={"deny_out": [ALL], "allow_out": ["*.site-a.test"]})
    by_ip = site(internet, A)
    assert_blocked(probe(sbx, by_ip), by_ip)                      # nothing learned yet
    results = probe(sbx, f"api.site-a.test:{PORT}", by_ip, f"{A}:{PORT}")
    assert_reached(results, f"api.site-a.test:{PORT}", by_ip)     # learned from the lookup, by IP too
    assert results[f"{A}:{PORT}"][0] == "err:gaierror"             # the apex is not covered by the wildcard


def test_connect_through_the_proxy(sandboxes: Callable[..., Sandbox], internet: Internet) -> None:
    sbx = sandboxes(network={"deny_out": [ALL], "allow_out": [A]})
    assert connect_via_proxy(sbx, f"{A}:{PORT}") == "HTTP/1.1 200 Connection established | HTTP/1.0 200 OK"
    assert connect_via_proxy(sbx, f"{B}:{PORT}").startswith("HTTP/1.1 403")
    assert connect_via_proxy(sbx, site(internet, B)).startswith("HTTP/1.1 403")
