"""Schemathesis fuzzes every operation of the served OpenAPI (/openapi.json) on the real server, valid and invalid
inputs, with a team key and the admin key: no 5xx, no traceback in any body. Bounded to FUZZ_BUDGET_S seconds."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.sdk.helpers import wait_until

FUZZ_BUDGET_S = float(os.environ.get("CORRAL_FUZZ_BUDGET_S", "100"))
EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "40"))


class _Budget(Exception):
    pass


def test_fuzz_every_endpoint(sec_server: CorralServer, team_key: str, admin_key: str) -> None:
    api = sec_server.api_url
    admin = {"X-Admin-Token": admin_key}
    team_id = next(t["teamID"] for t in httpx.get(f"{api}/teams", headers=admin).json() if t["name"] == "red")
    # Creates that the fuzzer gets right must not flood the host: the red team may run 3 sandboxes at once.
    assert httpx.put(f"{api}/teams/{team_id}/quota", json={"maxSandboxes": 3}, headers=admin).status_code == 200
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    headers = {"X-API-KEY": team_key, "X-Admin-Token": admin_key, "X-Team-ID": team_id}
    stats: dict[str, Any] = {"requests": 0, "operations": 0, "statuses": {}, "failures": []}
    deadline = time.monotonic() + FUZZ_BUDGET_S
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 20, [op.label for op in ops]
    # One real sandbox, so that operations on /sandboxes/{sandbox_id} also reach their handlers with fuzzed input.
    real = httpx.post(f"{api}/sandboxes", json={"templateID": "base", "timeout": 300,
                                                "metadata": {"corral.runtime": "runc"}},
                      headers={"X-API-KEY": team_key}, timeout=60).json()["sandboxID"]
    try:
        for op in ops:
            stats["operations"] += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(op, mode, api, headers, stats, deadline)
                if "{sandbox_id}" in op.path and op.method.upper() != "DELETE":
                    _fuzz(op, mode, api, headers, stats, deadline, {"sandbox_id": real})
    except _Budget:
        pass
    finally:
        # Whatever the fuzzer managed to start goes; nothing of it may stay.
        httpx.post(f"{api}/admin/teams/{team_id}/sandboxes/kill", headers=admin, timeout=60)
        httpx.put(f"{api}/teams/{team_id}/quota", json={}, headers=admin)
    assert wait_until(lambda: not [x for x in leftovers(sec_server.data_dir, [real]) if real in x], timeout=30)
    print("FUZZ", json.dumps({k: v for k, v in stats.items() if k != "failures"}), "failures:",
          len(stats["failures"]))
    assert not stats["failures"], stats["failures"][:10]
    assert stats["operations"] == len(ops), "the time budget ran out before every operation was fuzzed"


def _fuzz(op: Any, mode: GenerationMode, api: str, headers: dict[str, str], stats: dict[str, Any],
          deadline: float, path_parameters: dict[str, str] | None = None) -> None:
    @given(case=op.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        if time.monotonic() > deadline:
            raise _Budget
        for k, v in headers.items():
            case.headers = case.headers or {}
            case.headers.setdefault(k, v)
        try:
            response = case.call(base_url=api, timeout=60)
        except Exception as e:  # noqa: BLE001 (a dropped connection is a failure too: the server must answer)
            stats["failures"].append(f"{op.label} ({mode.value}): no answer: {e!r}")
            return
        stats["requests"] += 1
        stats["real_id_requests"] = stats.get("real_id_requests", 0) + (1 if path_parameters else 0)
        stats["statuses"][str(response.status_code)] = stats["statuses"].get(str(response.status_code), 0) + 1
        body = response.text
        if response.status_code >= 500 or "Traceback" in body or 'File "' in body:
            stats["failures"].append(f"{op.label} ({mode.value}): {response.status_code} {body[:200]} "
                                     f"<- {case.method} {case.formatted_path} {case.query} {str(case.body)[:200]}")

    try:
        run()
    except _Budget:
        raise
    except Exception as e:  # noqa: BLE001 (hypothesis could not generate for this operation: noted, go on)
        if "Unsatisfiable" not in type(e).__name__:
            stats["failures"].append(f"{op.label} ({mode.value}): fuzzing error {e!r}"[:300])


pytestmark = pytest.mark.security
