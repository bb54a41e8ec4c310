"""Run once in every Python kernel (IPKernelApp.exec_lines): matplotlib figures also display as a structured chart."""

import importlib.util as _ilu
import os as _os
import sys as _sys


class _AfterImport:
    """A meta-path finder that runs `then()` once module `name` has been executed, then removes itself."""

    def __init__(self, name: str, then: object) -> None:
        self.name, self.then = name, then

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != self.name:
            return None
        _sys.meta_path.remove(self)  # type: ignore[arg-type]
        spec = _ilu.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run, then = loader.exec_module, self.then

        def exec_module(module: object) -> None:
            run(module)
            try:
                then()  # type: ignore[operator]
            except Exception:  # noqa: BLE001, S110 - charts are a bonus; the import must succeed regardless
                pass

        loader.exec_module = exec_module
        return spec


def _setup() -> None:
    from IPython import get_ipython
    from IPython.core.formatters import JSONFormatter

    spec = _ilu.spec_from_file_location("_corral_charts", _os.path.join(_os.path.dirname(__file__), "charts.py"))
    assert spec is not None and spec.loader is not None
    charts = _ilu.module_from_spec(spec)
    spec.loader.exec_module(charts)
    _sys.modules["_corral_charts"] = charts

    class ChartFormatter(JSONFormatter):  # type: ignore[misc]
        """Matches figures itself instead of via for_type: matplotlib's inline backend, when it loads, pops Figure
        from every formatter (IPython's select_figure_formats), which would silently drop a registered printer."""

        format_type = charts.CHART_MIME
        print_method = "_repr_corral_chart_"

        def __call__(self, obj: object) -> object:
            module = _sys.modules.get("matplotlib.figure")
            if not self.enabled or module is None or not isinstance(obj, module.Figure):
                return None
            try:
                return charts.figure_chart(obj)
            except Exception:  # noqa: BLE001 - the PNG still displays; a chart is a bonus
                return None

    shell = get_ipython()
    if shell is None or charts.CHART_MIME in shell.display_formatter.formatters:
        return
    formatter = ChartFormatter(parent=shell.display_formatter)
    shell.display_formatter.formatters[charts.CHART_MIME] = formatter
    # active_types is fixed when the shell starts: a formatter added later is skipped unless listed there.
    shell.display_formatter.active_types = [*shell.display_formatter.active_types, charts.CHART_MIME]

    if "matplotlib.axes" in _sys.modules:
        charts.install_boxplot_hook()
    else:  # wrap Axes.bxp right after the user's code first imports matplotlib (it is not loaded at startup)
        _sys.meta_path.insert(0, _AfterImport("matplotlib.axes", charts.install_boxplot_hook))  # type: ignore[arg-type]


_setup()
