"""End to end: the stock e2b-code-interpreter SDK -> Corral API -> gateway port forwarding -> :49999 in a sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2b_code_interpreter import Sandbox

from tests.integration.conftest import require_host
from tests.integration.corral_server import BASE_TEMPLATES, CorralServer
from tests.integration.sdk.helpers import RUNTIME_METADATA_KEY

pytestmark = pytest.mark.integration
TEMPLATE = "code-interpreter-v1"


@pytest.fixture
def sbx(e2b: CorralServer, tier: str) -> Iterator[Sandbox]:
    require_host()
    if not (BASE_TEMPLATES / TEMPLATE / "rootfs" / "opt" / "corral").exists():
        pytest.skip(f"template {TEMPLATE} not built (run: corral template build {TEMPLATE})")
    s = Sandbox.create(metadata={RUNTIME_METADATA_KEY: tier})  # the SDK's default template is code-interpreter-v1
    try:
        yield s
    finally:
        s.kill()


def test_stateful_python_rich_results_and_other_languages(sbx: Sandbox, tier: str) -> None:
    t0 = time.monotonic()
    first = sbx.run_code("import pandas as pd; df = pd.DataFrame({'a': [1, 2]})")
    first_s = time.monotonic() - t0
    assert first.error is None, first.error
    ex = sbx.run_code("df.plot(); df")
    assert ex.error is None, ex.error
    main = [r for r in ex.results if r.is_main_result]
    assert len(main) == 1 and main[0].html and "<table" in main[0].html and main[0].text
    figures = [r for r in ex.results if r.png]
    assert len(figures) == 1 and figures[0].chart is not None and figures[0].chart.type == "line"

    out: list[str] = []
    ex = sbx.run_code("import os; print(os.environ['GREETING'])", envs={"GREETING": "hi"}, on_stdout=out.append)
    assert [str(o) for o in out] == ["hi\n"]

    js = sbx.create_code_context(language="js")
    assert sbx.run_code("let x = 2; x * 21", context=js).text == "42"
    assert sbx.run_code("x + 1", context=js).text == "3"
    ex = sbx.run_code("console.log(process.env.GREETING); throw new TypeError('boom')", context=js,
                      envs={"GREETING": "hello"})  # fmt: skip
    assert ex.logs.stdout == ["hello\n"] and ex.error is not None
    assert (ex.error.name, ex.error.value) == ("TypeError", "boom")
    assert sbx.run_code("x", context=js).text == "2"  # right after an error: tslab's 200 ms abort window
    r = sbx.create_code_context(language="r")
    assert sbx.run_code("y <- 2; y * 21", context=r).text == "[1] 42"
    assert sbx.run_code("Sys.getenv('GREETING')", context=r, envs={"GREETING": "hi"}).text == '[1] "hi"'
    assert sbx.run_code("Sys.getenv('GREETING', unset = NA)", context=r).text == "[1] NA"
    sh = sbx.create_code_context(language="bash", cwd="/tmp")
    assert sbx.run_code("pwd", context=sh).logs.stdout == ["/tmp\n"]

    rounds = []
    for _ in range(30):
        t = time.monotonic()
        assert sbx.run_code("1 + 1").text == "2"
        rounds.append(time.monotonic() - t)
    rounds.sort()
    print(f"\n[{tier}] first run_code {first_s * 1000:.0f} ms; trivial cell p50 {rounds[15] * 1000:.1f} ms, "
          f"p99 {rounds[-1] * 1000:.1f} ms")  # fmt: skip


def test_run_code_right_after_create(sbx: Sandbox) -> None:
    assert sbx.run_code("1 + 1").text == "2"


def test_create_envs_reach_the_kernels(e2b: CorralServer, tier: str) -> None:
    """`Sandbox.create(envs=...)` is seen by run_code on every path: a cold start, a restore of the template's memory
    snapshot and a warm pool member (whose kernel started before this create), and by a context made later."""
    require_host()
    if not (BASE_TEMPLATES / TEMPLATE / "rootfs" / "opt" / "corral").exists():
        pytest.skip(f"template {TEMPLATE} not built (run: corral template build {TEMPLATE})")
    for n in range(3):  # the first create may be cold; later ones restore the snapshot or come from the pool
        s = Sandbox.create(metadata={RUNTIME_METADATA_KEY: tier}, envs={"CORRAL_CREATE_ENV": f"v{n}"})
        try:
            assert s.run_code("import os; os.environ.get('CORRAL_CREATE_ENV')").text == f"'v{n}'"
            sh = s.create_code_context(language="bash")
            assert s.run_code("echo $CORRAL_CREATE_ENV", context=sh).logs.stdout == [f"v{n}\n"]
        finally:
            s.kill()


def test_timeout_interrupts_and_the_context_survives(sbx: Sandbox) -> None:
    sbx.run_code("y = 1")
    with pytest.raises(Exception, match="timed out"):
        sbx.run_code("import time; time.sleep(60)", timeout=2)
    assert sbx.run_code("y + 1", timeout=30).text == "2"


async def test_async_sdk_state_results_and_contexts(e2b: CorralServer, tier: str) -> None:
    from e2b_code_interpreter import AsyncSandbox

    require_host()
    if not (BASE_TEMPLATES / TEMPLATE / "rootfs" / "opt" / "corral").exists():
        pytest.skip(f"template {TEMPLATE} not built (run: corral template build {TEMPLATE})")
    sbx = await AsyncSandbox.create(metadata={RUNTIME_METADATA_KEY: tier})
    try:
        assert (await sbx.run_code("a = 40")).error is None
        seen: list[str] = []
        ex = await sbx.run_code("print('side'); a + 2", on_stdout=lambda m: seen.append(str(m)))
        assert ex.text == "42" and seen == ["side\n"]
        err = await sbx.run_code("1/0")
        assert err.error is not None and err.error.name == "ZeroDivisionError"
        sh = await sbx.create_code_context(language="bash")
        assert (await sbx.run_code("echo $((6*7))", context=sh)).logs.stdout == ["42\n"]
        assert any(c.id == sh.id for c in await sbx.list_code_contexts())
    finally:
        await sbx.kill()
