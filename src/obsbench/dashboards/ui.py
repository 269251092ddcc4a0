"""Panel building blocks of the pages: the live page base class and diff-updating views.

Imports Panel and Bokeh (the page modules and the server import this, ``import obsbench``
does not). Every view has an ``update(frame)`` that sends only what changed over the
websocket: tables patch the changed cells (``Tabulator.patch``), charts patch the changed
points and stream the new ones (``ColumnDataSource.patch``/``stream``) and replace their
data only when the window slid; numbers and badges are set only when their text changes.
Polars frames are converted to pandas/numpy at this boundary (Tabulator and Bokeh do not
take polars; ``shared/recipes/panel.md`` pitfalls 3 and 4).
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import numpy as np
import panel as pn
import param
import polars as pl
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    Div,
    HoverTool,
    InlineStyleSheet,
    LinearColorMapper,
    NumberFormatter,
)
from bokeh.palettes import Category10_10, RdYlGn11
from bokeh.plotting import figure

from obsbench.dashboards import alerts_feed
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec, pages_for
from obsbench.dashboards.setup import runtime

__all__ = ["Heatmap", "LineChart", "LivePage", "LiveTable", "Number", "Table", "extension"]

log = logging.getLogger("obsbench.dashboards.ui")

_CSS = """
.obsbench-badge {font-weight: 600; padding: 4px 10px; border-radius: 12px; font-size: 13px;
  white-space: nowrap;}
.obsbench-live {background: #1e7d32; color: white;}
.obsbench-stale {background: #b71c1c; color: white;}
.obsbench-nav a {display: block; padding: 6px 0; font-size: 15px;}
.obsbench-nav a.current {font-weight: 700;}
"""


def extension() -> None:
    """Load the Panel extensions the pages use (call once per session, in ``create()``)."""
    pn.extension(
        "tabulator",
        notifications=True,
        raw_css=[_CSS],
        disconnect_notification="Connection to the server lost: the page no longer updates.",
    )
    pn.state.notifications.position = "top-right"


_DERIVED: dict[int, dict[Hashable, Any]] = {}
_DERIVED_LOCK = threading.Lock()


def _per_frame(frame: pl.DataFrame, key: Hashable, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per ``(frame, key)`` for all the sessions showing ``frame``.

    Snapshots are immutable, so every session of a page receives the same frame objects;
    what the views derive from a frame (its pandas form, column lists, a patch) is computed
    on the first session's update and reused by the others. Entries live exactly as long
    as their frame: a finaliser drops them when it is freed (before its id can be reused).
    A bounded LRU cache held the frames themselves: per-session frames (the alerts page's)
    and pandas' copy-on-write bookkeeping on the cached tables then grew the server's
    memory with every session opened until the bound was reached.
    ``compute`` must not return an object holding ``frame``, or it would never be freed.
    """
    fid = id(frame)
    with _DERIVED_LOCK:
        entry = _DERIVED.get(fid)
        if entry is not None and key in entry:
            return entry[key]
    value = compute()
    with _DERIVED_LOCK:
        entry = _DERIVED.get(fid)
        if entry is None:
            entry = _DERIVED[fid] = {}
            weakref.finalize(frame, _DERIVED.pop, fid, None)
        return entry.setdefault(key, value)


def _to_pandas(frame: pl.DataFrame) -> Any:
    """``frame.to_pandas()``, converted once per frame for all the sessions showing it."""
    return _per_frame(frame, "pandas", frame.to_pandas)


def _fmt(fmt: str) -> NumberFormatter:
    return NumberFormatter(format=fmt, text_align="right")


class Table:
    """A read-only table that patches only the cells that changed.

    Parameters
    ----------
    columns
        Columns shown, in order (default: all of the frame's).
    formats
        Column -> numeral.js format (``"0,0"``, ``"0.00%"``...).
    titles
        Column -> header text.
    height
        Pixel height.
    """

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        formats: dict[str, str] | None = None,
        titles: dict[str, str] | None = None,
        height: int = 300,
        **kwargs: Any,
    ) -> None:
        self.columns = list(columns) if columns else None
        self._shown: pl.DataFrame | None = None
        self._shown_selected: pl.DataFrame | None = None
        self.widget = pn.widgets.Tabulator(
            value=None,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            height=height,
            layout="fit_data_stretch",
            formatters={c: _fmt(f) for c, f in (formats or {}).items()},
            titles=titles or {},
            **kwargs,
        )

    def __panel__(self) -> Any:
        return self.widget

    def update(self, frame: pl.DataFrame | None) -> None:
        """Show ``frame``: patch changed cells when the shape is unchanged, else replace."""
        if not isinstance(frame, pl.DataFrame) or not frame.columns or frame is self._shown:
            return  # the same frame object as last time: its group was not recomputed
        self._shown = frame
        if self.columns:
            frame = _select(frame, tuple(c for c in self.columns if c in frame.columns))
        new = _to_pandas(frame)
        old = self._shown_selected
        self._shown_selected = frame
        value = self.widget.value
        if old is None or value is None or len(value) != old.height:
            self.widget.value = new
            return
        patch = _patch_between(old, frame, new)
        if patch is None:
            self.widget.value = new
        elif patch:
            self.widget.patch(patch, as_index=False)


def _patch_between(old: pl.DataFrame, new: pl.DataFrame, new_pandas: Any) -> Any:
    """Changed cells from ``old`` to ``new`` as a Tabulator patch; ``None`` if reshaped.

    Computed once per (old, new) pair and shared: every session of a page moves from the
    same snapshot frame to the same next one.
    """
    return _changed_cells(old, new, "tabulator", lambda col, i: _py(new_pandas[col].iloc[i]))


def _changed_cells(
    old: pl.DataFrame, new: pl.DataFrame, kind: str, value: Callable[[str, int], Any]
) -> Any:
    """``{column: [(row, value(column, row)), ...]}`` of the cells that differ, cached.

    ``None`` when the frames differ in shape (the caller replaces the data). NaN equals NaN.
    Compares the frames' column lists (converted once per frame, :func:`_column_lists`):
    for the small tables of the pages this is a few microseconds, where one polars
    expression per column costs about a millisecond. The result is cached per
    (old, new, kind) for all sessions.
    """

    def compute() -> tuple[weakref.ref, Any]:
        if old.schema != new.schema or old.height != new.height or not new.height:
            return weakref.ref(old), None
        as_text = kind == "cds"  # a DataTable shows temporal values as text
        before = _column_lists(old, as_text=as_text)
        after = _column_lists(new, as_text=as_text)
        patch = {}
        for col in new.columns:
            idx = _differing(before[col], after[col])
            if idx:
                patch[col] = [(i, value(col, i)) for i in idx]
        return weakref.ref(old), patch

    # Kept with ``new`` under old's id; the weak reference tells a reused id apart.
    source, patch = _per_frame(new, ("patch", kind, id(old)), compute)
    return patch if source() is old else compute()[1]


def _differing(before: list, after: list) -> list[int]:
    """Positions where two equally long lists differ (NaN equals NaN; None differs from NaN)."""
    # x != x only for NaN: a pair of NaNs is unchanged.
    return [
        i
        for i, (a, b) in enumerate(zip(before, after, strict=True))
        if a != b and (a == a or b == b)
    ]


class LiveTable:
    """A read-only Bokeh ``DataTable`` for tables that change every tick.

    Cheaper per session than :class:`Table` (Panel's Tabulator re-processes its whole
    DataFrame on each patch): the changed cells are found once per snapshot for every
    session, and only the columns holding them are sent.

    Parameters
    ----------
    columns
        Columns shown, in order.
    formats, titles, height
        As :class:`Table`.
    """

    def __init__(
        self,
        columns: Sequence[str],
        *,
        formats: dict[str, str] | None = None,
        titles: dict[str, str] | None = None,
        height: int = 300,
    ) -> None:
        from bokeh.models import DataTable, StringFormatter, TableColumn

        self.columns = list(columns)
        formats = formats or {}
        titles = titles or {}
        self.source = ColumnDataSource({c: [] for c in self.columns})
        table_columns = [
            TableColumn(
                field=c,
                title=titles.get(c, c),
                formatter=_fmt(formats[c]) if c in formats else StringFormatter(),
            )
            for c in self.columns
        ]
        self.table = DataTable(
            source=self.source,
            columns=table_columns,
            index_position=None,
            height=height,
            sizing_mode="stretch_width",
            autosize_mode="force_fit",
            reorderable=False,
        )
        self.pane = pn.pane.Bokeh(self.table, sizing_mode="stretch_width")
        self._shown: pl.DataFrame | None = None
        self._shown_selected: pl.DataFrame | None = None
        self._redraws = 0

    def __panel__(self) -> Any:
        return self.pane

    def update(self, frame: pl.DataFrame | None) -> None:
        """Show ``frame`` (missing columns stay empty)."""
        if not isinstance(frame, pl.DataFrame) or not frame.columns or frame is self._shown:
            return
        self._shown = frame
        selected = _select_filled(frame, tuple(self.columns))
        old = self._shown_selected
        self._shown_selected = selected
        columns = _columns(selected)
        patch = None if old is None else _cds_patch_between(old, selected, columns)
        if patch is None or len(self.source.data[self.columns[0]]) != old.height:
            self.source.data = {k: list(v) for k, v in columns.items()}
        elif patch:
            # Only the changed columns go over the wire.
            self.source.data.update({col: list(columns[col]) for col in patch})
        else:
            return
        # Bokeh 3.9's DataTable keeps drawing its cached cells when only the source data
        # changes (the browser has the new values); a change of the table model itself
        # makes it redraw.
        self._redraws += 1
        self.table.tags = [self._redraws]


def _select_filled(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """:func:`_select` with absent columns added as nulls (same object for every session)."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return _select(frame, columns)
    return _per_frame(
        frame,
        ("filled", columns),
        lambda: frame.with_columns(pl.lit(None, pl.String).alias(c) for c in missing).select(
            columns
        ),
    )


def _column_lists(frame: pl.DataFrame, *, as_text: bool) -> dict[str, list]:
    """The frame's columns as Python lists, once per frame for all sessions.

    Temporal values become text (``YYYY-MM-DD HH:MM:SS``) when ``as_text``.
    """

    def compute() -> dict[str, list]:
        out = {}
        for name in frame.columns:
            col = frame[name]
            if as_text and col.dtype.is_temporal():
                col = col.dt.to_string("%Y-%m-%d %H:%M:%S")
            out[name] = col.to_list()
        return out

    return _per_frame(frame, ("lists", as_text), compute)


def _columns(frame: pl.DataFrame) -> dict[str, list]:
    """Column lists for a ``ColumnDataSource`` (temporal values as text), once per frame."""
    return _column_lists(frame, as_text=True)


def _cds_patch_between(old: pl.DataFrame, new: pl.DataFrame, columns: dict[str, list]) -> Any:
    """Changed cells old -> new as a ``ColumnDataSource.patch`` dict (``None``: reshaped)."""
    return _changed_cells(old, new, "cds", lambda col, i: columns[col][i])


def _select(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """``frame.select(columns)``, the same object for every session (see :func:`_to_pandas`)."""
    if tuple(frame.columns) == columns:
        return frame
    return _per_frame(frame, ("select", columns), lambda: frame.select(columns))


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _div(text: str, **kwargs: Any) -> Any:
    """A Bokeh ``Div`` with the page CSS, wrapped in a Panel pane.

    Setting ``div.text`` sends one property change. A Panel ``HTML`` pane costs several
    milliseconds per change on the event loop (it re-derives all its model properties and
    styles), which was most of a session's update when numbers and the badge change
    every tick.
    """
    div = Div(text=text, stylesheets=[InlineStyleSheet(css=_CSS)], **kwargs)
    return div, pn.pane.Bokeh(div, **kwargs)


class Number:
    """A big number that is sent only when its formatted text changes."""

    def __init__(self, name: str, fmt: str = "{:,.0f}", *, suffix: str = "") -> None:
        self.fmt = fmt
        self.suffix = suffix
        self.name = name
        self.div, self.pane = _div(self._html("–"), sizing_mode="stretch_width", min_width=160)

    def _html(self, text: str, color: str = "#222") -> str:
        return (
            f'<div class="obsbench-number"><div style="font-size:13px;color:#666">'
            f"{html.escape(self.name)}</div>"
            f'<div style="font-size:30px;font-weight:700;color:{color}">{html.escape(text)}'
            f"{html.escape(self.suffix)}</div></div>"
        )

    def __panel__(self) -> Any:
        return self.pane

    @property
    def text(self) -> str:
        """The HTML shown."""
        return self.div.text

    def update(self, value: float | None, *, signed: bool = False) -> None:
        """Show ``value`` (``None`` or NaN as a dash); green/red when ``signed``."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text, color = "–", "#222"
        else:
            text = self.fmt.format(value)
            color = ("#1e7d32" if value >= 0 else "#b71c1c") if signed else "#222"
        new = self._html(text, color)
        if self.div.text != new:
            self.div.text = new


def _epoch_ms(col: pl.Series) -> np.ndarray:
    if col.dtype == pl.Date:
        col = col.cast(pl.Datetime("ms"))
    if isinstance(col.dtype, pl.Datetime):
        return col.dt.epoch("ms").cast(pl.Float64).to_numpy(writable=True)
    return col.cast(pl.Float64).to_numpy(writable=True)


def _sync(source: ColumnDataSource, data: dict[str, np.ndarray]) -> None:
    """Patch changed points and stream new ones; replace only when the start moved."""
    old = source.data
    n_old = len(old.get("x", ()))
    n_new = len(data["x"])
    same_keys = set(old) == set(data)
    if not same_keys or n_old == 0 or n_new < n_old or old["x"][0] != data["x"][0]:
        source.data = {k: np.array(v, copy=True) for k, v in data.items()}  # patches mutate
        return
    patches = {}
    for key, values in data.items():
        prev = np.asarray(old[key])
        cur = values[:n_old]
        diff = np.flatnonzero(~((prev == cur) | (np.isnan(prev) & np.isnan(cur))))
        if len(diff):
            patches[key] = [(int(i), float(cur[i])) for i in diff]
    if patches:
        source.patch(patches)
    if n_new > n_old:
        source.stream({k: v[n_old:] for k, v in data.items()})


class LineChart:
    """Lines of ``y`` over time, one per value of ``by`` (datetime x axis)."""

    def __init__(
        self,
        title: str,
        *,
        x: str = "ts",
        y: str = "value",
        by: str | None = None,
        height: int = 260,
        y_label: str = "",
        scatter: str | None = None,
    ) -> None:
        self.x, self.y, self.by, self.scatter = x, y, by, scatter
        self.fig = figure(
            title=title,
            x_axis_type="datetime",
            height=height,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            toolbar_location="right",
        )
        self.fig.yaxis.axis_label = y_label
        self.fig.add_tools(HoverTool(tooltips=[("series", "$name"), ("value", "@y{0,0.[00]}")]))
        self.sources: dict[str, ColumnDataSource] = {}
        self.marks: dict[str, ColumnDataSource] = {}
        self._shown: pl.DataFrame | None = None
        self.pane = pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")

    def __panel__(self) -> Any:
        return self.pane

    def _source(self, name: str) -> ColumnDataSource:
        if name not in self.sources:
            color = Category10_10[len(self.sources) % 10]
            src = ColumnDataSource({"x": np.array([]), "y": np.array([])})
            self.fig.line(
                "x", "y", source=src, legend_label=name, name=name, color=color, line_width=2
            )
            self.sources[name] = src
            if self.scatter:
                mark = ColumnDataSource({"x": np.array([]), "y": np.array([])})
                self.fig.scatter(
                    "x", "y", source=mark, color="red", size=9, marker="triangle", name=name
                )
                self.marks[name] = mark
            self.fig.legend.location = "top_left"
            self.fig.legend.click_policy = "hide"
            self.fig.legend.label_text_font_size = "9pt"
        return self.sources[name]

    def update(self, frame: pl.DataFrame | None) -> None:
        """Plot ``frame`` (columns ``x``, ``y`` and ``by``)."""
        if not isinstance(frame, pl.DataFrame) or frame.is_empty() or self.y not in frame.columns:
            return
        if frame is self._shown:
            return
        self._shown = frame
        for name, (data, marks) in _chart_series(frame, self.x, self.y, self.by, self.scatter):
            _sync(self._source(name), data)
            if marks is not None:
                current = self.marks[name].data
                if len(current["x"]) != len(marks["x"]) or not np.array_equal(
                    np.asarray(current["x"]), marks["x"]
                ):
                    self.marks[name].data = {k: v.copy() for k, v in marks.items()}


def _chart_series(
    frame: pl.DataFrame, x: str, y: str, by: str | None, scatter: str | None
) -> list[tuple[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]]]:
    """Per-series x/y arrays (and flagged points) of a frame, computed once for all sessions."""
    return _per_frame(
        frame, ("series", x, y, by, scatter), lambda: _series(frame, x, y, by, scatter)
    )


def _series(
    frame: pl.DataFrame, x: str, y: str, by: str | None, scatter: str | None
) -> list[tuple[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]]]:
    ordered = frame.sort(x)
    parts = ordered.partition_by(by, as_dict=True) if by else {("",): ordered}
    out = []
    for group, part in parts.items():
        name = str(group[0]) or y
        data = {
            "x": _epoch_ms(part[x]),
            "y": part[y].cast(pl.Float64).fill_null(float("nan")).to_numpy(writable=True),
        }
        marks = None
        if scatter and scatter in part.columns:
            flagged = part.filter(pl.col(scatter).fill_null(False))
            marks = {
                "x": _epoch_ms(flagged[x]),
                "y": flagged[y].cast(pl.Float64).to_numpy(writable=True),
            }
        out.append((name, (data, marks)))
    return out


class Heatmap:
    """A categorical heat map (``x`` by ``y`` coloured by ``value``)."""

    def __init__(
        self,
        title: str,
        *,
        x: str,
        y: str,
        value: str,
        height: int = 360,
        diverging: bool = True,
        fmt: str = "{0,0.00}",
    ) -> None:
        self.x, self.y, self.value, self.diverging = x, y, value, diverging
        self.mapper = LinearColorMapper(palette=list(RdYlGn11), low=-1, high=1)
        self.source = ColumnDataSource({"x": [], "y": [], "v": []})
        self._shown: pl.DataFrame | None = None
        self.fig = figure(
            title=title,
            x_range=[],
            y_range=[],
            height=height,
            sizing_mode="stretch_width",
            tools="hover,save",
            tooltips=[(x, "@x"), (y, "@y"), (value, f"@v{fmt}")],
            toolbar_location="right",
        )
        self.fig.rect(
            "x",
            "y",
            1,
            1,
            source=self.source,
            fill_color={"field": "v", "transform": self.mapper},
            line_color="white",
        )
        self.fig.xaxis.major_label_orientation = 0.9
        self.fig.grid.visible = False
        self.pane = pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")

    def __panel__(self) -> Any:
        return self.pane

    def update(self, frame: pl.DataFrame | None) -> None:
        """Show a long frame with the ``x``, ``y`` and ``value`` columns."""
        if not isinstance(frame, pl.DataFrame) or frame.is_empty() or frame is self._shown:
            return
        self._shown = frame
        xs, ys, vs, (low, high) = _heat_cells(frame, self.x, self.y, self.value, self.diverging)
        if (self.mapper.low, self.mapper.high) != (low, high):
            self.mapper.update(low=low, high=high)
        old = self.source.data
        if list(old["x"]) == xs and list(old["y"]) == ys:
            prev = np.asarray(old["v"], dtype=float)
            diff = np.flatnonzero(~((prev == vs) | (np.isnan(prev) & np.isnan(vs))))
            if len(diff):
                self.source.patch({"v": [(int(i), float(vs[i])) for i in diff]})
            return
        self.fig.x_range.factors = sorted(set(xs))
        self.fig.y_range.factors = sorted(set(ys), reverse=True)
        self.source.data = {"x": list(xs), "y": list(ys), "v": vs.copy()}


def _heat_cells(
    frame: pl.DataFrame, x: str, y: str, value: str, diverging: bool
) -> tuple[list[str], list[str], np.ndarray, tuple[float, float]]:
    """Cells (x, y, value) sorted by y then x, and the colour range; once per frame."""
    return _per_frame(
        frame, ("heat", x, y, value, diverging), lambda: _cells(frame, x, y, value, diverging)
    )


def _cells(
    frame: pl.DataFrame, x: str, y: str, value: str, diverging: bool
) -> tuple[list[str], list[str], np.ndarray, tuple[float, float]]:
    ordered = frame.sort(y, x)
    xs = [str(v) for v in ordered[x].to_list()]
    ys = [str(v) for v in ordered[y].to_list()]
    vs = ordered[value].cast(pl.Float64).fill_null(float("nan")).to_numpy(writable=True)
    finite = vs[np.isfinite(vs)]
    span = float(np.abs(finite).max()) if len(finite) else 1.0
    return xs, ys, vs, (-span, span) if diverging else (0.0, span)


_TOAST_JS = """
// One Notyf toaster per page (Panel loads the Notyf library for its notification area);
// the toasts look and behave like Panel's (same classes: .notyf__message).
if (typeof Notyf === "undefined") { return; }
if (!window.__obsbench_toaster) {
  window.__obsbench_toaster = new Notyf({
    dismissible: true,
    position: {x: "right", y: "top"},
    types: [
      {type: "warning", background: "#ffc107", icon: false},
      {type: "info", background: "#007bff", icon: false},
    ],
  });
}
const batch = JSON.parse(cb_obj.text || "{}");
for (const t of batch.toasts || []) {
  window.__obsbench_toaster.open({type: t.type, message: t.message, duration: t.duration});
}
"""


class Toaster:
    """Toasts pushed to one session as a single string property change.

    ``pn.state.notifications`` adds a new Bokeh model to the session's document for every
    toast (and changes the list again when the browser dismisses it); each such change makes
    Bokeh walk every model of the document to recompute its references, about 50-250 ms for
    a page of tables and charts, per session and per alert. Here a hidden ``Div`` carries
    the batch of toasts as JSON text, and a ``CustomJS`` callback on it opens them with the
    Notyf library Panel already loads: setting a string sends one small message and
    triggers no recomputation.
    """

    def __init__(self) -> None:
        self.div = Div(text="", visible=False, width=0, height=0)
        self.div.js_on_change("text", CustomJS(code=_TOAST_JS))
        self.pane = pn.pane.Bokeh(self.div, width=0, height=0, margin=0)
        self._seq = itertools.count(1)

    def show(self, toasts: list[tuple[str, str, int]]) -> None:
        """Open ``(type, text, duration_ms)`` toasts (type: error, warning, success, info)."""
        if not toasts:
            return
        self.div.text = json.dumps(
            {
                "seq": next(self._seq),  # two equal batches still change the text
                "toasts": [
                    {"type": kind, "message": html.escape(text), "duration": duration}
                    for kind, text, duration in toasts
                ],
            }
        )


def _unsubscribe(model: Any, sid: int, bus: Any, bus_sid: int, _ctx: Any) -> None:
    model.unsubscribe(sid)
    bus.unsubscribe(bus_sid)


class LivePage(pn.viewable.Viewer):
    """Base of every page: template, navigation, stale badge, live updates, alert toasts.

    A page subclass sets :attr:`spec`, builds its views in :meth:`build` (returning the
    main-area layout) and copies snapshot values into them in :meth:`update`. The base
    subscribes the session to the live model (only the page's view groups) and to the
    alert bus, and unsubscribes both when the session is destroyed.
    """

    spec: ClassVar[PageSpec]

    user = param.String(default="anonymous", doc="The logged-in user.")
    version = param.Integer(default=0, doc="Version of the last snapshot shown.")
    stale_since = param.String(default="", doc="HH:MM:SS the data is stale since, or ''.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.rt = runtime()
        self.user = pn.state.user or ("anonymous" if self.rt.users else "local")
        self.roles = self.rt.roles_of(pn.state.user)
        self._badge_div, self.badge = _div(
            '<span class="obsbench-badge obsbench-live">● connecting</span>', margin=(12, 10)
        )
        self.toaster = Toaster()
        self.main = self.build()
        self._apply(self.rt.model.snapshot)
        # Push only once the browser has built the page: Tabulator fails on updates that
        # arrive while it is still rendering ("reading 'verticalFillMode'").
        pn.state.onload(self._subscribe)

    def _subscribe(self) -> None:
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            return
        from obsbench.alerts.bus import bus

        sid = self.rt.model.subscribe(doc, self._on_snapshot, self.spec.groups)
        bus_sid = bus.subscribe(self._on_alert_message, doc=doc)
        pn.state.on_session_destroyed(partial(_unsubscribe, self.rt.model, sid, bus, bus_sid))

    # -- to implement ---------------------------------------------------------------------
    def build(self) -> Any:
        """The main-area layout (views are kept as attributes for :meth:`update`)."""
        raise NotImplementedError

    def update(self, snap: Snapshot) -> None:
        """Copy the snapshot's values into the views."""
        raise NotImplementedError

    def on_alert(self, rows: list[dict[str, Any]]) -> None:
        """Called on the session's loop with the rows of a new alert message."""

    # -- machinery ------------------------------------------------------------------------
    def _on_snapshot(self, snap: Snapshot) -> None:
        with pn.io.hold():
            self._apply(snap)

    def _apply(self, snap: Snapshot) -> None:
        try:
            self.update(snap)
        except Exception:  # a view that cannot render must not take the page down
            log.exception("page %s update failed", self.spec.slug)
        self._badge(snap)
        self.version = snap.version

    def _badge(self, snap: Snapshot) -> None:
        since = snap.stale_since(self.spec.groups) if snap.version else None
        title = f"updated {snap.wall:%H:%M:%S}"
        if since is not None:
            text = f"⚠ stale since {since.astimezone(UTC):%H:%M:%S}"
            css = "obsbench-stale"
            # The hover text names what is stale and why.
            for state, _ in snap.stale(self.spec.groups):
                why = state.error or ("not recomputed" if state.period else "no new data")
                title += f"; {state.name}: {why}"
        elif snap.version:
            asof = snap.data_now.strftime("%Y-%m-%d %H:%M:%S") if snap.data_now else "-"
            text = f"● live · data as of {asof} UTC"
            css = "obsbench-live"
        else:
            text, css = "● connecting", "obsbench-live"
        self.stale_since = f"{since.astimezone(UTC):%H:%M:%S}" if since else ""
        new = f'<span class="obsbench-badge {css}" title="{html.escape(title)}">{text}</span>'
        if self._badge_div.text != new:
            self._badge_div.text = new

    def _on_alert_message(self, message: dict[str, Any]) -> None:
        received = message.get("_received_ms")
        if received is not None:
            alerts_feed.DISPATCH_MS.append(time.time() * 1000 - received)
        rows = alerts_feed.message_rows(message)
        toasts = []
        for row in rows:
            if row["status"] == "acknowledged":
                continue
            text = f"{row['severity'].upper()} {row['rule']} {row['status']}: {row['summary']}"
            kind = (
                "success"
                if row["status"] == "resolved"
                else "error"
                if row["severity"] in ("critical", "emergency")
                else "warning"
            )
            toasts.append((kind, text, 6000))
        self.toaster.show(toasts)
        self.on_alert(rows)

    def _nav(self) -> Any:
        links = []
        for page in pages_for(self.roles, self.rt.pages):
            cls = "current" if page.spec.slug == self.spec.slug else ""
            links.append(f'<a class="{cls}" href="./{page.spec.slug}">{page.spec.title}</a>')
        return pn.pane.HTML(
            '<nav class="obsbench-nav">' + "".join(links) + "</nav>", sizing_mode="stretch_width"
        )

    def __panel__(self) -> Any:
        header = [
            pn.layout.HSpacer(),
            self.toaster.pane,
            self.badge,
            pn.pane.HTML(
                f'<span style="color:white;margin:14px 8px">{html.escape(self.user)}'
                + (' · <a style="color:white" href="./logout">log out</a>' if self.rt.users else "")
                + "</span>"
            ),
        ]
        return pn.template.BootstrapTemplate(
            title=f"obsbench · {self.spec.title}",
            sidebar=[self._nav()],
            main=self.main if isinstance(self.main, list) else [self.main],
            header=header,
            sidebar_width=180,
            header_background="#1f4e79",
            logo="",
        )


def now_text() -> str:
    """The wall clock as HH:MM:SS UTC."""
    return datetime.now(UTC).strftime("%H:%M:%S")
