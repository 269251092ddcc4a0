"""Reports: parameterised notebooks -> PDF, on a schedule (``ob.reports``).

- :func:`run_report` (runner): papermill -> HTML without code -> WeasyPrint PDF, with a
  manifest, atomically, for any notebook with a ``parameters`` cell.
- :func:`inspect_parameters`, :func:`validate_parameters` (params): declared parameters,
  checked before a kernel starts.
- :func:`load_schedules`, :class:`Schedule`, :class:`Scheduler` (schedule): ``scheduled/*.yaml``.
- :class:`Table`, :class:`Headline`, ``fmt_*`` (format) and :func:`line_chart`,
  :func:`bar_chart`, :func:`heatmap` (charts): what notebooks display.
- :func:`load_period`, :func:`require_rows` (data): a report's inputs, checked for coverage.

Names load on first use, so ``import obsbench.reports`` stays cheap (no papermill,
nbconvert, WeasyPrint or matplotlib until a run or a chart needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obsbench.reports.charts import Chart, bar_chart, heatmap, line_chart
    from obsbench.reports.data import (
        ReportDataError,
        load_period,
        period_bounds,
        record_in_manifest,
        require_rows,
    )
    from obsbench.reports.delivery import deliver, get_delivery, register_delivery
    from obsbench.reports.format import (
        Headline,
        Note,
        Table,
        fmt_bps,
        fmt_int,
        fmt_money,
        fmt_ms,
        fmt_num,
        fmt_pct,
    )
    from obsbench.reports.history import History, collect_manifests, write_index
    from obsbench.reports.params import ParameterSpec, inspect_parameters, validate_parameters
    from obsbench.reports.runner import RunResult, ensure_kernel, list_notebooks, run_report
    from obsbench.reports.schedule import Schedule, Scheduler, load_schedules

_EXPORTS = {
    "Chart": "charts",
    "bar_chart": "charts",
    "heatmap": "charts",
    "line_chart": "charts",
    "ReportDataError": "data",
    "load_period": "data",
    "period_bounds": "data",
    "require_rows": "data",
    "record_in_manifest": "data",
    "deliver": "delivery",
    "get_delivery": "delivery",
    "register_delivery": "delivery",
    "Headline": "format",
    "Note": "format",
    "Table": "format",
    "fmt_bps": "format",
    "fmt_int": "format",
    "fmt_money": "format",
    "fmt_ms": "format",
    "fmt_num": "format",
    "fmt_pct": "format",
    "History": "history",
    "collect_manifests": "history",
    "write_index": "history",
    "ParameterSpec": "params",
    "inspect_parameters": "params",
    "validate_parameters": "params",
    "RunResult": "runner",
    "ensure_kernel": "runner",
    "list_notebooks": "runner",
    "run_report": "runner",
    "Schedule": "schedule",
    "Scheduler": "schedule",
    "load_schedules": "schedule",
}

__all__ = [
    "Chart",
    "Headline",
    "History",
    "Note",
    "ParameterSpec",
    "ReportDataError",
    "RunResult",
    "Schedule",
    "Scheduler",
    "Table",
    "bar_chart",
    "collect_manifests",
    "deliver",
    "ensure_kernel",
    "fmt_bps",
    "fmt_int",
    "fmt_money",
    "fmt_ms",
    "fmt_num",
    "fmt_pct",
    "get_delivery",
    "heatmap",
    "inspect_parameters",
    "line_chart",
    "list_notebooks",
    "load_period",
    "load_schedules",
    "period_bounds",
    "record_in_manifest",
    "register_delivery",
    "require_rows",
    "run_report",
    "validate_parameters",
    "write_index",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'obsbench.reports' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"obsbench.reports.{module}"), name)
