"""The HTTP surface with fake kernels: routes, status codes, context lifecycle, and disconnect -> abort."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
from starlette.testclient import TestClient

from corral.interpreter import events, server
from corral.interpreter.stream import EventStream


class FakeContext:
    """Stands in for KernelContext: echoes the code as stdout plus a main result."""

    started: ClassVar[list[FakeContext]] = []

    def __init__(self, language: str, kernel_name: str, cwd: str) -> None:
        self.id = f"ctx-{len(FakeContext.started)}"
        self.language, self.kernel_name, self.cwd = language, kernel_name, cwd
        self.restarts = 0
        self.stopped = False
        self.warmed = False

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    async def start(self) -> None:
        FakeContext.started.append(self)

    async def warm_up(self) -> None:
        self.warmed = True

    async def restart(self) -> None:
        self.restarts += 1

    async def shutdown(self) -> None:
        self.stopped = True

    async def execute(self, code: str, env_vars: dict[str, str] | None) -> AsyncIterator[events.Event]:
        yield events.stream_event("stdout", f"{self.language}:{code}:{env_vars}\n")
        yield events.result_event({"text/plain": "1"}, is_main_result=True)
        yield events.count_event(1)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[TestClient]:
    FakeContext.started = []
    monkeypatch.setattr(server, "KernelContext", FakeContext)
    app = server.make_app(str(tmp_path), installed={"python3", "bash"})
    with TestClient(app) as c:
        yield c


def _lines(r: Any) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in r.text.splitlines()]


def test_health_and_warm_default_context(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json() == {"status": "ready"}  # the TestClient ran the lifespan's warm-up to its end
    contexts = client.get("/contexts").json()
    assert [c["language"] for c in contexts] == ["python"]  # started at server start
    assert FakeContext.started[0].warmed


def test_ready_waits_for_the_warm_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    gate = asyncio.Event()

    class SlowStart(FakeContext):
        async def start(self) -> None:
            await gate.wait()

    FakeContext.started = []
    monkeypatch.setattr(server, "KernelContext", SlowStart)
    with TestClient(server.make_app(str(tmp_path), installed={"python3"})) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json() == {"status": "starting"}
        assert c.get("/health").status_code == 200  # the port answers meanwhile
        c.portal.call(gate.set)
        for _ in range(100):
            if c.get("/ready").status_code == 200:
                break
        assert c.get("/ready").status_code == 200


def test_execute_default_python_and_by_language(client: TestClient, tmp_path: Any) -> None:
    r = client.post("/execute", json={"code": "1", "context_id": None, "language": None, "env_vars": {"A": "b"}})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = _lines(r)
    assert lines[0]["text"] == "python:1:{'A': 'b'}\n"
    assert [x["type"] for x in lines] == ["stdout", "result", "number_of_executions"]
    r = client.post("/execute", json={"code": "echo", "language": "bash"})
    assert _lines(r)[0]["text"].startswith("bash:echo")
    r = client.post("/execute", json={"code": "echo", "language": "bash"})
    # one default context per language, reused
    assert sorted(c["language"] for c in client.get("/contexts").json()) == ["bash", "python"]


def test_errors(client: TestClient) -> None:
    r = client.post("/execute", json={"code": "1", "context_id": "nope"})
    assert r.status_code == 404 and "nope" in r.text
    r = client.post("/execute", json={"code": "1", "language": "cobol"})
    assert r.status_code == 400 and "supported: bash, python" in r.text
    r = client.post("/contexts", json={"language": "r"})
    assert r.status_code == 400
    assert client.post("/execute", json={"code": "1", "bogus": 1}).status_code == 400  # extra="forbid"
    assert client.post("/execute", content=b"{not json").status_code == 400
    r = client.post("/execute", json={"code": "1", "env_vars": {"A B": "x"}})
    assert r.status_code == 400
    assert client.post("/contexts", json={"cwd": "/does/not/exist"}).status_code == 400
    assert client.delete("/contexts/nope").status_code == 404
    assert client.post("/contexts/nope/restart").status_code == 404


def test_context_lifecycle(client: TestClient, tmp_path: Any) -> None:
    r = client.post("/contexts", json={"language": "bash", "cwd": "/"})
    assert r.status_code == 200
    ctx = r.json()
    assert ctx["language"] == "bash" and ctx["cwd"] == "/"
    r = client.post("/contexts", json={})
    assert r.json()["language"] == "python" and r.json()["cwd"] == str(tmp_path)
    assert _lines(client.post("/execute", json={"code": "x", "context_id": ctx["id"]}))[0]["text"].startswith("bash:")
    assert client.post(f"/contexts/{ctx['id']}/restart").status_code == 204
    assert FakeContext.started[1].restarts == 1
    assert client.delete(f"/contexts/{ctx['id']}").status_code == 204
    assert FakeContext.started[1].stopped
    assert ctx["id"] not in [c["id"] for c in client.get("/contexts").json()]


async def test_event_stream_cancels_the_source_when_the_client_goes_away() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[events.Event]:
        try:
            yield events.stream_event("stdout", "first\n")
            await asyncio.sleep(3600)  # a cell that prints nothing more
            yield events.stream_event("stdout", "never\n")
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body", b"").startswith(b'{"type": "stdout"'):
            disconnected.set()  # the client times out right after the first line

    await asyncio.wait_for(EventStream(endless())({}, receive, send), timeout=5)
    assert closed.is_set()
    assert sent[0]["status"] == 200 and b"first" in sent[1]["body"]


async def test_event_stream_reports_a_failing_source_in_band() -> None:
    async def broken() -> AsyncIterator[events.Event]:
        yield events.stream_event("stdout", "a\n")
        raise RuntimeError("kernel gone")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(EventStream(broken())({}, receive, send), timeout=5)
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"InterpreterError" in bodies and b"kernel gone" in bodies
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
