"""Translate Jupyter messages into the newline-delimited JSON events the e2b-code-interpreter SDK parses."""

from __future__ import annotations

import json
import time
from typing import Any

Event = dict[str, Any]

# The custom MIME type our IPython formatter (kernel_startup.py) gives a matplotlib figure's extracted chart.
CHART_MIME = "application/vnd.corral.chart+json"
MAIN_RESULT_KEY = "corral/main_result"

# Jupyter MIME type -> the SDK's Result field. Anything else goes to `extra` under its MIME type.
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "text/javascript": "javascript",
    CHART_MIME: "chart",
}


def now_ns() -> int:
    return time.time_ns()


def stream_event(name: str, text: str) -> Event:
    """stdout/stderr (anything else a kernel names a stream goes to stdout)."""
    return {"type": "stderr" if name == "stderr" else "stdout", "text": text, "timestamp": now_ns()}


def result_event(data: dict[str, Any], *, is_main_result: bool) -> Event:
    """A display_data / execute_result bundle as one `result` event."""
    event: Event = {"type": "result", "is_main_result": is_main_result}
    extra: dict[str, Any] = {}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field is None:
            extra[mime] = value
            continue
        if field in ("json", "chart") and isinstance(value, str):
            try:  # some kernels send JSON bundles as text
                value = json.loads(value)
            except ValueError:
                extra[mime] = value
                continue
        if isinstance(value, list) and field not in ("json", "chart"):
            value = "".join(value)  # nbformat allows multi-line strings as lists
        if field in event:  # text/javascript and application/javascript both present: keep the first
            continue
        event[field] = value
    if extra:
        event["extra"] = extra
    return event


def is_value_display(event: Event) -> bool:
    """A non-main result that shows a value (text, no image): what IRkernel sends for a visible R value."""
    return (
        event["type"] == "result"
        and not event["is_main_result"]
        and "text" in event
        and not any(k in event for k in ("png", "jpeg", "svg", "pdf"))
    )


def error_event(name: str, value: str, traceback: list[str] | str) -> Event:
    tb = traceback if isinstance(traceback, str) else "\n".join(traceback)
    return {"type": "error", "name": name, "value": value, "traceback": tb}


def count_event(execution_count: int) -> Event:
    return {"type": "number_of_executions", "execution_count": execution_count}


def translate_iopub(msg: dict[str, Any]) -> Event | None:
    """One iopub message -> one event, or None for those the SDK has no use for (status, execute_input, ...)."""
    kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
    content = msg.get("content", {})
    if kind == "stream":
        return stream_event(content.get("name", "stdout"), content.get("text", ""))
    if kind in ("execute_result", "display_data", "update_display_data"):
        # tslab has no execute_result: our hook (tslab_hook.js) marks the last expression's display instead.
        main = kind == "execute_result" or bool((content.get("metadata") or {}).get(MAIN_RESULT_KEY))
        return result_event(content.get("data", {}), is_main_result=main)
    if kind == "error":
        return error_event(content.get("ename") or "Error", content.get("evalue", ""), content.get("traceback", []))
    return None


def reply_error(content: dict[str, Any]) -> Event | None:
    """An execute_reply with status error (kernels like bash report a failing command only there)."""
    if content.get("status") != "error":
        return None
    return error_event(content.get("ename") or "Error", str(content.get("evalue", "")), content.get("traceback", []))


def encode(event: Event) -> bytes:
    """One NDJSON line; the SDK splits on newlines, and json.dumps never emits a raw one."""
    return json.dumps(event, default=str).encode() + b"\n"
