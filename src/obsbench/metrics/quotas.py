"""API rate limits and broker quotas on the canonical ``api_usage`` dataset.

One ``api_usage`` row is one rate-limit window of one provider (broker or API) and
endpoint: ``used`` requests were made in the window of ``window_s`` seconds that starts at
``ts``, against ``limit``. ``used`` counts *every* request, so ``used > limit`` means that
``used - limit`` of them were throttled (HTTP 429), as the simulator and most broker APIs
report it. A cumulative quota (orders per day) is the same row shape with
``window_s=86400`` and ``used`` sampled as it fills.

Metrics (expressions; group with ``group_by("provider", "endpoint")`` or ``over``):

- :func:`api_utilisation` ``= used / limit`` per row (above 1 when requests were throttled);
- :func:`peak_utilisation` ``= max(used / limit)``;
- :func:`throttled_requests` ``= sum(max(used - limit, 0))``, :func:`throttled_windows`
  ``= #{used > limit}``;
- :func:`usage_trend` (requests per second, per second: the least-squares slope of
  ``used`` over the last ``lookback`` rows) and :func:`time_to_exhaustion`
  ``= (limit - level) / trend`` seconds at the current rate of growth.

:func:`quota_utilisation` (per time bucket) and :func:`quota_summary` (one row per
provider and endpoint) compose them.

Examples
--------
>>> import polars as pl
>>> import obsbench.metrics as obm
>>> df = pl.DataFrame({"provider": ["ibkr"] * 3, "used": [4, 10, 12], "limit": [10] * 3})
>>> df.group_by("provider").agg(
...     obm.peak_utilisation("used", "limit"), obm.throttled_requests("used", "limit")
... )
shape: (1, 3)
┌──────────┬──────────────────┬────────────────────┐
│ provider ┆ peak_utilisation ┆ throttled_requests │
│ ---      ┆ ---              ┆ ---                │
│ str      ┆ f64              ┆ i64                │
╞══════════╪══════════════════╪════════════════════╡
│ ibkr     ┆ 1.2              ┆ 2                  │
└──────────┴──────────────────┴────────────────────┘
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from obsbench._typing import IntoExpr
from obsbench.metrics._common import ensure_window, metric, nan_where, to_expr
from obsbench.metrics.sla import check_columns, ensure_duration

__all__ = [
    "api_utilisation",
    "peak_utilisation",
    "quota_summary",
    "quota_utilisation",
    "throttled_requests",
    "throttled_windows",
    "time_to_exhaustion",
    "usage_trend",
]

Frame = pl.DataFrame | pl.LazyFrame
_DATASET = "api_usage"


@metric(data=("used", "limit"), output="series")
def api_utilisation(used: IntoExpr = "used", limit: IntoExpr = "limit") -> pl.Expr:
    """Share of the window's limit used: ``used / limit`` per row.

    Parameters
    ----------
    used, limit
        Requests made in the window and the window's limit.

    Returns
    -------
    pl.Expr
        Named ``utilisation``; above 1.0 when ``used - limit`` requests were throttled;
        NaN where ``limit`` is 0 or missing.

    Examples
    --------
    >>> import polars as pl
    >>> api_utilisation(pl.Series([5, 12]), pl.Series([10, 10])).to_list()
    [0.5, 1.2]
    """
    u = to_expr(used, param_name="used").cast(pl.Float64)
    lim = to_expr(limit, param_name="limit").cast(pl.Float64)
    return nan_where(lim.is_null() | (lim <= 0), u / lim).alias("utilisation")


@metric(data=("used", "limit"))
def peak_utilisation(used: IntoExpr = "used", limit: IntoExpr = "limit") -> pl.Expr:
    """Highest :func:`api_utilisation` of the rows (NaN for no rows).

    Examples
    --------
    >>> import polars as pl
    >>> peak_utilisation(pl.Series([5, 12, 3]), pl.Series([10, 10, 10]))
    1.2
    """
    u = api_utilisation(used, limit).fill_nan(None)
    return nan_where(u.count() == 0, u.max()).alias("peak_utilisation")


@metric(data=("used", "limit"))
def throttled_requests(used: IntoExpr = "used", limit: IntoExpr = "limit") -> pl.Expr:
    """Requests beyond the limit: ``sum(max(used - limit, 0))`` (0 for no rows).

    Examples
    --------
    >>> import polars as pl
    >>> throttled_requests(pl.Series([5, 12, 13]), pl.Series([10, 10, 10]))
    5
    """
    u = to_expr(used, param_name="used")
    lim = to_expr(limit, param_name="limit")
    return (u - lim).clip(lower_bound=0).sum().alias("throttled_requests")


@metric(data=("used", "limit"))
def throttled_windows(used: IntoExpr = "used", limit: IntoExpr = "limit") -> pl.Expr:
    """Windows in which some request was throttled: ``#{used > limit}``.

    Examples
    --------
    >>> import polars as pl
    >>> throttled_windows(pl.Series([5, 12, 13]), pl.Series([10, 10, 10]))
    2
    """
    u = to_expr(used, param_name="used")
    lim = to_expr(limit, param_name="limit")
    return (u > lim).sum().alias("throttled_windows")


def _line(
    n: float, s_d: pl.Expr, s_y: pl.Expr, s_dd: pl.Expr, s_dy: pl.Expr
) -> tuple[pl.Expr, pl.Expr]:
    """Least-squares slope and level (at ``d = 0``) from the sums over ``n`` points."""
    denom = n * s_dd - s_d * s_d
    slope = pl.when(denom > 0).then((n * s_dy - s_d * s_y) / denom)
    return slope, (s_y - slope * s_d) / n


def _fit(used: IntoExpr, ts: IntoExpr, lookback: int) -> tuple[pl.Expr, pl.Expr]:
    """Least-squares slope (per second) and fitted level of ``used`` over the last rows.

    Times are offsets from the current row (``d_j = ts_{i-j} - ts_i`` seconds), so the sums
    stay small and exact however late the series runs.
    """
    y = to_expr(used, param_name="used").cast(pl.Float64)
    t = to_expr(ts, param_name="ts")
    ds = [(t.shift(j) - t).dt.total_microseconds().cast(pl.Float64) / 1e6 for j in range(lookback)]
    ys = [y.shift(j) for j in range(lookback)]
    return _line(
        float(lookback),
        pl.sum_horizontal(ds, ignore_nulls=False),
        pl.sum_horizontal(ys, ignore_nulls=False),
        pl.sum_horizontal([d * d for d in ds], ignore_nulls=False),
        pl.sum_horizontal([d * v for d, v in zip(ds, ys, strict=True)], ignore_nulls=False),
    )


def _fit_last(lookback: int) -> tuple[pl.Expr, pl.Expr]:
    """:func:`_fit` at a group's last row, as aggregations over the group's last rows.

    The same line from sums taken in one pass (``group_by(...).tail(lookback)`` first)
    instead of ``lookback`` shifted copies of the series: the summary needs one value per
    group, not the rolling series. Null with fewer than ``lookback`` rows, as :func:`_fit`.
    """
    y = pl.col("used").cast(pl.Float64)
    d = (pl.col("ts") - pl.col("ts").last()).dt.total_microseconds().cast(pl.Float64) / 1e6
    slope, level = _line(float(lookback), d.sum(), y.sum(), (d * d).sum(), (d * y).sum())
    enough = pl.len() >= lookback
    return pl.when(enough).then(slope), pl.when(enough).then(level)


def _exhaustion(slope: pl.Expr, level: pl.Expr, lim: pl.Expr) -> pl.Expr:
    return (
        pl.when(slope.is_null())
        .then(None)
        .when(level >= lim)
        .then(0.0)
        .when(slope <= 0)
        .then(float("inf"))
        .otherwise((lim - level) / slope)
    )


@metric(data=("used", "ts"), output="series")
def usage_trend(used: IntoExpr = "used", ts: IntoExpr = "ts", *, lookback: int = 60) -> pl.Expr:
    """Rate of growth of ``used``: least-squares slope over the last ``lookback`` rows.

    Parameters
    ----------
    used
        Requests per window (or a cumulative quota counter).
    ts
        Row timestamp.
    lookback
        Rows in the fit (>= 2), the current one included.

    Returns
    -------
    pl.Expr
        Named ``usage_trend``, in ``used`` units per second; null for the first
        ``lookback - 1`` rows and where all ``lookback`` timestamps are equal.

    Notes
    -----
    Ordinary least squares of ``used`` on time over rows ``i - lookback + 1 .. i``:
    ``slope = (n S_dy - S_d S_y) / (n S_dd - S_d^2)`` with ``d`` the time offsets from row
    ``i``. Rows must be in time order within each group (``over("provider", "endpoint")``).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta
    >>> ts = pl.Series([datetime(2024, 1, 1) + timedelta(seconds=2 * i) for i in range(4)])
    >>> usage_trend(pl.Series([1, 2, 3, 4]), ts, lookback=3).to_list()
    [None, None, 0.5, 0.5]
    """
    lookback = ensure_window(lookback, param_name="lookback")
    lookback = max(lookback, 2)
    slope, _ = _fit(used, ts, lookback)
    return slope.alias("usage_trend")


@metric(data=("used", "limit", "ts"), output="series")
def time_to_exhaustion(
    used: IntoExpr = "used",
    limit: IntoExpr = "limit",
    ts: IntoExpr = "ts",
    *,
    lookback: int = 60,
) -> pl.Expr:
    """Seconds until ``used`` reaches ``limit`` at the current rate of growth.

    Parameters
    ----------
    used, limit, ts
        Usage, limit and timestamp per row (in time order within each group).
    lookback
        Rows in the trend fit (see :func:`usage_trend`).

    Returns
    -------
    pl.Expr
        Named ``time_to_exhaustion_s`` (float seconds): ``0.0`` when the fitted level is
        already at or above the limit, ``inf`` when usage is flat or falling, null during
        the first ``lookback - 1`` rows.

    Notes
    -----
    ``tte = (limit - level) / trend`` where ``trend`` is the least-squares slope of
    :func:`usage_trend` and ``level`` the fitted value of the same line at the current
    row (less noisy than the last sample; equal to it on an exact ramp). For a rate
    limit it forecasts when the per-window usage hits the limit; for a cumulative quota,
    when the quota runs out (before its reset only if ``tte`` is shorter than the time
    left in the window).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta
    >>> ts = pl.Series([datetime(2024, 1, 1) + timedelta(seconds=i) for i in range(4)])
    >>> time_to_exhaustion(pl.Series([2, 3, 4, 5]), pl.Series([10] * 4), ts, lookback=2).to_list()
    [None, 7.0, 6.0, 5.0]
    """
    lookback = max(ensure_window(lookback, param_name="lookback"), 2)
    slope, level = _fit(used, ts, lookback)
    lim = to_expr(limit, param_name="limit").cast(pl.Float64)
    return _exhaustion(slope, level, lim).alias("time_to_exhaustion_s")


def _norm_by(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def quota_utilisation(
    api_usage: Frame,
    *,
    every: str = "1h",
    by: str | Sequence[str] = ("provider", "endpoint"),
) -> Frame:
    """Utilisation per provider, endpoint and time bucket.

    Parameters
    ----------
    api_usage
        An ``api_usage`` frame, eager or lazy.
    every
        Bucket length (``ts`` truncated; tumbling, left-closed).
    by
        Group columns.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``ts``, ``windows`` (rows), ``used``, ``mean_utilisation``,
        ``peak_utilisation``, ``throttled_requests``, ``throttled_windows``; sorted.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [datetime(2024, 1, 1, 0, 0, s) for s in range(3)],
    ...         "provider": "ibkr",
    ...         "endpoint": "orders",
    ...         "used": [2, 5, 7],
    ...         "limit": 5,
    ...         "window_s": 1,
    ...     }
    ... )
    >>> quota_utilisation(df).select("windows", "peak_utilisation", "throttled_requests")
    shape: (1, 3)
    ┌─────────┬──────────────────┬────────────────────┐
    │ windows ┆ peak_utilisation ┆ throttled_requests │
    │ ---     ┆ ---              ┆ ---                │
    │ u32     ┆ f64              ┆ i64                │
    ╞═════════╪══════════════════╪════════════════════╡
    │ 3       ┆ 1.4              ┆ 2                  │
    └─────────┴──────────────────┴────────────────────┘
    """
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    check_columns(api_usage, [*by_cols, "ts", "used", "limit"], dataset=_DATASET, temporal=["ts"])
    u = api_utilisation().fill_nan(None)
    return (
        api_usage.group_by([*by_cols, pl.col("ts").dt.truncate(every)])
        .agg(
            pl.len().alias("windows"),
            pl.col("used").sum(),
            u.mean().alias("mean_utilisation"),
            peak_utilisation(),
            throttled_requests(),
            throttled_windows(),
        )
        .sort([*by_cols, "ts"])
    )


def quota_summary(
    api_usage: Frame,
    *,
    by: str | Sequence[str] = ("provider", "endpoint"),
    lookback: int = 60,
) -> Frame:
    """One row per provider and endpoint: utilisation, throttling and the exhaustion forecast.

    Parameters
    ----------
    api_usage
        An ``api_usage`` frame, eager or lazy (rows need not be sorted).
    by
        Group columns.
    lookback
        Rows in the trend fit of the forecast.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``windows``, ``limit`` (last), ``mean_utilisation``, ``peak_utilisation``,
        ``peak_at`` (ts of the first peak), ``throttled_requests``, ``throttled_windows``,
        ``last_ts``, ``last_utilisation``, ``usage_trend`` and ``time_to_exhaustion_s``
        (both at the last row).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [datetime(2024, 1, 1) + timedelta(seconds=s) for s in range(5)],
    ...         "provider": "ibkr",
    ...         "endpoint": "orders",
    ...         "used": [1, 2, 3, 4, 5],
    ...         "limit": 10,
    ...         "window_s": 1,
    ...     }
    ... )
    >>> quota_summary(df, lookback=5).select("peak_utilisation", "time_to_exhaustion_s")
    shape: (1, 2)
    ┌──────────────────┬──────────────────────┐
    │ peak_utilisation ┆ time_to_exhaustion_s │
    │ ---              ┆ ---                  │
    │ f64              ┆ f64                  │
    ╞══════════════════╪══════════════════════╡
    │ 0.5              ┆ 5.0                  │
    └──────────────────┴──────────────────────┘
    """
    by_cols = _norm_by(by)
    lookback = max(ensure_window(lookback, param_name="lookback"), 2)
    check_columns(api_usage, [*by_cols, "ts", "used", "limit"], dataset=_DATASET, temporal=["ts"])
    u = api_utilisation().fill_nan(None)
    tail = api_usage.sort([*by_cols, "ts"]).group_by(by_cols, maintain_order=True).tail(lookback)
    slope, level = _fit_last(lookback)
    forecast = tail.group_by(by_cols).agg(
        slope.alias("usage_trend"),
        _exhaustion(slope, level, pl.col("limit").last().cast(pl.Float64)).alias(
            "time_to_exhaustion_s"
        ),
    )
    stats = api_usage.group_by(by_cols).agg(
        pl.len().alias("windows"),
        pl.col("limit").sort_by("ts").last(),
        u.mean().alias("mean_utilisation"),
        peak_utilisation(),
        pl.col("ts")
        .sort_by([u.fill_null(-1.0), pl.col("ts")], descending=[True, False])
        .first()
        .alias("peak_at"),
        throttled_requests(),
        throttled_windows(),
        pl.col("ts").max().alias("last_ts"),
        u.sort_by("ts").last().alias("last_utilisation"),
    )
    return stats.join(forecast, on=by_cols, how="left").sort(by_cols)
