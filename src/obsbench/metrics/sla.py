"""Service health metrics on the canonical ``requests`` dataset, as polars expressions.

Latency percentiles, error rate, SLA attainment, availability (good minutes), uptime, SLO
burn rate and error budget, and error propagation along traces. Each metric is a function
returning one ``pl.Expr``, usable eager or lazy in ``select``, ``group_by().agg()``,
``group_by_dynamic().agg()`` and ``over()``; given ``pl.Series`` it returns the Python
scalar. The frame-level functions (:func:`latency_percentiles`, :func:`service_buckets`,
:func:`service_summary`) are compositions of those expressions, never second
implementations, so a dashboard tile, the monthly SLA report and an alert rule read the
same number.

Conventions (one decision each, shared by every function here)
---------------------------------------------------------------
- **Quantiles are exact** and interpolate linearly between order statistics, as numpy's
  default ``np.quantile(x, q)`` (``method="linear"``): with the ``n`` sorted latencies
  ``x_(0) <= ... <= x_(n-1)``, ``h = (n - 1) q`` and
  ``Q(q) = x_(floor h) + (h - floor h) (x_(floor h + 1) - x_(floor h))``.
  polars' own default (``"nearest"``) is never used. No sketches (t-digest, HDR): the
  numbers in a report reconcile exactly with a recount.
- **A request is good** when ``ok`` is true (``ok`` is the loader's verdict; the
  simulator sets it to ``status_code < 500``). A request *meets the SLA* when it is good
  **and** ``latency_ms <= threshold_ms`` (the threshold is inclusive).
- **Time buckets** are tumbling, left-closed and labelled by their start:
  ``[t, t + every)``, aligned to the epoch in UTC (``ts.dt.truncate(every)``), which is
  what ``group_by_dynamic(every=every, closed="left", label="left")`` produces.
- **Undefined is NaN, never null.** An empty group gives ``NaN`` for every ratio and
  percentile (``float('nan')`` on the Series path). Missing (null or NaN) latencies are
  skipped by the percentiles; they never meet a latency threshold.
- **Group-awareness comes from the caller** (``group_by("service")``, ``over``); no
  expression takes a ``by=``. Frame-level functions take ``by=`` and every output row
  depends only on the rows of its own group (DESIGN §9), so they run unchanged per group
  on Spark or Dask. :func:`error_propagation` is the one exception by nature: a trace
  spans services, so it is keyed by ``trace_id``.

Examples
--------
>>> import polars as pl
>>> import obsbench.metrics as obm
>>> df = pl.DataFrame(
...     {
...         "service": ["a", "a", "a", "b", "b"],
...         "latency_ms": [10.0, 20.0, 400.0, 5.0, 7.0],
...         "ok": [True, True, True, False, True],
...     }
... )
>>> df.group_by("service", maintain_order=True).agg(
...     obm.latency_percentile("latency_ms", q=0.5).alias("p50"),
...     obm.error_rate("ok"),
...     obm.sla_attainment("ok", "latency_ms", threshold_ms=100.0),
... )
shape: (2, 4)
┌─────────┬──────┬────────────┬────────────────┐
│ service ┆ p50  ┆ error_rate ┆ sla_attainment │
│ ---     ┆ ---  ┆ ---        ┆ ---            │
│ str     ┆ f64  ┆ f64        ┆ f64            │
╞═════════╪══════╪════════════╪════════════════╡
│ a       ┆ 20.0 ┆ 0.0        ┆ 0.666667       │
│ b       ┆ 6.0  ┆ 0.5        ┆ 0.5            │
└─────────┴──────┴────────────┴────────────────┘
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import polars as pl

from obsbench._typing import IntoExpr
from obsbench.errors import ColumnNotFound, SchemaError
from obsbench.metrics._common import InvalidParameter, metric, nan_where, to_expr

__all__ = [
    "DEFAULT_QUANTILES",
    "availability",
    "burn_rate",
    "collect_by_time",
    "error_budget_remaining",
    "error_origins",
    "error_propagation",
    "error_rate",
    "latency_percentile",
    "latency_percentiles",
    "quantile_name",
    "service_buckets",
    "service_summary",
    "sla_attainment",
    "uptime",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
"""The latency percentiles every summary reports (p50, p95, p99)."""

_DATASET = "requests"
Frame = pl.DataFrame | pl.LazyFrame


# --------------------------------------------------------------------------- validation


def ensure_quantile(q: float, *, param_name: str = "q") -> float:
    """Return ``q`` as a float in the closed interval [0, 1]."""
    ok = isinstance(q, int | float) and not isinstance(q, bool) and 0.0 <= q <= 1.0
    if not ok:
        msg = f"invalid {param_name}={q!r}: a quantile must lie in [0, 1]"
        raise InvalidParameter(msg, hint=f"use e.g. {param_name}=0.99 for the 99th percentile.")
    return float(q)


def ensure_fraction(value: float, *, param_name: str) -> float:
    """Return ``value`` as a float in the open interval (0, 1) (an objective, a ratio)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 < value < 1.0
    if not ok:
        msg = f"invalid {param_name}={value!r}: must lie strictly between 0 and 1"
        raise InvalidParameter(msg, hint=f"use e.g. {param_name}=0.999 for 99.9%.")
    return float(value)


def ensure_threshold(value: float, *, param_name: str = "threshold_ms") -> float:
    """Return ``value`` as a float if it is a finite number >= 0 (a latency threshold)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        msg = f"invalid {param_name}={value!r}: must be a finite number >= 0"
        raise InvalidParameter(msg, hint=f"use e.g. {param_name}=250.0 (milliseconds).")
    return float(value)


def ensure_duration(value: str | timedelta, *, param_name: str) -> str:
    """Return a polars duration string (``"1m"``, ``"30d"``) for ``value``, validated."""
    if isinstance(value, timedelta):
        us = value // timedelta(microseconds=1)
        if us <= 0:
            msg = f"invalid {param_name}={value!r}: must be a positive duration"
            raise InvalidParameter(msg, hint=f'use e.g. {param_name}="1m".')
        return f"{us}us"
    if isinstance(value, str):
        try:
            pl.select(pl.lit(0).cast(pl.Datetime("us")).dt.truncate(value))
        except Exception as exc:  # polars raises ComputeError/InvalidOperationError
            msg = f"invalid {param_name}={value!r}: not a polars duration ({exc})"
            raise InvalidParameter(
                msg, hint=f'use e.g. {param_name}="1m", "5m", "1h" or "1d".'
            ) from None
        if duration_seconds(value) <= 0:
            msg = f"invalid {param_name}={value!r}: must be a positive duration"
            raise InvalidParameter(msg, hint=f'use e.g. {param_name}="1m".')
        return value
    msg = f"invalid {param_name}={value!r}: expected a duration string or timedelta"
    raise InvalidParameter(msg, hint=f'use e.g. {param_name}="1m".')


_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}


def duration_seconds(value: str | timedelta) -> float:
    """Length in seconds of a fixed polars duration (``"90s"``, ``"1h30m"``, ``"30d"``).

    Calendar units (``mo``, ``q``, ``y``, ``i``) have no fixed length and are refused.

    Examples
    --------
    >>> duration_seconds("1h30m"), duration_seconds("30d")
    (5400.0, 2592000.0)
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    total, number, i = 0.0, "", 0
    while i < len(value):
        ch = value[i]
        if ch.isdigit():
            number += ch
            i += 1
            continue
        unit = ""
        while i < len(value) and value[i].isalpha():
            unit += value[i]
            i += 1
        if not number or unit not in _UNIT_SECONDS:
            msg = f"duration {value!r} is not a fixed length of time"
            raise InvalidParameter(
                msg, hint="use ns, us, ms, s, m, h, d or w units, e.g. '30d' or '1h30m'."
            )
        total += int(number) * _UNIT_SECONDS[unit]
        number = ""
    if number:  # trailing digits without unit
        msg = f"duration {value!r} lacks a unit"
        raise InvalidParameter(msg, hint="append a unit, e.g. '5m'.")
    return total


def check_columns(
    frame: Frame,
    columns: Iterable[str],
    *,
    dataset: str = _DATASET,
    temporal: Iterable[str] = (),
    numeric: Iterable[str] = (),
) -> pl.Schema:
    """Cheap schema check (names and dtypes, no row scan) at a frame function's edge.

    Raises
    ------
    ColumnNotFound
        Naming the missing columns and the ones the frame has.
    SchemaError
        For a non-frame input, or a column of the wrong kind of dtype.
    """
    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        msg = f"expected a polars DataFrame or LazyFrame, got {type(frame).__name__}"
        raise SchemaError(dataset, [msg], hint="convert with pl.from_pandas(...) first.")
    schema = frame.collect_schema()
    missing = [c for c in dict.fromkeys(columns) if c not in schema]
    if missing:
        msg = f"{dataset} frame lacks column(s) {missing}; it has {list(schema)}"
        raise ColumnNotFound(
            msg,
            hint=f"rename your columns to the canonical names "
            f"(`obsbench.schemas.describe('{dataset}')`) or pass the column names as "
            "arguments.",
        )
    problems = [
        f"column {c!r} has dtype {schema[c]}, expected a Datetime"
        for c in temporal
        if not schema[c].is_temporal()
    ] + [
        f"column {c!r} has dtype {schema[c]}, expected a number"
        for c in numeric
        if not schema[c].is_numeric()
    ]
    if problems:
        raise SchemaError(dataset, problems)
    return schema


def quantile_name(q: float) -> str:
    """Column name of a latency percentile: ``0.5 -> "p50"``, ``0.999 -> "p99_9"``.

    Examples
    --------
    >>> [quantile_name(q) for q in (0.5, 0.95, 0.99, 0.999, 1.0)]
    ['p50', 'p95', 'p99', 'p99_9', 'p100']
    """
    pct = round(ensure_quantile(q) * 100, 6)
    text = f"{pct:.6f}".rstrip("0").rstrip(".")
    return "p" + text.replace(".", "_")


# --------------------------------------------------------------------------- expressions


def _good(ok: IntoExpr) -> pl.Expr:
    return to_expr(ok, param_name="ok").cast(pl.Boolean)


@metric(data=("latency",))
def latency_percentile(latency: IntoExpr = "latency_ms", *, q: float = 0.99) -> pl.Expr:
    """Exact latency percentile, linearly interpolated (numpy's default).

    Parameters
    ----------
    latency
        Latencies in milliseconds: a column name, ``pl.Expr`` or ``pl.Series``.
    q
        The quantile, in ``[0, 1]`` (0.99 for p99).

    Returns
    -------
    pl.Expr
        Named after ``q`` (:func:`quantile_name`: ``p99``); a ``float`` for a Series.

    Notes
    -----
    With the ``n`` present latencies sorted, ``h = (n - 1) q`` and
    ``Q = x_(floor h) + (h - floor h)(x_(ceil h) - x_(floor h))``. ``q=0`` is the minimum,
    ``q=1`` the maximum. Null and NaN latencies are skipped. Empty or all-missing input
    gives NaN; one value gives that value.

    References
    ----------
    ``numpy.quantile(x, q)`` (``method="linear"``), equal to 1e-12 relative in the tests.

    Examples
    --------
    >>> import polars as pl
    >>> round(latency_percentile(pl.Series([1.0, 2.0, 3.0, 4.0, 10.0]), q=0.9), 12)
    7.6
    """
    q = ensure_quantile(q)
    x = to_expr(latency, param_name="latency").cast(pl.Float64).fill_nan(None)
    value = x.quantile(q, interpolation="linear")
    return nan_where(x.count() == 0, value).alias(quantile_name(q))


@metric(data=("ok",))
def error_rate(ok: IntoExpr = "ok") -> pl.Expr:
    """Share of requests that failed: ``errors / requests``.

    Parameters
    ----------
    ok
        Boolean success flag per request (``ok`` of the ``requests`` dataset).

    Returns
    -------
    pl.Expr
        Named ``error_rate``, in ``[0, 1]``.

    Notes
    -----
    ``error_rate = #{not ok} / #{ok not null}``. Requests with a null ``ok`` are not
    counted. Empty input gives NaN; all-ok input gives 0.0.

    Examples
    --------
    >>> import polars as pl
    >>> error_rate(pl.Series([True, False, True, True]))
    0.25
    """
    good = _good(ok)
    n = good.count()
    rate = (n - good.sum()).cast(pl.Float64) / n
    return nan_where(n == 0, rate).alias("error_rate")


@metric(data=("ok", "latency"))
def sla_attainment(
    ok: IntoExpr = "ok", latency: IntoExpr = "latency_ms", *, threshold_ms: float
) -> pl.Expr:
    """Share of requests that succeed **and** answer within ``threshold_ms``.

    Parameters
    ----------
    ok
        Boolean success flag per request.
    latency
        Latency per request, in milliseconds.
    threshold_ms
        The SLA's latency threshold (inclusive): ``latency <= threshold_ms`` meets it.

    Returns
    -------
    pl.Expr
        Named ``sla_attainment``, in ``[0, 1]``.

    Notes
    -----
    ``attainment = #{ok and latency <= threshold} / #requests``. A request with a missing
    latency or a null ``ok`` counts in the denominator and never meets the SLA. Empty
    input gives NaN; with ``threshold_ms=inf`` it is ``1 - error_rate``.

    Examples
    --------
    >>> import polars as pl
    >>> sla_attainment(
    ...     pl.Series([True, True, False, True]),
    ...     pl.Series([100.0, 300.0, 50.0, 250.0]),
    ...     threshold_ms=250.0,
    ... )
    0.5
    """
    threshold = ensure_threshold(threshold_ms) if not math.isinf(threshold_ms) else math.inf
    good = _good(ok)
    lat = to_expr(latency, param_name="latency").cast(pl.Float64)
    met = (good & (lat <= threshold)).fill_null(False)
    n = met.len()
    return nan_where(n == 0, met.sum().cast(pl.Float64) / n).alias("sla_attainment")


def _bad_buckets(ok: pl.Expr, bucket: pl.Expr, min_success: float) -> pl.Expr:
    """Bucket labels (one per row) where the success ratio is below ``min_success``."""
    ratio = ok.cast(pl.Float64).mean().over(bucket)
    return bucket.filter(ratio < min_success)


@metric(data=("ok", "ts"))
def availability(
    ok: IntoExpr = "ok",
    ts: IntoExpr = "ts",
    *,
    every: str | timedelta = "1m",
    min_success: float = 0.99,
) -> pl.Expr:
    """Time-based availability: the share of good minutes among minutes with traffic.

    Parameters
    ----------
    ok
        Boolean success flag per request.
    ts
        Request timestamp.
    every
        Bucket length (``"1m"``: good *minutes*).
    min_success
        A bucket is good when its success ratio ``#ok / #requests >= min_success``.

    Returns
    -------
    pl.Expr
        Named ``availability``, in ``[0, 1]``.

    Notes
    -----
    ``availability = #{good buckets} / #{buckets with at least one request}``, buckets as
    in the module conventions. Minutes without traffic are neither good nor bad (see
    :func:`uptime` for the calendar view). Empty input gives NaN; all-ok input gives 1.0.
    Request-based availability is ``1 - error_rate``.

    References
    ----------
    SRE Workbook ch. 2, "time-based availability" (good minutes / total minutes).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> ts = pl.Series([datetime(2024, 1, 1, 0, m, s) for m in (0, 1) for s in (0, 30)])
    >>> availability(pl.Series([True, True, True, False]), ts)
    0.5
    """
    every = ensure_duration(every, param_name="every")
    min_success = ensure_fraction(min_success, param_name="min_success")
    good = _good(ok)
    bucket = to_expr(ts, param_name="ts").dt.truncate(every)
    total = bucket.n_unique()
    bad = _bad_buckets(good, bucket, min_success).n_unique()
    value = (total - bad).cast(pl.Float64) / total
    return nan_where(good.len() == 0, value).alias("availability")


@metric(data=("ok", "ts"))
def uptime(
    ok: IntoExpr = "ok",
    ts: IntoExpr = "ts",
    *,
    every: str | timedelta = "1m",
    min_success: float = 0.99,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.Expr:
    """Calendar uptime: the share of the period's buckets that were not down.

    Parameters
    ----------
    ok
        Boolean success flag per request.
    ts
        Request timestamp.
    every
        Bucket length.
    min_success
        A bucket with traffic is *down* when its success ratio is below this.
    start, end
        The reporting period ``[start, end)``. Default: from the first bucket to the end of
        the last bucket with traffic *of the group*. Pass both for a report, so that every
        service is measured over the same calendar.

    Returns
    -------
    pl.Expr
        Named ``uptime``, in ``[0, 1]``.

    Notes
    -----
    ``uptime = 1 - #{down buckets} * every / (end - start)``. Buckets without traffic
    count as up (there is no evidence of an outage), which is the difference from
    :func:`availability`, whose denominator is the buckets *with* traffic.
    Empty input without ``start``/``end`` gives NaN.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> ts = pl.Series([datetime(2024, 1, 1, 0, 0), datetime(2024, 1, 1, 0, 3)])
    >>> uptime(pl.Series([True, False]), ts)
    0.75
    """
    every = ensure_duration(every, param_name="every")
    min_success = ensure_fraction(min_success, param_name="min_success")
    step = duration_seconds(every)
    good = _good(ok)
    t = to_expr(ts, param_name="ts")
    bucket = t.dt.truncate(every)
    down = _bad_buckets(good, bucket, min_success).n_unique().cast(pl.Float64)
    if start is not None and end is not None:
        period_s: pl.Expr = pl.lit((end - start).total_seconds())
    else:
        first = pl.lit(start) if start is not None else bucket.min()
        last = pl.lit(end) if end is not None else bucket.max().dt.offset_by(every)
        period_s = (last - first).dt.total_microseconds().cast(pl.Float64) / 1e6
    value = 1.0 - down * step / period_s
    empty = (good.len() == 0) & (pl.lit(start is None or end is None))
    return nan_where(empty | (period_s <= 0), value).alias("uptime")


@metric(data=("good",))
def burn_rate(good: IntoExpr = "good", *, objective: float) -> pl.Expr:
    """SLO burn rate: the observed error ratio over the error budget ratio.

    Parameters
    ----------
    good
        Boolean per SLI event: true for a good event (one row per *total* event; rows
        outside the SLI must be filtered out first, see :mod:`obsbench.slo`).
    objective
        The SLO objective, in ``(0, 1)`` (0.999 for 99.9%).

    Returns
    -------
    pl.Expr
        Named ``burn_rate``, >= 0.

    Notes
    -----
    ``burn_rate = (#bad / #total) / (1 - objective)``. A burn rate of 1 consumes exactly
    the whole error budget over the SLO window; 14.4 consumes 2% of a 30-day budget in
    one hour. Over a window without events it is NaN (no data, not "no burn").

    References
    ----------
    Google SRE Workbook, ch. 5 "Alerting on SLOs".

    Examples
    --------
    >>> import polars as pl
    >>> round(burn_rate(pl.Series([True] * 98 + [False] * 2), objective=0.99), 12)
    2.0
    """
    objective = ensure_fraction(objective, param_name="objective")
    g = _good(good)
    n = g.count()
    ratio = (n - g.sum()).cast(pl.Float64) / n
    return nan_where(n == 0, ratio / (1.0 - objective)).alias("burn_rate")


@metric(data=("good",))
def error_budget_remaining(good: IntoExpr = "good", *, objective: float) -> pl.Expr:
    """Fraction of the error budget left: ``1 - #bad / ((1 - objective) #total)``.

    Parameters
    ----------
    good
        Boolean per SLI event over the SLO window (one row per total event).
    objective
        The SLO objective, in ``(0, 1)``.

    Returns
    -------
    pl.Expr
        Named ``error_budget_remaining``; 1.0 when nothing failed, 0.0 when the budget is
        exactly spent, negative when overspent.

    Notes
    -----
    ``budget = (1 - objective) * total``, ``consumed = bad``, remaining fraction
    ``= (budget - consumed) / budget = 1 - burn_rate`` over the SLO window. Empty input
    gives NaN.

    Examples
    --------
    >>> import polars as pl
    >>> round(error_budget_remaining(pl.Series([True] * 999 + [False]), objective=0.998), 9)
    0.5
    """
    return (1.0 - burn_rate(good, objective=objective)).alias("error_budget_remaining")


# --------------------------------------------------------------------------- frames


def _norm_by(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _bucket_keys(ts: str, every: str, by: list[str]) -> list[pl.Expr]:
    return [*(pl.col(c) for c in by), pl.col(ts).dt.truncate(every).alias(ts)]


def latency_percentiles(
    requests: Frame,
    *,
    every: str | timedelta = "1m",
    by: str | Sequence[str] = ("service",),
    qs: Sequence[float] = DEFAULT_QUANTILES,
    ts: str = "ts",
    latency: str = "latency_ms",
) -> Frame:
    """Exact latency percentiles per group and time bucket.

    Parameters
    ----------
    requests
        A ``requests`` frame, eager or lazy.
    every
        Bucket length (``"1m"``, ``"5m"``, ``"1h"``).
    by
        Group columns (``("service", "endpoint")`` for per-endpoint percentiles).
    qs
        Quantiles to report, each in ``[0, 1]``.
    ts, latency
        Column names.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        Same kind as ``requests``: ``*by``, ``ts`` (bucket start), ``requests`` (count) and
        one column per quantile (``p50``, ``p95``, ``p99``), sorted by ``*by, ts``.

    Notes
    -----
    Each value is :func:`latency_percentile` of the bucket's rows. Buckets are tumbling,
    ``[t, t + every)`` aligned to the epoch, which equals
    ``group_by_dynamic(ts, every=every, group_by=by)`` (the tests check this); grouping on
    ``ts.dt.truncate(every)`` is used because it needs no sort and runs on the streaming
    engine. Buckets without requests are absent.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> df = pl.DataFrame(
    ...     {
    ...         "service": ["a"] * 4,
    ...         "ts": [datetime(2024, 1, 1, 0, 0, s) for s in (0, 10, 20, 30)],
    ...         "latency_ms": [1.0, 2.0, 3.0, 10.0],
    ...     }
    ... )
    >>> latency_percentiles(df, qs=(0.5, 0.9))
    shape: (1, 5)
    ┌─────────┬─────────────────────┬──────────┬─────┬─────┐
    │ service ┆ ts                  ┆ requests ┆ p50 ┆ p90 │
    │ ---     ┆ ---                 ┆ ---      ┆ --- ┆ --- │
    │ str     ┆ datetime[μs]        ┆ u32      ┆ f64 ┆ f64 │
    ╞═════════╪═════════════════════╪══════════╪═════╪═════╡
    │ a       ┆ 2024-01-01 00:00:00 ┆ 4        ┆ 2.5 ┆ 7.9 │
    └─────────┴─────────────────────┴──────────┴─────┴─────┘
    """
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    qs = [ensure_quantile(q, param_name="qs") for q in qs]
    check_columns(requests, [*by_cols, ts, latency], temporal=[ts], numeric=[latency])
    out = requests.group_by(_bucket_keys(ts, every, by_cols)).agg(
        pl.len().alias("requests"), *(latency_percentile(latency, q=q) for q in qs)
    )
    return out.sort([*by_cols, ts])


def _bucket_exprs(
    *, ok: str, latency: str, qs: Sequence[float], threshold_ms: float
) -> list[pl.Expr]:
    """The per-bucket metric expressions of :func:`service_buckets`, in output order."""
    return [
        pl.len().alias("requests"),
        (~pl.col(ok)).sum().alias("errors"),
        error_rate(ok),
        *(latency_percentile(latency, q=q) for q in qs),
        sla_attainment(ok, latency, threshold_ms=threshold_ms),
    ]


def service_buckets(
    requests: Frame,
    *,
    every: str | timedelta = "1m",
    by: str | Sequence[str] = ("service",),
    qs: Sequence[float] = DEFAULT_QUANTILES,
    threshold_ms: float = 250.0,
    ts: str = "ts",
    ok: str = "ok",
    latency: str = "latency_ms",
) -> Frame:
    """Per group and time bucket: requests, errors, error rate, percentiles, SLA attainment.

    The time series behind service-health dashboards and the per-minute benchmark.

    Parameters
    ----------
    requests
        A ``requests`` frame, eager or lazy (lazy scans of Parquet stream).
    every
        Bucket length.
    by
        Group columns.
    qs
        Latency quantiles.
    threshold_ms
        SLA latency threshold of :func:`sla_attainment`.
    ts, ok, latency
        Column names.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``ts`` (bucket start), ``requests``, ``errors``, ``error_rate``,
        ``p50``.. (one per ``qs``), ``sla_attainment``; sorted by ``*by, ts``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> df = pl.DataFrame(
    ...     {
    ...         "service": ["a"] * 3,
    ...         "ts": [datetime(2024, 1, 1, 0, 0, 5), datetime(2024, 1, 1, 0, 0, 9)]
    ...         + [datetime(2024, 1, 1, 0, 1, 0)],
    ...         "latency_ms": [100.0, 300.0, 50.0],
    ...         "ok": [True, True, False],
    ...     }
    ... )
    >>> service_buckets(df, qs=(0.5,)).drop("service")
    shape: (2, 6)
    ┌─────────────────────┬──────────┬────────┬────────────┬───────┬────────────────┐
    │ ts                  ┆ requests ┆ errors ┆ error_rate ┆ p50   ┆ sla_attainment │
    │ ---                 ┆ ---      ┆ ---    ┆ ---        ┆ ---   ┆ ---            │
    │ datetime[μs]        ┆ u32      ┆ u32    ┆ f64        ┆ f64   ┆ f64            │
    ╞═════════════════════╪══════════╪════════╪════════════╪═══════╪════════════════╡
    │ 2024-01-01 00:00:00 ┆ 2        ┆ 0      ┆ 0.0        ┆ 200.0 ┆ 0.5            │
    │ 2024-01-01 00:01:00 ┆ 1        ┆ 1      ┆ 1.0        ┆ 50.0  ┆ 0.0            │
    └─────────────────────┴──────────┴────────┴────────────┴───────┴────────────────┘
    """
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    qs = [ensure_quantile(q, param_name="qs") for q in qs]
    threshold_ms = ensure_threshold(threshold_ms)
    check_columns(requests, [*by_cols, ts, ok, latency], temporal=[ts], numeric=[latency])
    exprs = _bucket_exprs(ok=ok, latency=latency, qs=qs, threshold_ms=threshold_ms)
    return requests.group_by(_bucket_keys(ts, every, by_cols)).agg(exprs).sort([*by_cols, ts])


def collect_by_time(
    requests: pl.LazyFrame,
    query: Callable[[pl.LazyFrame], Frame],
    *,
    slice: str = "1d",
    ts: str = "ts",
    engine: str = "streaming",
) -> pl.DataFrame:
    """Run a bucketed query out of core: one time slice at a time, then concatenate.

    Parameters
    ----------
    requests
        A lazy scan (``pl.scan_parquet``) of any dataset with a ``ts`` column.
    query
        Frame -> frame function whose output rows each depend on rows of one time bucket
        only, e.g. ``lambda lf: service_buckets(lf, every="1m")``.
    slice
        Slice length; must be a multiple of the query's bucket length so that no bucket
        straddles two slices (slices, like buckets, are aligned to the epoch in UTC).
    ts
        Time column.
    engine
        polars engine for each slice.

    Returns
    -------
    pl.DataFrame
        The results of the slices concatenated in time order: the rows of
        ``query(requests).collect()``, in slice-major order (sort if the order matters).

    Notes
    -----
    Exact percentiles keep every latency of a group until the group is complete, so a
    single streaming ``group_by`` over a long history holds the whole column; slicing by
    time bounds memory by one slice's rows (the ``ts`` filter is pushed into the Parquet
    scan and skips row groups by their statistics). This is DESIGN §9's rule (outputs
    depend only on their group's rows) applied to the time key.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> lf = pl.LazyFrame(
    ...     {
    ...         "service": ["a"] * 3,
    ...         "ts": [datetime(2024, 1, 1, 23, 59), datetime(2024, 1, 2), datetime(2024, 1, 2)],
    ...         "latency_ms": [1.0, 2.0, 4.0],
    ...         "ok": [True] * 3,
    ...     }
    ... )
    >>> collect_by_time(lf, lambda f: service_buckets(f, qs=(0.5,)))["p50"].to_list()
    [1.0, 3.0]
    """
    slice_ = ensure_duration(slice, param_name="slice")
    check_columns(requests, [ts], temporal=[ts])
    bounds = requests.select(
        pl.col(ts).min().dt.truncate(slice_).alias("lo"), pl.col(ts).max().alias("hi")
    ).collect(engine=engine)  # type: ignore[call-overload]
    lo, hi = bounds.row(0)
    if lo is None:
        return _collect_frame(query(requests.head(0)), engine)
    step = timedelta(seconds=duration_seconds(slice_))
    parts = []
    start = lo
    while start <= hi:
        window = requests.filter((pl.col(ts) >= start) & (pl.col(ts) < start + step))
        parts.append(_collect_frame(query(window), engine))
        start += step
    return pl.concat(parts, how="vertical")


def _collect_frame(frame: Frame, engine: str) -> pl.DataFrame:
    return frame.collect(engine=engine) if isinstance(frame, pl.LazyFrame) else frame  # type: ignore[call-overload]


def service_summary(
    requests: Frame,
    *,
    by: str | Sequence[str] = ("service",),
    qs: Sequence[float] = DEFAULT_QUANTILES,
    threshold_ms: float = 250.0,
    every: str | timedelta = "1m",
    min_success: float = 0.99,
    start: datetime | None = None,
    end: datetime | None = None,
    ts: str = "ts",
    ok: str = "ok",
    latency: str = "latency_ms",
) -> Frame:
    """One row per service with every service-health metric of this module.

    A composition of this module's expressions in one ``group_by(by).agg``; each column
    equals the function of the same name applied to that service's requests.

    Parameters
    ----------
    requests
        A ``requests`` frame, eager or lazy.
    by
        Group columns (``("service", "endpoint")`` for one row per endpoint).
    qs
        Latency quantiles.
    threshold_ms
        SLA latency threshold.
    every, min_success
        Bucket length and good-bucket success ratio of :func:`availability` and
        :func:`uptime`.
    start, end
        Reporting period of :func:`uptime` (give both in a report).
    ts, ok, latency
        Column names.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        Same kind as ``requests``, sorted by ``by``: ``*by``, ``requests``, ``errors``,
        ``error_rate``, ``p50``.., ``mean_latency_ms``, ``max_latency_ms``,
        ``sla_attainment``, ``availability``, ``uptime``, ``bad_minutes`` (buckets below
        ``min_success``), ``first_ts``, ``last_ts``.

    Notes
    -----
    Every row depends only on its own group's rows (DESIGN §9). Error propagation needs
    whole traces across services and is therefore a separate function
    (:func:`error_propagation`); anomaly flags and quotas are per time point and per
    provider (:mod:`obsbench.metrics.anomaly`, :mod:`obsbench.metrics.quotas`).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> df = pl.DataFrame(
    ...     {
    ...         "service": ["a", "a", "b", "b"],
    ...         "ts": [datetime(2024, 1, 1, 0, m) for m in (0, 1, 0, 1)],
    ...         "latency_ms": [100.0, 300.0, 50.0, 60.0],
    ...         "ok": [True, True, True, False],
    ...     }
    ... )
    >>> service_summary(df, qs=(0.5,)).select(
    ...     "service", "error_rate", "p50", "sla_attainment", "availability"
    ... )
    shape: (2, 5)
    ┌─────────┬────────────┬───────┬────────────────┬──────────────┐
    │ service ┆ error_rate ┆ p50   ┆ sla_attainment ┆ availability │
    │ ---     ┆ ---        ┆ ---   ┆ ---            ┆ ---          │
    │ str     ┆ f64        ┆ f64   ┆ f64            ┆ f64          │
    ╞═════════╪════════════╪═══════╪════════════════╪══════════════╡
    │ a       ┆ 0.0        ┆ 200.0 ┆ 0.5            ┆ 1.0          │
    │ b       ┆ 0.5        ┆ 55.0  ┆ 0.5            ┆ 0.5          │
    └─────────┴────────────┴───────┴────────────────┴──────────────┘
    """
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    qs = [ensure_quantile(q, param_name="qs") for q in qs]
    threshold_ms = ensure_threshold(threshold_ms)
    min_success = ensure_fraction(min_success, param_name="min_success")
    check_columns(requests, [*by_cols, ts, ok, latency], temporal=[ts], numeric=[latency])
    lat = pl.col(latency).cast(pl.Float64).fill_nan(None)
    bucket = pl.col(ts).dt.truncate(every)
    exprs = [
        *_bucket_exprs(ok=ok, latency=latency, qs=qs, threshold_ms=threshold_ms)[:3],
        *(latency_percentile(latency, q=q) for q in qs),
        nan_where(lat.count() == 0, lat.mean()).alias("mean_latency_ms"),
        nan_where(lat.count() == 0, lat.max()).alias("max_latency_ms"),
        sla_attainment(ok, latency, threshold_ms=threshold_ms),
        availability(ok, ts, every=every, min_success=min_success),
        uptime(ok, ts, every=every, min_success=min_success, start=start, end=end),
        _bad_buckets(pl.col(ok), bucket, min_success).n_unique().alias("bad_minutes"),
        pl.col(ts).min().alias("first_ts"),
        pl.col(ts).max().alias("last_ts"),
    ]
    return requests.group_by(by_cols).agg(exprs).sort(by_cols)


# --------------------------------------------------------------------------- propagation


def error_origins(
    requests: Frame,
    *,
    ts: str = "ts",
    ok: str = "ok",
    latency: str = "latency_ms",
    service: str = "service",
    trace_id: str = "trace_id",
) -> Frame:
    """The failed requests, each with the service that originated its trace's errors.

    Parameters
    ----------
    requests
        A ``requests`` frame, eager or lazy.
    ts, ok, latency, service, trace_id
        Column names.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        The failed requests (``not ok``) with two more columns: ``origin_service`` and
        ``propagated`` (true when the request failed because a callee failed first,
        i.e. ``origin_service`` is another request's service).

    Notes
    -----
    An error propagates *up* the call chain: a callee fails, then its caller fails after
    it, so the caller's request **completes later**. Within one trace the originating
    error is therefore the failed request with the earliest completion time
    ``ts + latency_ms`` (ties broken by the later start, i.e. the deeper call). Every
    failed request of the trace is attributed to that origin. A failed request without a
    ``trace_id`` is its own origin. Only the ``requests`` dataset is needed; with spans,
    the same answer follows from ``parent_span_id``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> t0 = datetime(2024, 1, 1)
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [t0] * 3,
    ...         "service": ["gateway", "router", "broker"],
    ...         "latency_ms": [30.0, 20.0, 10.0],
    ...         "ok": [False, False, False],
    ...         "trace_id": ["t1"] * 3,
    ...     }
    ... )
    >>> error_origins(df).select("service", "origin_service", "propagated")
    shape: (3, 3)
    ┌─────────┬────────────────┬────────────┐
    │ service ┆ origin_service ┆ propagated │
    │ ---     ┆ ---            ┆ ---        │
    │ str     ┆ str            ┆ bool       │
    ╞═════════╪════════════════╪════════════╡
    │ gateway ┆ broker         ┆ true       │
    │ router  ┆ broker         ┆ true       │
    │ broker  ┆ broker         ┆ false      │
    └─────────┴────────────────┴────────────┘
    """
    check_columns(requests, [ts, ok, latency, service, trace_id], temporal=[ts], numeric=[latency])
    done = pl.col(ts) + pl.duration(microseconds=(pl.col(latency) * 1000).round().cast(pl.Int64))
    failed = requests.filter(~pl.col(ok)).with_columns(_done=done, _row=pl.int_range(pl.len()))
    order = [pl.col("_done"), -pl.col(ts).dt.epoch("us"), pl.col("_row")]
    solo = pl.col(trace_id).is_null()
    first_row = pl.col("_row").sort_by(order).first().over(trace_id)
    origin = pl.col(service).sort_by(order).first().over(trace_id)
    out = failed.with_columns(
        origin_service=pl.when(solo).then(pl.col(service)).otherwise(origin),
        propagated=~solo & (pl.col("_row") != first_row),
    )
    return out.sort("_row").drop("_done", "_row")


def error_propagation(
    requests: Frame,
    *,
    ts: str = "ts",
    ok: str = "ok",
    latency: str = "latency_ms",
    service: str = "service",
    trace_id: str = "trace_id",
) -> Frame:
    """Which service originated the errors each service reports: counts per pair.

    Parameters
    ----------
    requests
        A ``requests`` frame, eager or lazy.
    ts, ok, latency, service, trace_id
        Column names.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``origin_service``, ``service``, ``errors`` (failed requests of ``service`` whose
        trace's errors originated in ``origin_service``), ``share`` (of ``service``'s
        errors), sorted by ``service`` then descending ``errors``. The diagonal
        (``origin_service == service``) counts the service's own errors.

    Notes
    -----
    The attribution rule is :func:`error_origins`'. A gateway whose errors all show
    ``origin_service = broker-gateway`` is a victim, not the cause.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> t0 = datetime(2024, 1, 1)
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [t0] * 4,
    ...         "service": ["gateway", "broker", "gateway", "broker"],
    ...         "latency_ms": [30.0, 10.0, 30.0, 10.0],
    ...         "ok": [False, False, False, True],
    ...         "trace_id": ["t1", "t1", "t2", "t2"],
    ...     }
    ... )
    >>> error_propagation(df)
    shape: (3, 4)
    ┌────────────────┬─────────┬────────┬───────┐
    │ origin_service ┆ service ┆ errors ┆ share │
    │ ---            ┆ ---     ┆ ---    ┆ ---   │
    │ str            ┆ str     ┆ u32    ┆ f64   │
    ╞════════════════╪═════════╪════════╪═══════╡
    │ broker         ┆ broker  ┆ 1      ┆ 1.0   │
    │ broker         ┆ gateway ┆ 1      ┆ 0.5   │
    │ gateway        ┆ gateway ┆ 1      ┆ 0.5   │
    └────────────────┴─────────┴────────┴───────┘
    """
    origins = error_origins(
        requests, ts=ts, ok=ok, latency=latency, service=service, trace_id=trace_id
    )
    counts = origins.group_by("origin_service", service).agg(pl.len().alias("errors"))
    share = pl.col("errors") / pl.col("errors").sum().over(service)
    return (
        counts.with_columns(share=share)
        .sort([service, "errors", "origin_service"], descending=[False, True, False])
        .select("origin_service", service, "errors", "share")
    )
