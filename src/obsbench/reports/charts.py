"""Charts for report notebooks: static matplotlib for print, interactive when asked and available.

In a report run (``interactive=False``) each helper draws with matplotlib and returns a
:class:`Chart` holding an inline SVG (text kept as text, deterministic ids) sized for the
text width of an A4 or Letter page; it displays itself through ``_repr_html_``. With
``interactive=True`` and `hvplot <https://hvplot.holoviz.org>`_ installed, the same call
returns an hvplot object for JupyterLab; without hvplot it falls back to the static chart,
so HoloViews is never a hard dependency.

Charts only lay out numbers computed elsewhere (``obsbench.metrics``); they compute nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from obsbench.reports.format import formatter

if TYPE_CHECKING:
    import polars as pl

TEXT_WIDTH_IN = 6.9
"""Usable width of an A4 page with 16 mm margins (also fits Letter), in inches."""
PALETTE = ("#1f4e79", "#c0504d", "#9bbb59", "#8064a2", "#f79646", "#4bacc6", "#7f7f7f", "#2c7c5b")


@dataclass(frozen=True)
class Chart:
    """A static chart (SVG, or PNG as a data URI) with a caption, for notebooks and PDFs."""

    svg: str
    title: str = ""
    kind: str = "svg"
    width_in: float | None = None

    def _repr_html_(self) -> str:
        import html

        caption = f"<figcaption>{html.escape(self.title)}</figcaption>" if self.title else ""
        style = f' style="width: {self.width_in:.2f}in"' if self.width_in else ""
        body = self.svg if self.kind == "svg" else f'<img src="{self.svg}" alt="chart"{style}/>'
        return f'<figure class="chart">{caption}{body}</figure>'


def _hvplot() -> Any | None:
    try:
        import hvplot.polars  # noqa: F401  (registers the .hvplot accessor)
    except ImportError:
        return None
    return True


def _figure(height_in: float) -> tuple[Any, Any]:
    import matplotlib as mpl

    mpl.use("Agg", force=False)
    import matplotlib.pyplot as plt

    mpl.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "obsbench",
            "font.family": "DejaVu Sans",
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 7,
            "legend.frameon": False,
        }
    )
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, height_in), layout="constrained")
    return fig, ax


def _finish(fig: Any, title: str, *, png: bool = False) -> Chart:
    import base64

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if png:
        fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        width = float(fig.get_size_inches()[0])
        return Chart(f"data:image/png;base64,{data}", title, kind="png", width_in=width)
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue().decode()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE for inline HTML
    return Chart(svg, title)


def _axis_formatter(ax: Any, fmt: str | None, axis: str = "y") -> None:
    if not fmt:
        return
    from matplotlib.ticker import FuncFormatter

    f = formatter(fmt)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f(v)))


def line_chart(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    by: str | None = None,
    title: str = "",
    yfmt: str | None = None,
    ylabel: str = "",
    hline: float | None = None,
    interactive: bool = False,
    height_in: float = 2.6,
    max_series: int = 8,
) -> Any:
    """A line per ``by`` group of ``y`` over ``x`` (time series).

    Parameters
    ----------
    frame
        Long-format data, sorted or not (sorted by ``x`` here).
    x, y, by
        Column names; ``by`` splits the lines (at most ``max_series``, the rest are dropped
        with a note in the legend title).
    yfmt
        A format name from :data:`obsbench.reports.format.FORMATS` for the y tick labels.
    hline
        A horizontal reference line (a target or threshold).
    interactive
        Return an hvplot object when hvplot is installed.
    """
    if interactive and _hvplot():
        return frame.sort(x).hvplot.line(x=x, y=y, by=by, title=title, responsive=True, height=300)
    import matplotlib.dates as mdates

    fig, ax = _figure(height_in)
    data = frame.sort(x)
    groups = [None] if by is None else data.get_column(by).unique(maintain_order=True).to_list()
    groups = sorted(groups, key=str) if by is not None else groups
    dropped = max(len(groups) - max_series, 0)
    for i, group in enumerate(groups[:max_series]):
        part = data if group is None else data.filter(data.get_column(by) == group)
        ax.plot(
            part.get_column(x).to_list(),
            part.get_column(y).to_list(),
            label=str(group) if group is not None else y,
            color=PALETTE[i % len(PALETTE)],
            linewidth=1.2,
        )
    if hline is not None:
        ax.axhline(hline, color="#a00", linewidth=0.8, linestyle="--")
    if data.schema[x].is_temporal():
        locator = mdates.AutoDateLocator(minticks=3, maxticks=9)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    _axis_formatter(ax, yfmt)
    ax.set_ylabel(ylabel)
    if by is not None:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            title=f"{by} (+{dropped} not shown)" if dropped else by,
        )
    return _finish(fig, title)


def bar_chart(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    title: str = "",
    yfmt: str | None = None,
    ylabel: str = "",
    hline: float | None = None,
    interactive: bool = False,
    height_in: float = 2.4,
    horizontal: bool = False,
) -> Any:
    """One bar per row: category ``x``, value ``y`` (in the frame's order)."""
    if interactive and _hvplot():
        return frame.hvplot.bar(x=x, y=y, title=title, responsive=True, height=300)
    fig, ax = _figure(height_in)
    labels = [str(v) for v in frame.get_column(x).to_list()]
    values = frame.get_column(y).to_list()
    colors = [PALETTE[0] if (v or 0) >= 0 else PALETTE[1] for v in values]
    if horizontal:
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        _axis_formatter(ax, yfmt, axis="x")
        ax.set_xlabel(ylabel)
        if hline is not None:
            ax.axvline(hline, color="#a00", linewidth=0.8, linestyle="--")
    else:
        ax.bar(labels, values, color=colors)
        _axis_formatter(ax, yfmt)
        ax.set_ylabel(ylabel)
        if hline is not None:
            ax.axhline(hline, color="#a00", linewidth=0.8, linestyle="--")
        if len(labels) > 6:
            ax.tick_params(axis="x", labelrotation=30)
    return _finish(fig, title)


def heatmap(
    frame: pl.DataFrame,
    *,
    index: str,
    title: str = "",
    fmt: str = "num",
    vmin: float = -1.0,
    vmax: float = 1.0,
    interactive: bool = False,
    annotate_max: int = 12,
) -> Any:
    """A matrix heatmap (e.g. a correlation matrix): row labels in ``index``, one column each.

    Cells are annotated with their formatted value when the matrix is at most
    ``annotate_max`` wide. Drawn as PNG (dense images print faster as bitmaps).
    """
    columns: Sequence[str] = [c for c in frame.columns if c != index]
    if interactive and _hvplot():
        long = frame.unpivot(index=index, on=columns, variable_name="column", value_name="value")
        return long.hvplot.heatmap(x="column", y=index, C="value", title=title, height=400)
    import numpy as np

    n = len(columns)
    side = min(TEXT_WIDTH_IN * 0.75, 1.6 + 0.32 * n)
    fig, ax = _figure(side)
    fig.set_size_inches(side + 1.0, side)
    matrix = frame.select(columns).to_numpy().astype(float)
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=vmin, vmax=vmax)
    ax.grid(visible=False)
    ax.set_xticks(range(n), labels=columns, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=[str(v) for v in frame.get_column(index).to_list()])
    if n <= annotate_max:
        f = formatter(fmt)
        for i, j in np.ndindex(matrix.shape):
            ax.text(j, i, f(matrix[i, j]), ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _finish(fig, title, png=True)
