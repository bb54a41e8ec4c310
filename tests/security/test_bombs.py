"""A misbehaving sandbox does not starve its neighbour: fork bomb, memory bomb, disk filler and CPU spinner, each
next to a neighbour whose command latency (median of 10 `echo` round trips) must stay within 2x of its idle value.

The figures are printed (run with -s) and appended to $CORRAL_SECURITY_FIGURES when set."""

from __future__ import annotations

import json
import os
import statistics
import time

import httpx
import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.sdk.helpers import create, wait_until
from tests.security.conftest import TIERS

ROUNDS = 10
BOMBS = {
    "fork bomb": "bomb() { bomb | bomb & }; bomb",
    # Allocates past the limit (runc: this process is OOM-killed inside the sandbox; gVisor: the sandbox dies).
    "memory bomb": "python3 -c 'a = []\nwhile True: a.append(bytearray(32 << 20))'",
    # Fills its writable layer to the quota, then keeps trying to write more.
    "disk filler": "dd if=/dev/zero of=/home/user/fill bs=1M; "
                   "while true; do dd if=/dev/zero of=/home/user/more bs=1M count=16; sleep 0.05; done",
    "CPU spinner": "for i in $(seq $(nproc)); do (while :; do :; done) & done; wait",
}


NOISE_FLOOR_S = 0.010


def echo_latency(sbx: Sandbox) -> float:
    """Median seconds of ROUNDS `echo` round trips through the SDK, 50 ms apart (an agent's pace: each command finds
    the agent's pre-started shell; back to back, every other one forks a bash, and that fork's cost under a
    neighbour's load, not the isolation, decided the ratio)."""
    samples = []
    for _ in range(ROUNDS):
        time.sleep(0.05)
        started = time.perf_counter()
        assert sbx.commands.run("echo hi", timeout=30).stdout == "hi\n"
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _api_message(server: CorralServer, sandbox_id: str) -> str:
    r = httpx.get(f"{server.api_url}/sandboxes/{sandbox_id}", headers={"X-API-KEY": os.environ["E2B_API_KEY"]})
    return str(r.json().get("message", "")) if r.status_code == 404 else ""


def _record(row: dict[str, object]) -> None:
    print("NEIGHBOUR-LATENCY", json.dumps(row))
    path = os.environ.get("CORRAL_SECURITY_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module", params=TIERS)
def neighbour(request: pytest.FixtureRequest, sdk_env: CorralServer) -> Sandbox:
    sbx = create(str(request.param), timeout=900)
    sbx.tier = str(request.param)  # type: ignore[attr-defined]
    echo_latency(sbx)  # warm the path (first exec, connection pool)
    yield sbx
    sbx.kill()


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_bomb_next_to_a_neighbour(bomb: str, neighbour: Sandbox, sdk_env: CorralServer) -> None:
    tier = neighbour.tier  # type: ignore[attr-defined]
    attacker = create(tier, timeout=300)
    try:
        idle = echo_latency(neighbour)
        attacker.commands.run(BOMBS[bomb], background=True, user="root", timeout=0)
        extra: dict[str, object] = {}
        if bomb == "disk filler":
            # The burst that fills the layer is host page cache + writeback, which cgroup v1 does not charge to the
            # sandbox: recorded, not asserted. The filler's steady state (quota reached, still writing) is asserted.
            time.sleep(0.3)
            extra["filling_ms"] = round(echo_latency(neighbour) * 1000, 1)
            assert wait_until(lambda: _layer_full(attacker), timeout=60, interval=0.5)
        time.sleep(3)  # let it ramp up
        loaded = echo_latency(neighbour)
        # 2x the idle round trip, but never less than 2x NOISE_FLOOR_S: a warm runc echo takes ~3-4 ms, where a few
        # ms of scheduling on a shared 2-core host would read as a broken isolation.
        budget = 2 * max(idle, NOISE_FLOOR_S)
        if loaded > budget:
            # Other test runs share this host's two cores, so one window of 10 echoes can hit their burst: judge by
            # the median of three loaded medians (the bomb still runs; all tries are recorded).
            tries = [loaded, echo_latency(neighbour), echo_latency(neighbour)]
            extra["loaded_tries_ms"] = [round(t * 1000, 1) for t in tries]
            loaded = statistics.median(tries)
        attacker_state = "running"
        try:
            attacker_alive = attacker.commands.run("echo alive", timeout=20).stdout.strip() == "alive"
        except SandboxException:
            attacker_alive = False
        if not attacker_alive:
            attacker_state = "dead"
        _record({"tier": tier, "bomb": bomb, "idle_ms": round(idle * 1000, 1), "loaded_ms": round(loaded * 1000, 1),
                 "ratio": round(loaded / idle, 2), "attacker": attacker_state, **extra})
        assert loaded <= budget, f"{bomb} on {tier}: neighbour echo {loaded * 1000:.1f} ms vs idle {idle * 1000:.1f}"
        if not attacker_alive and bomb in ("memory bomb", "fork bomb") and tier == "gvisor":
            # gVisor: the whole sandbox died at its limit (its kernel is one host process); the server says why.
            # A fork bomb's tasks also eat memory: either limit may be the one that stopped it.
            whys = ("out of memory",) if bomb == "memory bomb" else ("out of memory", "too many processes")
            assert wait_until(lambda: any(w in _api_message(sdk_env, attacker.sandbox_id) for w in whys),
                              timeout=15), _api_message(sdk_env, attacker.sandbox_id)
        elif bomb != "fork bomb":
            assert attacker_alive, f"{bomb} on {tier}: the attacker's own sandbox should survive its limits"
        assert neighbour.commands.run("echo still-here").stdout == "still-here\n"
    finally:
        attacker.kill()
    assert wait_until(lambda: not _leftovers_of(sdk_env, attacker.sandbox_id), timeout=60), \
        _leftovers_of(sdk_env, attacker.sandbox_id)


def _leftovers_of(server: CorralServer, sandbox_id: str) -> list[str]:
    # The neighbour (and other modules' sandboxes) still run: only the attacker's traces count.
    return [line for line in leftovers(server.data_dir, [sandbox_id]) if sandbox_id in line]


def _layer_full(sbx: Sandbox) -> bool:
    try:
        avail = sbx.commands.run("df --output=avail -k /home/user | tail -1", timeout=10).stdout.strip()
    except SandboxException:
        return False
    return avail.isdigit() and int(avail) < 8 << 10
