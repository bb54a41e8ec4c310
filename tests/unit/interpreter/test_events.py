"""Jupyter iopub/shell messages -> the NDJSON events the stock SDK parses (checked with the SDK's own parser)."""

from __future__ import annotations

import json

from e2b_code_interpreter.models import Execution, parse_output

from corral.interpreter import events


def _msg(kind: str, content: dict[str, object]) -> dict[str, object]:
    return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {"msg_id": "m"}, "content": content}


def _parse(*evs: events.Event) -> Execution:
    execution = Execution()
    for ev in evs:
        line = events.encode(ev)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        parse_output(execution, line.decode())
    return execution


def test_streams() -> None:
    out = events.translate_iopub(_msg("stream", {"name": "stdout", "text": "hi\nthere\n"}))
    err = events.translate_iopub(_msg("stream", {"name": "stderr", "text": "oops\n"}))
    assert out is not None and err is not None
    assert out["type"] == "stdout" and isinstance(out["timestamp"], int)
    ex = _parse(out, err)
    assert ex.logs.stdout == ["hi\nthere\n"] and ex.logs.stderr == ["oops\n"]


def test_execute_result_is_main_and_display_data_is_not() -> None:
    main = events.translate_iopub(_msg("execute_result", {"data": {"text/plain": "42"}, "execution_count": 1}))
    disp = events.translate_iopub(_msg("display_data", {"data": {"text/plain": "<Figure>", "image/png": "iVBO"}}))
    assert main is not None and disp is not None
    ex = _parse(main, disp, events.count_event(7))
    assert ex.text == "42" and ex.execution_count == 7
    assert ex.results[0].is_main_result and not ex.results[1].is_main_result
    assert ex.results[1].png == "iVBO"


def test_every_mime_type_maps_to_its_field_and_unknown_ones_go_to_extra() -> None:
    data = {
        "text/plain": "t", "text/html": "<b>h</b>", "text/markdown": "# m", "image/svg+xml": "<svg/>",
        "image/png": "p", "image/jpeg": "j", "application/pdf": "pdf", "text/latex": "$x$",
        "application/json": {"a": 1}, "application/javascript": "alert(1)", "application/x-custom": "c",
    }  # fmt: skip
    ev = events.result_event(data, is_main_result=True)
    r = _parse(ev).results[0]
    assert (r.text, r.html, r.markdown, r.svg, r.png, r.jpeg, r.pdf, r.latex) == (
        "t", "<b>h</b>", "# m", "<svg/>", "p", "j", "pdf", "$x$")  # fmt: skip
    assert r.json == {"a": 1} and r.javascript == "alert(1)"
    assert r.extra == {"application/x-custom": "c"}


def test_chart_mime_becomes_the_sdks_chart_object() -> None:
    chart = {"type": "pie", "title": "t", "elements": [{"label": "a", "angle": 90.0, "radius": 1.0}]}
    ev = events.result_event({"text/plain": "<Figure>", events.CHART_MIME: json.dumps(chart)}, is_main_result=False)
    r = _parse(ev).results[0]
    assert r.chart is not None and r.chart.type == "pie" and r.chart.elements[0].angle == 90.0
    assert "extra" not in ev


def test_multiline_list_values_are_joined() -> None:
    ev = events.result_event({"text/plain": ["a\n", "b"]}, is_main_result=False)
    assert ev["text"] == "a\nb"


def test_error_from_iopub_and_from_reply() -> None:
    ev = events.translate_iopub(_msg("error", {"ename": "ZeroDivisionError", "evalue": "division by zero",
                                               "traceback": ["line 1", "line 2"]}))  # fmt: skip
    assert ev is not None
    ex = _parse(ev)
    assert ex.error is not None and ex.error.name == "ZeroDivisionError"
    assert ex.error.value == "division by zero" and ex.error.traceback == "line 1\nline 2"
    # bash_kernel reports a failing command only in execute_reply, with an empty ename
    reply = events.reply_error({"status": "error", "ename": "", "evalue": 1, "traceback": []})
    assert reply == {"type": "error", "name": "Error", "value": "1", "traceback": ""}
    assert events.reply_error({"status": "ok"}) is None


def test_messages_the_sdk_does_not_use_are_dropped() -> None:
    assert events.translate_iopub(_msg("status", {"execution_state": "busy"})) is None
    assert events.translate_iopub(_msg("execute_input", {"code": "1"})) is None


def test_encode_escapes_newlines_and_non_json_values() -> None:
    line = events.encode({"type": "stdout", "text": "a\nb", "timestamp": 1})
    assert line == b'{"type": "stdout", "text": "a\\nb", "timestamp": 1}\n'
