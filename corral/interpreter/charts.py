"""Inside a Python kernel: a matplotlib Figure -> the structured chart dict the SDK's charts.py deserializes."""

from __future__ import annotations

import math
from typing import Any

CHART_MIME = "application/vnd.corral.chart+json"
BOX_ATTR = "_corral_box_stats"  # set on an Axes by the bxp() wrapper: the stats of the boxes drawn on it


def install_boxplot_hook() -> None:
    """Record each Axes.bxp call's stats (boxplot() and seaborn both end there): lines alone do not say 'box'."""
    import importlib
    import sys

    # Via sys.modules: this runs from an import hook, before `matplotlib.axes` is bound on the parent package.
    axes_cls = (sys.modules.get("matplotlib.axes") or importlib.import_module("matplotlib.axes")).Axes
    original = axes_cls.bxp
    if getattr(original, "_corral", False):
        return

    def bxp(self: Any, bxpstats: Any, *args: Any, **kwargs: Any) -> Any:
        stats = list(bxpstats)
        setattr(self, BOX_ATTR, [*getattr(self, BOX_ATTR, []), *stats])
        return original(self, stats, *args, **kwargs)

    bxp._corral = True  # type: ignore[attr-defined]
    axes_cls.bxp = bxp


def figure_chart(fig: Any) -> dict[str, Any] | None:
    """One chart per Axes; several become a `superchart`. None when nothing is recognised (the PNG still shows)."""
    charts = []
    for ax in fig.axes:
        try:
            chart = axes_chart(ax)
        except Exception:  # noqa: BLE001 - a chart is a bonus: never break the display of a figure
            chart = None
        if chart is not None:
            charts.append(chart)
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else None
    if not charts:
        return None
    if len(charts) == 1:
        if not charts[0]["title"] and title:
            charts[0]["title"] = title
        return charts[0]
    return {"type": "superchart", "title": title or None, "elements": charts}


def axes_chart(ax: Any) -> dict[str, Any] | None:
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    title = ax.get_title() or None
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        elements = [
            {"label": w.get_label(), "angle": _num(abs(w.theta2 - w.theta1)), "radius": _num(w.r)} for w in wedges
        ]
        return {"type": "pie", "title": title, "elements": elements}
    base = {
        "title": title,
        "x_label": ax.get_xlabel() or None,
        "y_label": ax.get_ylabel() or None,
        "x_unit": None,
        "y_unit": None,
    }
    boxes = getattr(ax, BOX_ATTR, None)
    if boxes:
        return {"type": "box_and_whisker", **base, "elements": [_box(i, s) for i, s in enumerate(boxes)]}
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        return {"type": "bar", **base, "elements": _bars(ax, bars)}
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) > 0]
    if lines:
        elements = [_series(ax, ln.get_label(), ln.get_xdata(), ln.get_ydata()) for ln in lines]
        return {"type": "line", **base, **_ticks(ax), "elements": elements}
    if scatters:
        elements = []
        for c in scatters:
            offsets = c.get_offsets()
            elements.append(_series(ax, c.get_label(), offsets[:, 0], offsets[:, 1]))
        return {"type": "scatter", **base, **_ticks(ax), "elements": elements}
    return None


def _num(v: Any) -> Any:
    """JSON-safe number: numpy scalars to float, NaN/inf to None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f) or math.isinf(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2**53 and isinstance(v, int) else f


def _scale(axis: Any, scale: str) -> str:
    import matplotlib.category
    import matplotlib.dates

    get = getattr(axis, "get_converter", None)
    conv = get() if get is not None else getattr(axis, "converter", None)
    if isinstance(conv, (matplotlib.dates.DateConverter, matplotlib.dates._SwitchableDateConverter)):
        return "datetime"
    if isinstance(conv, matplotlib.category.StrCategoryConverter):
        return "categorical"
    return scale


def _values(axis: Any, scale: str, values: Any) -> list[Any]:
    import matplotlib.dates
    import numpy as np

    if scale == "datetime":
        return [matplotlib.dates.num2date(float(v)).isoformat() for v in np.asarray(values, dtype=float)]
    if scale == "categorical":
        return list(axis.get_major_formatter().format_ticks(list(values)))
    return [_num(v) for v in values]


def _series(ax: Any, label: str, xs: Any, ys: Any) -> dict[str, Any]:
    x_scale = _scale(ax.xaxis, ax.get_xscale())
    y_scale = _scale(ax.yaxis, ax.get_yscale())
    xs = _values(ax.xaxis, x_scale, _plain(ax.xaxis, xs))
    ys = _values(ax.yaxis, y_scale, _plain(ax.yaxis, ys))
    return {"label": label, "points": [[x, y] for x, y in zip(xs, ys, strict=False)]}


def _plain(axis: Any, values: Any) -> Any:
    """Data as the axis's numbers (a line keeps its raw datetimes/strings; the axis converts them)."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        return arr
    return np.asarray(axis.convert_units(values), dtype=float)


def _ticks(ax: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, axis, scale in (("x", ax.xaxis, ax.get_xscale()), ("y", ax.yaxis, ax.get_yscale())):
        scale = _scale(axis, scale)
        lo, hi = sorted(axis.get_view_interval())
        ticks = [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
        out[f"{name}_scale"] = scale
        out[f"{name}_ticks"] = _values(axis, scale, ticks) if scale == "datetime" else [_num(t) for t in ticks]
        out[f"{name}_tick_labels"] = [str(t) for t in axis.get_major_formatter().format_ticks(ticks)]
    return out


def _bars(ax: Any, containers: list[Any]) -> list[dict[str, Any]]:
    elements = []
    for c in containers:
        horizontal = getattr(c, "orientation", "vertical") == "horizontal"
        axis = ax.yaxis if horizontal else ax.xaxis
        group = c.get_label()
        group = "" if group is None or group.startswith("_") else group
        centers = [r.get_y() + r.get_height() / 2 if horizontal else r.get_x() + r.get_width() / 2 for r in c]
        labels = _labels_at(axis, centers)
        for rect, label in zip(c, labels, strict=False):
            value = rect.get_width() if horizontal else rect.get_height()
            elements.append({"label": label, "group": group, "value": _num(value)})
    return elements


def _labels_at(axis: Any, positions: list[float]) -> list[str]:
    """The tick label at each bar's centre, else the formatted position."""
    locs = list(axis.get_majorticklocs())
    labels = [str(t) for t in axis.get_major_formatter().format_ticks(locs)] if locs else []
    out = []
    for p in positions:
        best = min(range(len(locs)), key=lambda i: abs(locs[i] - p), default=None)
        if best is not None and abs(locs[best] - p) < 0.26 and labels[best]:
            out.append(labels[best])
        else:
            out.append(axis.get_major_formatter().format_data(p))
    return out


def _box(i: int, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": str(s.get("label", i + 1)),
        "min": _num(s["whislo"]),
        "first_quartile": _num(s["q1"]),
        "median": _num(s["med"]),
        "third_quartile": _num(s["q3"]),
        "max": _num(s["whishi"]),
        "outliers": [_num(v) for v in s.get("fliers", [])],
    }
