"""The interpreter server on the host (a venv with the kernels), driven by the stock SDK in debug mode."""

from __future__ import annotations

import json
import time

import pytest
from e2b import NotFoundException, SandboxException, TimeoutException
from e2b_code_interpreter import Sandbox

from tests.integration.interpreter.conftest import HostInterpreter

pytestmark = pytest.mark.integration


@pytest.fixture
def sbx(sdk_env: HostInterpreter) -> Sandbox:
    return Sandbox.create()  # debug mode: no API call, every port is our server


def test_state_across_calls_and_execution_count(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    first = sbx.run_code("a = 20", context=ctx)
    ex = sbx.run_code("a * 2 + 2", context=ctx)
    assert ex.text == "42" and ex.error is None
    assert first.execution_count is not None and ex.execution_count == first.execution_count + 1


def test_default_context_is_shared_and_separate_from_new_ones(sbx: Sandbox) -> None:
    sbx.run_code("shared_marker = 1")
    assert sbx.run_code("shared_marker").text == "1"
    ctx = sbx.create_code_context()
    assert sbx.run_code("shared_marker", context=ctx).error.name == "NameError"  # type: ignore[union-attr]


def test_every_result_type(sbx: Sandbox) -> None:
    code = """
from IPython.display import HTML, JSON, SVG, Image, Javascript, Latex, Markdown, display
import base64, struct, zlib
def _png():
    raw = b"\\x00\\xff\\x00\\x00"
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + \\
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
class Pdf:
    def _repr_pdf_(self): return b"%PDF-1.4 fake"
display(HTML("<b>h</b>"), Markdown("# m"), SVG("<svg xmlns='http://www.w3.org/2000/svg'/>"), Image(_png()),
        Latex("$x^2$"), JSON({"k": [1, 2]}), Javascript("console.log(1)"), Pdf())
display({"image/jpeg": base64.b64encode(b"\\xff\\xd8fake").decode(), "text/plain": "jpeg"}, raw=True)
display({"application/x-corral-test": "custom", "text/plain": "x"}, raw=True)
"""
    ex = sbx.run_code(code)
    assert ex.error is None, ex.error
    r = ex.results
    assert r[0].html == "<b>h</b>" and r[1].markdown == "# m" and r[2].svg and "<svg" in r[2].svg
    assert r[3].png and r[4].latex == "$x^2$" and r[5].json == {"k": [1, 2]}
    assert r[6].javascript == "console.log(1)" and r[7].pdf
    assert r[8].jpeg and r[8].text == "jpeg"
    assert r[9].extra == {"application/x-corral-test": "custom"}
    assert not any(x.is_main_result for x in r)


def test_dataframe_and_matplotlib(sbx: Sandbox) -> None:
    sbx.run_code("import pandas as pd; df = pd.DataFrame({'a': [1, 2]})")
    ex = sbx.run_code("df.plot(); df")
    assert ex.error is None, ex.error
    main = [r for r in ex.results if r.is_main_result]
    assert len(main) == 1 and main[0].html and "<table" in main[0].html and "a" in (main[0].text or "")
    (fig,) = [r for r in ex.results if r.png]
    assert fig.chart is not None and fig.chart.type == "line"
    assert fig.chart.elements[0].label == "a" and fig.chart.elements[0].points == [(0, 1), (1, 2)]


CHARTS = {
    "line": "fig, ax = plt.subplots(); ax.plot([1, 2, 3], [1, 4, 9], label='sq'); ax.set_title('L'); "
    "ax.set_xlabel('x'); ax.set_ylabel('y')",
    "scatter": "fig, ax = plt.subplots(); ax.scatter([1, 2], [3, 4], label='pts')",
    "bar": "fig, ax = plt.subplots(); ax.bar(['a', 'b'], [3, 4], label='g1')",
    "pie": "fig, ax = plt.subplots(); ax.pie([1, 3], labels=['x', 'y'])",
    "box_and_whisker": "fig, ax = plt.subplots(); ax.boxplot([[1, 2, 3, 4, 50], [2, 3, 4]], tick_labels=['A', 'B'])",
    "superchart": "fig, (a1, a2) = plt.subplots(1, 2); a1.plot([1, 2]); a2.bar(['q'], [1]); fig.suptitle('S')",
}


@pytest.mark.parametrize("kind", list(CHARTS))
def test_charts(sbx: Sandbox, kind: str) -> None:
    ex = sbx.run_code(f"import matplotlib.pyplot as plt\n{CHARTS[kind]}\nplt.show()")
    assert ex.error is None, ex.error
    (fig,) = ex.results
    assert fig.png and fig.chart is not None and fig.chart.type == kind
    c = fig.chart
    if kind == "line":
        assert (c.title, c.x_label, c.y_label) == ("L", "x", "y")  # type: ignore[attr-defined]
        assert c.elements[0].label == "sq" and c.elements[0].points == [(1, 1), (2, 4), (3, 9)]
    elif kind == "scatter":
        assert c.elements[0].points == [(1, 3), (2, 4)]
    elif kind == "bar":
        assert [(e.label, e.group, e.value) for e in c.elements] == [("a", "g1", 3), ("b", "g1", 4)]
    elif kind == "pie":
        assert [(e.label, e.angle) for e in c.elements] == [("x", 90), ("y", 270)]
    elif kind == "box_and_whisker":
        a, b = c.elements
        assert (a.label, a.min, a.first_quartile, a.median, a.third_quartile, a.max) == ("A", 1, 2, 3, 4, 4)
        assert a.outliers == [50] and b.label == "B"
    else:
        assert c.title == "S" and [e.type for e in c.elements] == ["line", "bar"]


def test_errors_and_callbacks(sbx: Sandbox) -> None:
    seen: dict[str, list[object]] = {"out": [], "err": [], "res": [], "error": []}
    ex = sbx.run_code(
        "import sys; print('o1'); print('e1', file=sys.stderr); display(7); 1/0",
        on_stdout=seen["out"].append, on_stderr=seen["err"].append,
        on_result=seen["res"].append, on_error=seen["error"].append,
    )  # fmt: skip
    assert [str(m) for m in seen["out"]] == ["o1\n"] and [str(m) for m in seen["err"]] == ["e1\n"]
    assert seen["res"][0].text == "7"  # type: ignore[attr-defined]
    assert ex.error is not None and seen["error"] == [ex.error]
    assert (ex.error.name, ex.error.value) == ("ZeroDivisionError", "division by zero")
    assert "ZeroDivisionError" in ex.error.traceback


def test_env_vars_per_execution(sbx: Sandbox) -> None:
    ex = sbx.run_code("import os; os.environ['CORRAL_E']", envs={"CORRAL_E": "one"})
    assert ex.text == "'one'"
    assert sbx.run_code("os.environ.get('CORRAL_E')").text is None  # restored afterwards


def test_cwd_and_languages(sbx: Sandbox, host_interpreter: HostInterpreter, tmp_path: object) -> None:
    ctx = sbx.create_code_context(cwd="/tmp", language="python")
    assert (ctx.language, ctx.cwd) == ("python", "/tmp")
    assert sbx.run_code("import os; os.getcwd()", context=ctx).text == "'/tmp'"
    sh = sbx.create_code_context(language="bash")
    sbx.run_code("V=5", context=sh)
    ex = sbx.run_code('echo "v=$V e=$E"; pwd', context=sh, envs={"E": "x"})
    assert ex.logs.stdout[0] == "v=5 e=x\n"
    assert sbx.run_code("echo hi", language="bash").logs.stdout == ["hi\n"]  # the default bash context
    assert sbx.run_code("ls /nonexistent-dir", context=sh).error is not None
    ids = {c.id for c in sbx.list_code_contexts()}
    assert {ctx.id, sh.id} <= ids
    with pytest.raises(SandboxException, match="supported: .*python"):
        sbx.create_code_context(language="cobol")
    with pytest.raises(SandboxException, match="400"):
        sbx.run_code("1", language="cobol")


def test_javascript_and_typescript(sbx: Sandbox, host_interpreter: HostInterpreter) -> None:
    if "javascript" not in host_interpreter.languages:
        pytest.skip("no JavaScript kernel on this host (npm install tslab failed or no npm)")
    js = sbx.create_code_context(language="js")
    assert sbx.run_code("let x = 2; x * 21", context=js).text == "42"
    ex = sbx.run_code("console.log(process.env.G); x + 1", context=js, envs={"G": "g"})
    assert ex.logs.stdout == ["g\n"] and ex.text == "3"
    ex = sbx.run_code("throw new RangeError('nope')", context=js)
    assert ex.error is not None and (ex.error.name, ex.error.value) == ("RangeError", "nope")
    assert sbx.run_code("x", context=js).text == "2"  # right after an error (tslab's abort window)
    ts = sbx.create_code_context(language="typescript")
    assert sbx.run_code("const n: number = 4; n * 2", context=ts).text == "8"
    ex = sbx.run_code("const s: number = 'x'", context=ts)
    assert ex.error is not None and "not assignable" in ex.error.value


def test_unknown_context_restart_and_remove(sbx: Sandbox) -> None:
    ghost = sbx.create_code_context()
    sbx.remove_code_context(ghost)
    with pytest.raises(NotFoundException):
        sbx.run_code("1", context=ghost)
    with pytest.raises(NotFoundException):
        sbx.restart_code_context(ghost)
    ctx = sbx.create_code_context()
    sbx.run_code("kept = 1", context=ctx)
    sbx.restart_code_context(ctx)
    assert sbx.run_code("kept", context=ctx).error.name == "NameError"  # type: ignore[union-attr]


def test_timeout_interrupts_and_context_stays_usable(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    sbx.run_code("state = 'alive'", context=ctx)
    t = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.run_code("import time; time.sleep(120)", context=ctx, timeout=1)
    assert time.monotonic() - t < 10
    t = time.monotonic()
    assert sbx.run_code("state", context=ctx, timeout=30).text == "'alive'"
    assert time.monotonic() - t < 10  # the sleep was interrupted, not waited out


def test_kernel_death_is_an_error_and_the_kernel_restarts(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    sbx.run_code("lost = 1", context=ctx)
    ex = sbx.run_code("import os; os._exit(1)", context=ctx)
    assert ex.error is not None and ex.error.name == "KernelDied" and "restarted" in ex.error.value
    after = sbx.run_code("lost", context=ctx)
    assert after.error is not None and after.error.name == "NameError"
    assert sbx.run_code("1 + 1", context=ctx).text == "2"


def test_kernel_dying_between_cells_is_reported_on_the_next_one(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    sbx.run_code("import os, threading; threading.Timer(0.3, os._exit, (1,)).start()", context=ctx)
    time.sleep(1.5)
    ex = sbx.run_code("1 + 1", context=ctx)
    assert ex.text == "2" and any("had died" in line for line in ex.logs.stderr)


def test_timeout_restores_per_execution_env_vars(sbx: Sandbox) -> None:
    ctx = sbx.create_code_context()
    with pytest.raises(TimeoutException):
        sbx.run_code("import time; time.sleep(120)", context=ctx, envs={"CORRAL_T": "x"}, timeout=1)
    assert sbx.run_code("import os; os.environ.get('CORRAL_T')", context=ctx, timeout=30).text is None


def test_sandbox_env_vars_published_after_the_kernel_started(sbx: Sandbox, host_interpreter: HostInterpreter) -> None:
    """What the agent publishes at /init reaches kernels that started before it, changes included, before the
    next cell; a per-execution env var still wins for its cell and the sandbox value comes back after it."""
    def publish(env: dict[str, str]) -> None:
        tmp = host_interpreter.env_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(env))
        tmp.replace(host_interpreter.env_file)  # as the agent does: a rename, so a new inode

    try:
        assert sbx.run_code("import os; os.environ.get('CORRAL_G')").text is None
        publish({"CORRAL_G": "one", "bad-name": "x"})
        assert sbx.run_code("os.environ.get('CORRAL_G')").text == "'one'"
        publish({"CORRAL_G": "two"})
        assert sbx.run_code("os.environ.get('CORRAL_G')").text == "'two'"
        assert sbx.run_code("os.environ.get('CORRAL_G')", envs={"CORRAL_G": "cell"}).text == "'cell'"
        assert sbx.run_code("os.environ.get('CORRAL_G')").text == "'two'"
        if "bash" in host_interpreter.languages:
            assert sbx.run_code("echo $CORRAL_G", language="bash").logs.stdout == ["two\n"]
    finally:
        host_interpreter.env_file.unlink(missing_ok=True)
