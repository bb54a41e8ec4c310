"""SIGKILL the server while 20 clients create, run commands in and kill sandboxes; restart it: every sandbox is
accounted for (running ones re-attached and working, the rest cleaned) and nothing leaks."""

from __future__ import annotations

import signal
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.integration.api.test_restart import run, stdout_of
from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, leftovers, teardown_server
from tests.integration.sdk.helpers import wait_until

CLIENTS = 20


def _client(server: CorralServer, key: str, n: int, stop: threading.Event, seen: set[str], errors: list[str]) -> None:
    tier = "runc" if n % 2 else "gvisor"
    with httpx.Client(base_url=server.api_url, headers={"X-API-KEY": key}, timeout=60) as http:
        while not stop.is_set():
            try:
                r = http.post("/sandboxes", json={"templateID": "base", "timeout": 600,
                                                  "metadata": {"corral.runtime": tier}})
                if r.status_code != 201:
                    errors.append(f"create {r.status_code}")
                    continue
                sid = r.json()["sandboxID"]
                seen.add(sid)
                run(server, key, sid, None, "echo hi")
                if n % 3 == 0:  # a third of the clients keep theirs: they must survive the crash
                    time.sleep(0.5)
                    continue
                http.delete(f"/sandboxes/{sid}")
            except httpx.HTTPError:
                return  # the server is gone


def test_sigkill_under_load_then_restart_accounts_for_everything() -> None:
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-crash-")))
    server.prepare()
    server.start(("--pool-size", "0"))
    try:
        key = server.create_key("crash")
        stop = threading.Event()
        seen: set[str] = set()
        errors: list[str] = []
        threads = [threading.Thread(target=_client, args=(server, key, n, stop, seen, errors), daemon=True)
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(8)  # creates, commands and kills in flight on every client
        server.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        assert len(seen) >= CLIENTS // 2, (len(seen), errors[:5])
        server.start(("--pool-size", "0"))
        with sqlite3.connect(server.data_dir / "corral.db") as db:
            rows = dict(db.execute("select id, state from sandboxes").fetchall())
        running = [sid for sid, state in rows.items() if state == "running"]
        print(f"CRASH clients={CLIENTS} sandboxes_seen={len(seen)} rows={len(rows)} running_after={len(running)}")
        # Every running row is re-attached and works; everything else has no runtime state left.
        for sid in running:
            r = run(server, key, sid, None, "echo back")
            assert r.status_code == 200 and stdout_of(r) == b"back\n", sid
        others = sorted((seen | set(rows)) - set(running))
        assert wait_until(lambda: not [x for x in leftovers(server.data_dir, others)
                                       if any(s in x for s in others)], timeout=60), \
            leftovers(server.data_dir, others)
        for sid in running:
            assert httpx.delete(f"{server.api_url}/sandboxes/{sid}", headers={"X-API-KEY": key}).status_code == 204
        everything = sorted(seen | set(rows))
        assert wait_until(lambda: not leftovers(server.data_dir, everything), timeout=90), \
            leftovers(server.data_dir, everything)
    finally:
        teardown_server(server)
