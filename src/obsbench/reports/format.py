"""Number formatting and report tables, shared by every report notebook.

The scalar formatters (:func:`fmt_int`, :func:`fmt_num`, :func:`fmt_pct`, :func:`fmt_bps`,
:func:`fmt_money`, :func:`fmt_ms`) are the one place where a figure becomes text, so the
same number reads the same in every table, headline and PDF. ``None`` and ``NaN`` print
as an en dash. :class:`Table` turns a polars frame into a print-ready HTML table
(``<thead>`` repeated on every PDF page, numbers right-aligned with tabular figures) and
displays itself in JupyterLab through ``_repr_html_``. :class:`Headline` shows a row of
key figures.

Examples
--------
>>> fmt_int(1234567)
'1,234,567'
>>> fmt_pct(0.123456, decimals=2)
'12.35%'
>>> fmt_bps(0.00123)
'12.3 bps'
>>> fmt_money(-1234.5)
'-$1,234.50'
>>> fmt_num(float("nan"))
'–'
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from obsbench.errors import UnknownName

if TYPE_CHECKING:
    import polars as pl

MISSING = "–"
"""How a missing value (``None``, ``NaN``) prints."""

CURRENCY_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF "}


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_int(value: float | None) -> str:
    """A whole number with thousands separators: ``1,234,567``."""
    if _missing(value):
        return MISSING
    return f"{round(float(value)):,}"  # type: ignore[arg-type]


def fmt_num(value: float | None, decimals: int = 2) -> str:
    """A number with thousands separators and ``decimals`` decimals: ``12,345.68``."""
    if _missing(value):
        return MISSING
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{float(value):,.{decimals}f}"  # type: ignore[arg-type]


def fmt_pct(value: float | None, decimals: int = 2) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``12.34%``."""
    if _missing(value):
        return MISSING
    return f"{float(value) * 100:,.{decimals}f}%"  # type: ignore[arg-type]


def fmt_bps(value: float | None, decimals: int = 1, *, fraction: bool = True) -> str:
    """Basis points: ``0.00123`` -> ``12.3 bps`` (pass ``fraction=False`` for values in bps)."""
    if _missing(value):
        return MISSING
    bps = float(value) * (1e4 if fraction else 1.0)  # type: ignore[arg-type]
    return f"{bps:,.{decimals}f} bps"


def fmt_money(value: float | None, currency: str = "USD", decimals: int = 2) -> str:
    """A currency amount: ``-1234.5`` -> ``-$1,234.50``; unknown codes print as a suffix."""
    if _missing(value):
        return MISSING
    amount = float(value)  # type: ignore[arg-type]
    sign = "-" if amount < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(currency)
    body = f"{abs(amount):,.{decimals}f}"
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"


def fmt_ms(value: float | None, decimals: int = 1) -> str:
    """A duration in milliseconds: ``1234.5`` -> ``1,234.5 ms``."""
    if _missing(value):
        return MISSING
    return f"{float(value):,.{decimals}f} ms"  # type: ignore[arg-type]


def fmt_text(value: object) -> str:
    """Anything else: dates as ISO (minutes for timestamps), other values via ``str``."""
    if _missing(value):
        return MISSING
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return fmt_num(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return fmt_int(value)
    return str(value)


Formatter = Callable[[Any], str]

FORMATS: dict[str, Formatter] = {
    "int": fmt_int,
    "num": fmt_num,
    "num0": lambda v: fmt_num(v, 0),
    "num1": lambda v: fmt_num(v, 1),
    "num4": lambda v: fmt_num(v, 4),
    "pct": fmt_pct,
    "pct1": lambda v: fmt_pct(v, 1),
    "pct3": lambda v: fmt_pct(v, 3),
    "bps": fmt_bps,
    "bps_raw": lambda v: fmt_bps(v, fraction=False),
    "usd": fmt_money,
    "usd0": lambda v: fmt_money(v, decimals=0),
    "ms": fmt_ms,
    "ms0": lambda v: fmt_ms(v, 0),
    "text": fmt_text,
}
"""Named formats usable in :class:`Table` (``formats={"sharpe": "num", "var": "pct"}``)."""


def formatter(spec: str | Formatter) -> Formatter:
    """The formatter named ``spec`` in :data:`FORMATS`, or ``spec`` itself if callable."""
    if callable(spec):
        return spec
    try:
        return FORMATS[spec]
    except KeyError:
        kind = "number format"
        raise UnknownName.from_choices(kind, spec, FORMATS) from None


_NUMERIC_KINDS = ("Int", "UInt", "Float", "Decimal")


@dataclass(frozen=True)
class Table:
    """A print-ready table of a polars frame; displays itself in notebooks and PDFs.

    Parameters
    ----------
    frame
        The data (a ``pl.DataFrame``; a ``LazyFrame`` is collected).
    formats
        Column -> format name in :data:`FORMATS` or a callable. Numeric columns without
        one use ``"num"`` (floats) or ``"int"`` (integers); other columns ``"text"``.
    labels
        Column -> header text (default: the column name with ``_`` as spaces).
    title
        A caption printed above the table (inside ``<thead>`` so it repeats on each page).
    note
        A small-print line under the table (source, definitions).
    max_rows
        Print at most this many rows and say how many were left out.

    Examples
    --------
    >>> import polars as pl
    >>> t = Table(pl.DataFrame({"venue": ["XNAS"], "fill_rate": [0.9512]}), {"fill_rate": "pct"})
    >>> "95.12%" in t.to_html()
    True
    >>> t.with_title("Fill rates").title
    'Fill rates'
    """

    frame: Any
    formats: Mapping[str, str | Formatter] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None
    note: str | None = None
    max_rows: int | None = None

    def with_title(self, title: str) -> Table:
        """A copy with another title."""
        return replace(self, title=title)

    def with_formats(self, **formats: str | Formatter) -> Table:
        """A copy with these column formats added."""
        return replace(self, formats={**self.formats, **formats})

    def _frame(self) -> pl.DataFrame:
        import polars as pl

        frame = self.frame.collect() if isinstance(self.frame, pl.LazyFrame) else self.frame
        if not isinstance(frame, pl.DataFrame):
            frame = pl.DataFrame(frame)
        return frame

    def _column_formats(self, frame: pl.DataFrame) -> dict[str, tuple[Formatter, bool]]:
        out: dict[str, tuple[Formatter, bool]] = {}
        for name, dtype in frame.schema.items():
            numeric = str(dtype).startswith(_NUMERIC_KINDS)
            spec = self.formats.get(name)
            if spec is None:
                spec = ("num" if dtype.is_float() else "int") if numeric else "text"
            out[name] = (formatter(spec), numeric)
        return out

    def to_html(self) -> str:
        """The table as HTML (``<table class="report">``)."""
        frame = self._frame()
        formats = self._column_formats(frame)
        shown = frame if self.max_rows is None else frame.head(self.max_rows)
        head_cells = "".join(
            f'<th class="{"num" if formats[c][1] else "txt"}">'
            f"{html.escape(self.labels.get(c, c.replace('_', ' ')))}</th>"
            for c in frame.columns
        )
        caption = (
            f'<tr class="caption"><th colspan="{len(frame.columns)}">'
            f"{html.escape(self.title)}</th></tr>"
            if self.title
            else ""
        )
        rows = []
        for row in shown.iter_rows():
            cells = "".join(
                f'<td class="{"num" if numeric else "txt"}">{html.escape(fmt(v))}</td>'
                for (fmt, numeric), v in zip((formats[c] for c in frame.columns), row, strict=True)
            )
            rows.append(f"<tr>{cells}</tr>")
        notes = []
        if self.max_rows is not None and frame.height > self.max_rows:
            notes.append(f"{fmt_int(frame.height - self.max_rows)} more rows not shown.")
        if self.note:
            notes.append(self.note)
        if not rows:
            rows.append(f'<tr><td class="empty" colspan="{len(frame.columns)}">no data</td></tr>')
        foot = "".join(f'<p class="table-note">{html.escape(n)}</p>' for n in notes)
        return (
            f'<div class="report-table"><table class="report"><thead>{caption}<tr>{head_cells}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{foot}</div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


@dataclass(frozen=True)
class Headline:
    """A row of key figures (label over value), e.g. attainment, budget left, incidents.

    Examples
    --------
    >>> Headline([("Sharpe", "1.20"), ("VaR 95%", "2.10%")]).to_html().count("kpi-value")
    2
    """

    items: Sequence[tuple[str, str]]
    status: Mapping[str, str] = field(default_factory=dict)

    def to_html(self) -> str:
        """The figures as HTML (``<div class="kpis">``)."""
        cells = "".join(
            f'<div class="kpi {html.escape(self.status.get(label, ""))}">'
            f'<div class="kpi-label">{html.escape(label)}</div>'
            f'<div class="kpi-value">{html.escape(value)}</div></div>'
            for label, value in self.items
        )
        return f'<div class="kpis">{cells}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()


@dataclass(frozen=True)
class Note:
    """A short paragraph of explanatory text (an HTML block in notebook and PDF)."""

    text: str
    kind: str = "info"

    def _repr_html_(self) -> str:
        return f'<p class="note {html.escape(self.kind)}">{html.escape(self.text)}</p>'
