"""The async SDK against the same server: create, run, stream, files, list, kill."""

from __future__ import annotations

import asyncio

from e2b import AsyncSandbox

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import RUNTIME_METADATA_KEY


async def test_async_sandbox_roundtrip(e2b: CorralServer, tier: str) -> None:
    sbx = await AsyncSandbox.create(metadata={RUNTIME_METADATA_KEY: tier})
    try:
        seen: list[str] = []
        result = await sbx.commands.run("echo a; sleep 0.1; echo b", on_stdout=seen.append)
        assert result.stdout == "a\nb\n"
        assert "".join(seen) == "a\nb\n"
        results = await asyncio.gather(*(sbx.commands.run(f"echo {i}") for i in range(5)))
        assert [r.stdout.strip() for r in results] == [str(i) for i in range(5)]
        await sbx.files.write("/tmp/async.txt", "async data")
        assert await sbx.files.read("/tmp/async.txt") == "async data"
        assert any(e.name == "async.txt" for e in await sbx.files.list("/tmp"))
        handle = await sbx.commands.run("sleep 30", background=True)
        assert await sbx.commands.kill(handle.pid)
        info = await sbx.get_info()
        assert info.sandbox_id == sbx.sandbox_id
        assert await sbx.is_running()
    finally:
        await sbx.kill()
    assert not await sbx.is_running()
