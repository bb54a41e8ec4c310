"""A template whose start command runs (code-interpreter-v1) is captured once; later sandboxes restore it warm."""

from __future__ import annotations

import time

from e2b_code_interpreter import Sandbox as CodeSandbox

from tests.integration.corral_server import BASE_TEMPLATES, CorralServer
from tests.integration.pause.helpers import assert_clean
from tests.integration.sdk.helpers import wait_until

TEMPLATE = "code-interpreter-v1"


def test_template_start_command_is_restored_warm(e2b: CorralServer) -> None:
    assert (BASE_TEMPLATES / TEMPLATE / "rootfs").is_dir(), f"{TEMPLATE} template not built"
    ids: list[str] = []
    first = CodeSandbox.create(template=TEMPLATE, timeout=300, envs={"SECRET_OF_FIRST": "x"})
    ids.append(first.sandbox_id)
    try:
        assert first.run_code("1 + 1").text == "2"
        images = e2b.data_dir / "template-snapshots" / TEMPLATE
        assert wait_until(lambda: any((d / "complete").exists() for d in images.glob("*")), timeout=180)
        started = time.monotonic()
        warm = CodeSandbox.create(template=TEMPLATE, timeout=300, envs={"MINE": "warm"})
        ids.append(warm.sandbox_id)
        created_in = time.monotonic() - started
        assert warm.run_code("x = 6 * 7\nx").text == "42"
        # Restored on the create path, or ahead of it by the template's warm pool (a restore of the same image).
        log = e2b.log_tail(400)
        assert "started from snapshot template:" + TEMPLATE in log or any(
            f"+{warm.sandbox_id} " in line and "restored from the template snapshot" in line
            for line in log.splitlines()), log
        # Its own /init: env and token are this sandbox's, nothing of the first sandbox's create came along.
        assert warm.commands.run("echo $MINE; echo ${SECRET_OF_FIRST:-none}").stdout.split() == ["warm", "none"]
        print(f"warm create of {TEMPLATE}: {created_in:.2f}s")
        warm.kill()
    finally:
        first.kill()
    assert_clean(e2b, ids)
