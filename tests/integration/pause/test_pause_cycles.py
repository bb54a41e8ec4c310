"""Pause and resume one gVisor sandbox again and again through the stock SDK: files, appends, a running process."""

from __future__ import annotations

import asyncio
import time

from e2b import AsyncSandbox, CommandExitException, Sandbox, SandboxQuery, SandboxState

from tests.integration.corral_server import CorralServer
from tests.integration.pause.helpers import COUNTER, assert_clean, counter, state
from tests.integration.sdk.helpers import create, wait_until

CYCLES = 5


def test_pause_resume_cycles_keep_everything(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=300)
    try:
        proc = sbx.commands.run(COUNTER, background=True)
        assert wait_until(lambda: sbx.files.exists("/tmp/counter") and counter(sbx) > 0)
        expected_log: list[str] = []
        for i in range(CYCLES):
            sbx.files.write(f"/home/user/cycle-{i}.txt", f"cycle {i} " * 1000)
            sbx.commands.run(f"echo line-{i} >> /home/user/log.txt")
            expected_log.append(f"line-{i}")
            before = counter(sbx)
            assert sbx.pause() is True
            assert state(sbx) == "paused"
            assert sbx.pause() is False          # already paused: 409, the SDK says False
            paused_ids = [s.sandbox_id for s in Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED]))
                          .next_items()]
            assert sbx.sandbox_id in paused_ids
            time.sleep(0.5)                      # a paused sandbox does not count
            assert counter_file_unchanged(e2b, sbx.sandbox_id)
            sbx = Sandbox.connect(sbx.sandbox_id, timeout=300)
            assert state(sbx) == "running"
            after = counter(sbx)
            assert before <= after <= before + 3, (before, after)   # continued, not restarted from 1
            assert wait_until(lambda s=sbx, a=after: counter(s) > a)  # and still counting
            for j in range(i + 1):
                assert sbx.files.read(f"/home/user/cycle-{j}.txt") == f"cycle {j} " * 1000
            assert sbx.files.read("/home/user/log.txt").split() == expected_log
            assert proc.pid in [p.pid for p in sbx.commands.list()]
        # The background command's handle can be reconnected after all those resumes.
        handle = sbx.commands.connect(proc.pid)
        last = counter(sbx)
        time.sleep(0.5)
        sbx.commands.kill(proc.pid)
        try:
            result = handle.wait()
            out = result.stdout
        except CommandExitException as e:
            out = e.stdout
        seen = [int(x) for x in out.split()]
        assert seen and max(seen) > last
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def counter_file_unchanged(server: CorralServer, sandbox_id: str) -> bool:
    # Paused = no processes at all for it on the host, and its layer unmounted (disk only). Its directory and its
    # network namespace (a kernel object, no process: the restore goes back into it) stay.
    from tests.integration.corral_server import leftovers
    found = leftovers(server.data_dir, [sandbox_id])
    return not [f for f in found if not f.startswith(("dir:", "netns:"))]


def test_timeout_keeps_working_after_resume(e2b: CorralServer) -> None:
    sbx = create("gvisor", timeout=120)
    try:
        sbx.pause()
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=4)
        info = sbx.get_info()
        left = (info.end_at - info.started_at).total_seconds()
        assert left > 0
        assert wait_until(lambda: not sbx.is_running(), timeout=30)
    finally:
        sbx.kill()
    assert_clean(e2b, [sbx.sandbox_id])


def test_async_pause_resume(e2b: CorralServer) -> None:
    async def main() -> str:
        sbx = await AsyncSandbox.create(metadata={"corral.runtime": "gvisor"}, timeout=120)
        try:
            await sbx.files.write("/home/user/a.txt", "async data")
            await sbx.commands.run("echo 7 > /tmp/mem && sleep 1000 &", background=False)
            assert await sbx.pause() is True
            sbx2 = await AsyncSandbox.connect(sbx.sandbox_id, timeout=120)
            assert await sbx2.files.read("/home/user/a.txt") == "async data"
            r = await sbx2.commands.run("cat /tmp/mem; pgrep -c sleep")
            assert r.stdout.split() == ["7", "1"]
            return sbx.sandbox_id
        finally:
            await sbx.kill()
    sid = asyncio.run(main())
    assert_clean(e2b, [sid])
