"""Execution quality: slippage, implementation shortfall, fill rates and latency.

The expression functions (:func:`side_sign`, :func:`slippage_bps`, :func:`weighted_mean`,
:func:`execution_cost`, :func:`opportunity_cost`, :func:`implementation_shortfall`,
:func:`cost_bps`, :func:`fill_rate`, :func:`order_fill_rate`, :func:`latency_ms`) each
write one formula; latency percentiles reuse :func:`obsbench.metrics.sla.latency_percentile`.
The frame-level functions (:func:`order_executions`, :func:`fill_slippage`,
:func:`slippage`, :func:`fill_rates`, :func:`execution_latency`, :func:`span_latency`,
:func:`execution_summary`) validate their input once, at the edge, and compose those
expressions; they never re-write a formula.

Conventions (one decision each, shared by every function here)
---------------------------------------------------------------
- **Costs are positive.** Slippage, execution cost, opportunity cost and implementation
  shortfall are positive when execution cost money, for buys and sells alike: the side
  sign ``s`` is +1 for ``"buy"`` and -1 for ``"sell"`` and multiplies every price move.
- **Basis points** are ``1e4 x cost / notional``; a group's value is quantity-weighted
  (:func:`weighted_mean`), so a group's slippage equals the slippage of all its fills
  pooled, whatever the number of orders.
- **Mid at a time** is the latest quote at or before that time for the same symbol (a
  backward as-of join, :func:`mid_at`), never a later quote.
- **Order venue.** Group columns come from the order (``strategy``, ``symbol``, ``venue``,
  ``broker``): a fill routed to another venue still counts for its order's venue.
- **Bad input is an error, never a number.** Frame-level functions validate ``orders``,
  ``fills`` and ``quotes`` against their canonical schemas and cross-check them
  (:func:`validate_execution`): fills of unknown orders, fills whose side or symbol
  differs from their order's, fills before their order's decision time and overfilled
  orders raise :class:`~obsbench.errors.SchemaError` listing the offending ids.
- **LazyFrame in, LazyFrame out.** Validation needs the data, so lazy inputs are collected
  once and the result is handed back lazy.

Examples
--------
>>> import polars as pl
>>> import obsbench.metrics as obm
>>> fills = pl.DataFrame(
...     {
...         "side": ["buy", "buy", "sell", "sell"],
...         "arrival_px": [100.0, 100.0, 50.0, 50.0],
...         "px": [100.10, 100.20, 49.95, 50.05],
...         "qty": [300.0, 100.0, 200.0, 200.0],
...     }
... )
>>> fills.with_columns(obm.slippage_bps("side", "arrival_px", "px").round(6))["slippage_bps"]
shape: (4,)
Series: 'slippage_bps' [f64]
[
    10.0
    20.0
    10.0
    -10.0
]
>>> fills.group_by("side", maintain_order=True).agg(
...     obm.weighted_mean(obm.slippage_bps(), "qty").round(6).alias("slippage_bps")
... )
shape: (2, 2)
┌──────┬──────────────┐
│ side ┆ slippage_bps │
│ ---  ┆ ---          │
│ str  ┆ f64          │
╞══════╪══════════════╡
│ buy  ┆ 12.5         │
│ sell ┆ 0.0          │
└──────┴──────────────┘
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypeAlias, TypeVar

import numpy as np
import polars as pl

from obsbench import schemas
from obsbench._typing import IntoExpr
from obsbench.errors import InvalidParameter, SchemaError
from obsbench.metrics._common import (
    ensure_choice,
    metric,
    nan_where,
    to_expr,
)
from obsbench.metrics.sla import check_columns, latency_percentile, quantile_name

__all__ = [
    "BENCHMARKS",
    "LATENCY_QUANTILES",
    "Benchmark",
    "cost_bps",
    "execution_cost",
    "execution_latency",
    "execution_summary",
    "fill_rate",
    "fill_rates",
    "fill_slippage",
    "implementation_shortfall",
    "interval_twap",
    "interval_vwap",
    "latency_ms",
    "mid_at",
    "opportunity_cost",
    "order_executions",
    "order_fill_rate",
    "order_timestamps_from_spans",
    "side_sign",
    "slippage",
    "slippage_bps",
    "span_latency",
    "validate_execution",
    "weighted_mean",
]

BPS = 1.0e4
"""Basis points per unit."""

Benchmark: TypeAlias = Literal["arrival", "fill_mid", "interval_vwap", "interval_twap"]
"""The benchmark price of :func:`fill_slippage` (see its Notes)."""
BENCHMARKS: tuple[Benchmark, ...] = ("arrival", "fill_mid", "interval_vwap", "interval_twap")

LATENCY_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
"""Default latency percentiles: p50, p95, p99."""

DEFAULT_GROUP: tuple[str, ...] = ("strategy", "symbol", "venue")
"""The key of :func:`execution_summary`: one row per (strategy, symbol, venue)."""

_QTY_RTOL = 1.0e-9  # relative tolerance of "fully filled" and "overfilled" on float qty
_MAX_IDS = 20  # offending ids listed per problem in a SchemaError

Frame: TypeAlias = pl.DataFrame | pl.LazyFrame
F = TypeVar("F", pl.DataFrame, pl.LazyFrame)


# =========================================================================== expressions


@metric(data=("side",), output="series")
def side_sign(side: IntoExpr = "side") -> pl.Expr:
    """+1.0 for ``"buy"``, -1.0 for ``"sell"``, null for anything else.

    Parameters
    ----------
    side
        Order side: a column name, ``pl.Expr`` or ``pl.Series`` of ``"buy"``/``"sell"``.

    Returns
    -------
    pl.Expr
        Float64, named ``side_sign``.

    Notes
    -----
    Multiplying a price move by the sign turns it into a cost for the trader: a buy
    filled above its benchmark and a sell filled below it both cost money. Any other side
    gives null; frame-level functions reject such rows before they get here.

    Examples
    --------
    >>> import polars as pl
    >>> side_sign(pl.Series(["buy", "sell"])).to_list()
    [1.0, -1.0]
    """
    s = to_expr(side, param_name="side")
    return (
        pl.when(s == "buy")
        .then(pl.lit(1.0))
        .when(s == "sell")
        .then(pl.lit(-1.0))
        .otherwise(pl.lit(None, pl.Float64))
        .alias("side_sign")
    )


@metric(data=("side", "benchmark_px", "fill_px"), output="series")
def slippage_bps(
    side: IntoExpr = "side", benchmark_px: IntoExpr = "arrival_px", fill_px: IntoExpr = "px"
) -> pl.Expr:
    """Slippage of a fill against a benchmark price, in basis points; positive is a cost.

    Parameters
    ----------
    side
        ``"buy"``/``"sell"``.
    benchmark_px
        Benchmark price: the arrival mid (default), the mid at fill time (:func:`mid_at`)
        or an interval VWAP/TWAP (:func:`interval_vwap`, :func:`interval_twap`).
    fill_px
        Execution price (a fill's ``px``, or an order's average fill price).

    Returns
    -------
    pl.Expr
        One value per row, named ``slippage_bps``.

    Notes
    -----
    ``slippage_bps = s x (fill_px - benchmark_px) / benchmark_px x 1e4`` with ``s = +1``
    for a buy and ``-1`` for a sell. A fill exactly at the benchmark gives 0; price
    improvement is negative. A null input gives null; a zero benchmark gives ±inf (the
    frame-level functions reject non-positive prices). Aggregate with
    :func:`weighted_mean` weighted by quantity.

    References
    ----------
    Kissell, *The Science of Algorithmic Trading and Portfolio Management* (2013), ch. 3
    (arrival cost, sign convention: positive = cost).

    Examples
    --------
    >>> import polars as pl
    >>> slippage_bps(
    ...     pl.Series(["buy", "sell"]), pl.Series([100.0, 100.0]), pl.Series([100.05, 100.05])
    ... ).round(9).to_list()
    [5.0, -5.0]
    """
    bench = to_expr(benchmark_px, param_name="benchmark_px")
    px = to_expr(fill_px, param_name="fill_px")
    return (side_sign(side) * (px - bench) / bench * BPS).alias("slippage_bps")


@metric(data=("values", "weights"))
def weighted_mean(values: IntoExpr, weights: IntoExpr = "qty") -> pl.Expr:
    """Weighted mean ``sum(w x v) / sum(w)``: the single aggregation of per-fill metrics.

    Parameters
    ----------
    values
        The values (e.g. :func:`slippage_bps`).
    weights
        The weights (e.g. ``"qty"``; per order, its filled quantity).

    Returns
    -------
    pl.Expr
        An aggregate named like ``values``.

    Notes
    -----
    Rows where the value or the weight is null are skipped (both sums). No rows, or a zero
    weight sum, give NaN. Weighted means compose: the mean of per-order weighted means,
    weighted by each order's weight sum, equals the weighted mean over all rows, so a
    group's slippage is the same whether computed from fills or from orders.

    Examples
    --------
    >>> import polars as pl
    >>> weighted_mean(pl.Series([10.0, 20.0, None]), pl.Series([3.0, 1.0, 5.0]))
    12.5
    """
    num, den = _weighted_terms(values, weights)
    return _weighted_ratio(num.sum(), den.sum())


def _weighted_terms(values: IntoExpr, weights: IntoExpr) -> tuple[pl.Expr, pl.Expr]:
    """The row terms ``w x v`` and ``w`` of :func:`weighted_mean` (0 where ``v`` is null)."""
    v = to_expr(values, param_name="values")
    w = to_expr(weights, param_name="weights")
    w_used = pl.when(v.is_not_null()).then(w).otherwise(pl.lit(0.0))
    return (v * w_used).fill_null(0.0), w_used


def _weighted_ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """:func:`weighted_mean` from the sums of its terms: NaN for a zero weight sum."""
    return nan_where(den == 0, num / den)


@metric(data=("side", "decision_px", "filled_qty", "fill_notional"), output="series")
def execution_cost(
    side: IntoExpr = "side",
    decision_px: IntoExpr = "arrival_px",
    filled_qty: IntoExpr = "filled_qty",
    fill_notional: IntoExpr = "fill_notional",
) -> pl.Expr:
    """Execution cost of the filled quantity, in currency; positive is a cost.

    Parameters
    ----------
    side
        ``"buy"``/``"sell"``.
    decision_px
        Price at the decision (the arrival mid).
    filled_qty
        ``sum(q_i)`` over the order's fills.
    fill_notional
        ``sum(q_i x p_i)`` over the order's fills.

    Returns
    -------
    pl.Expr
        One value per order, named ``execution_cost``.

    Notes
    -----
    ``execution_cost = s x (sum(q_i p_i) - sum(q_i) x p_d) = s x sum(q_i (p_i - p_d))``.
    An order without fills has cost 0. Equals ``slippage_bps`` of the average fill price
    times the filled notional at ``p_d`` / 1e4.

    Examples
    --------
    >>> import polars as pl
    >>> execution_cost(
    ...     pl.Series(["buy"]), pl.Series([100.0]), pl.Series([400.0]), pl.Series([40_050.0])
    ... ).to_list()
    [50.0]
    """
    px = to_expr(decision_px, param_name="decision_px")
    qty = to_expr(filled_qty, param_name="filled_qty")
    notional = to_expr(fill_notional, param_name="fill_notional")
    return (side_sign(side) * (notional - qty * px)).alias("execution_cost")


@metric(data=("side", "decision_px", "ordered_qty", "filled_qty", "end_px"), output="series")
def opportunity_cost(
    side: IntoExpr = "side",
    decision_px: IntoExpr = "arrival_px",
    ordered_qty: IntoExpr = "qty",
    filled_qty: IntoExpr = "filled_qty",
    end_px: IntoExpr = "end_px",
) -> pl.Expr:
    """Opportunity cost of the unfilled quantity, in currency; positive is a cost.

    Parameters
    ----------
    side
        ``"buy"``/``"sell"``.
    decision_px
        Price at the decision (the arrival mid).
    ordered_qty
        ``Q``, the order quantity.
    filled_qty
        ``sum(q_i)``.
    end_px
        ``p_end``, the price at the end of the evaluation horizon (the mark the unfilled
        quantity is valued at).

    Returns
    -------
    pl.Expr
        One value per order, named ``opportunity_cost``.

    Notes
    -----
    ``opportunity_cost = s x (Q - sum(q_i)) x (p_end - p_d)``: the move the trader missed
    on what was not executed. A fully filled order has opportunity cost exactly 0, even
    when ``p_end`` is null.

    Examples
    --------
    >>> import polars as pl
    >>> opportunity_cost(
    ...     pl.Series(["sell"]),
    ...     pl.Series([100.0]),
    ...     pl.Series([500.0]),
    ...     pl.Series([400.0]),
    ...     pl.Series([99.0]),
    ... ).to_list()
    [100.0]
    """
    px = to_expr(decision_px, param_name="decision_px")
    unfilled = to_expr(ordered_qty, param_name="ordered_qty") - to_expr(
        filled_qty, param_name="filled_qty"
    )
    end = to_expr(end_px, param_name="end_px")
    return (
        pl.when(unfilled == 0)
        .then(pl.lit(0.0))
        .otherwise(side_sign(side) * unfilled * (end - px))
        .alias("opportunity_cost")
    )


@metric(
    data=("side", "decision_px", "ordered_qty", "filled_qty", "fill_notional", "end_px", "fees"),
    output="series",
)
def implementation_shortfall(
    side: IntoExpr = "side",
    decision_px: IntoExpr = "arrival_px",
    ordered_qty: IntoExpr = "qty",
    filled_qty: IntoExpr = "filled_qty",
    fill_notional: IntoExpr = "fill_notional",
    end_px: IntoExpr = "end_px",
    fees: IntoExpr = "fees",
) -> pl.Expr:
    """Perold's implementation shortfall of an order, in currency; positive is a cost.

    Parameters
    ----------
    side, decision_px, ordered_qty, filled_qty, fill_notional, end_px
        As in :func:`execution_cost` and :func:`opportunity_cost`.
    fees
        Fees and commissions paid on the fills (``>= 0``).

    Returns
    -------
    pl.Expr
        One value per order, named ``implementation_shortfall``. Divide by the decision
        notional ``Q x p_d`` with :func:`cost_bps` for basis points.

    Notes
    -----
    The paper portfolio trades ``Q`` at the decision price ``p_d`` for free; the real
    portfolio trades ``q_i`` at ``p_i``, pays ``fees`` and leaves ``Q - sum(q_i)``
    unexecuted. Valued at ``p_end``, the shortfall (paper return - real return) is

    ``IS = s x [Q (p_end - p_d) - sum(q_i (p_end - p_i))] + fees``
    ``   = s x sum(q_i (p_i - p_d)) + s x (Q - sum(q_i)) (p_end - p_d) + fees``
    ``   = execution_cost + opportunity_cost + fees``.

    A fully filled order's shortfall does not depend on ``p_end``; an unfilled order's
    is its opportunity cost alone.

    References
    ----------
    Perold, A. F. (1988), "The implementation shortfall: paper versus reality",
    *Journal of Portfolio Management* 14(3), 4-9.

    Examples
    --------
    Buy 500 at decision price 100; 400 filled at 100.125 average, 10 of fees; the price
    ends at 101:

    >>> import polars as pl
    >>> implementation_shortfall(
    ...     pl.Series(["buy"]),
    ...     pl.Series([100.0]),
    ...     pl.Series([500.0]),
    ...     pl.Series([400.0]),
    ...     pl.Series([40_050.0]),
    ...     pl.Series([101.0]),
    ...     pl.Series([10.0]),
    ... ).to_list()
    [160.0]
    """
    return (
        execution_cost(side, decision_px, filled_qty, fill_notional)
        + opportunity_cost(side, decision_px, ordered_qty, filled_qty, end_px)
        + to_expr(fees, param_name="fees")
    ).alias("implementation_shortfall")


@metric(data=("cost", "notional"), output="series")
def cost_bps(cost: IntoExpr, notional: IntoExpr) -> pl.Expr:
    """A currency cost in basis points of a notional: ``1e4 x cost / notional``.

    Parameters
    ----------
    cost
        Cost in currency (e.g. :func:`implementation_shortfall`).
    notional
        Reference notional (for implementation shortfall, the decision notional
        ``Q x p_d``).

    Returns
    -------
    pl.Expr
        Row-wise; for a group, pass sums: ``cost_bps(pl.sum("cost"), pl.sum("notional"))``.

    Notes
    -----
    A zero notional gives NaN.

    Examples
    --------
    >>> import polars as pl
    >>> cost_bps(pl.Series([160.0]), pl.Series([50_000.0])).to_list()
    [32.0]
    """
    c = to_expr(cost, param_name="cost")
    n = to_expr(notional, param_name="notional")
    return nan_where(n == 0, c / n * BPS)


@metric(data=("filled_qty", "ordered_qty"))
def fill_rate(filled_qty: IntoExpr = "filled_qty", ordered_qty: IntoExpr = "qty") -> pl.Expr:
    """Quantity fill rate: ``sum(filled quantity) / sum(ordered quantity)``.

    Parameters
    ----------
    filled_qty
        Filled quantity per order (0 for orders without fills).
    ordered_qty
        Ordered quantity per order.

    Returns
    -------
    pl.Expr
        An aggregate in [0, 1], named ``fill_rate``.

    Notes
    -----
    No orders (zero ordered quantity) give NaN. Rejected and cancelled orders count in
    the denominator: they were submitted.

    Examples
    --------
    >>> import polars as pl
    >>> fill_rate(pl.Series([100.0, 0.0, 50.0]), pl.Series([100.0, 100.0, 200.0]))
    0.375
    """
    filled = to_expr(filled_qty, param_name="filled_qty").sum()
    ordered = to_expr(ordered_qty, param_name="ordered_qty").sum()
    return nan_where(ordered == 0, filled / ordered).alias("fill_rate")


@metric(data=("filled_qty", "ordered_qty"))
def order_fill_rate(filled_qty: IntoExpr = "filled_qty", ordered_qty: IntoExpr = "qty") -> pl.Expr:
    """Order-count fill rate: fully filled orders / submitted orders.

    Parameters
    ----------
    filled_qty
        Filled quantity per order.
    ordered_qty
        Ordered quantity per order.

    Returns
    -------
    pl.Expr
        An aggregate in [0, 1], named ``order_fill_rate``.

    Notes
    -----
    An order is fully filled when ``filled_qty >= ordered_qty x (1 - 1e-9)`` (the
    tolerance absorbs float rounding of summed fill quantities). No orders give NaN.

    Examples
    --------
    >>> import polars as pl
    >>> order_fill_rate(pl.Series([100.0, 0.0, 50.0]), pl.Series([100.0, 100.0, 200.0]))
    0.3333333333333333
    """
    full = to_expr(filled_qty, param_name="filled_qty") >= to_expr(
        ordered_qty, param_name="ordered_qty"
    ) * (1.0 - _QTY_RTOL)
    return nan_where(full.count() == 0, full.cast(pl.Float64).mean()).alias("order_fill_rate")


@metric(data=("start", "end"), output="series")
def latency_ms(start: IntoExpr, end: IntoExpr) -> pl.Expr:
    """Elapsed time ``end - start`` in milliseconds (Float64, microsecond resolution).

    Parameters
    ----------
    start, end
        Datetime columns or expressions.

    Returns
    -------
    pl.Expr
        Row-wise, named ``latency_ms``; null where either timestamp is null.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> latency_ms(
    ...     pl.Series([datetime(2024, 1, 1, 14)]), pl.Series([datetime(2024, 1, 1, 14, 0, 1, 2500)])
    ... ).to_list()
    [1002.5]
    """
    delta = to_expr(end, param_name="end") - to_expr(start, param_name="start")
    return (delta.dt.total_microseconds().cast(pl.Float64) / 1000.0).alias("latency_ms")


# =========================================================================== integer keys
#
# Strings are hashed once, vectorised (``Expr.hash``: a few ns a row), instead of in a hash
# table (~100 ns a row); joins and groupings then run on u64 hashes and dense u32 codes, and
# per-order sums are ``np.bincount`` over the order's row number. Every hash shortcut is
# made exact by comparing each row with the row it was matched to; a collision falls back
# to the columns themselves.


_STREAMING_JOIN_ROWS = 100_000


def _key_hash(columns: Sequence[str]) -> pl.Expr:
    cols = list(columns)
    return (pl.col(cols[0]) if len(cols) == 1 else pl.struct(cols)).hash().alias("_h")


def _row_of(left: pl.DataFrame, right: pl.DataFrame, on: list[str]) -> pl.Series | None:
    """Per row of ``left``, the row number in ``right`` with equal ``on`` (null if none).

    None if ``right`` is not unique on ``on`` (the join then adds rows). The streaming
    engine joins large tables about twice as fast, the in-memory one small tables.
    """
    engine: Literal["streaming", "in-memory"] = (
        "streaming" if right.height > _STREAMING_JOIN_ROWS else "in-memory"
    )
    out = (
        left.lazy()
        .select(on)
        .join(
            right.lazy().select(on).with_row_index("_row"),
            on=on,
            how="left",
            maintain_order="left",
            nulls_equal=True,
        )
        .collect(engine=engine)
    )
    return out["_row"] if out.height == left.height else None


def _same_rows(a: pl.DataFrame, b: pl.DataFrame) -> pl.Series:
    """Row-wise equality of two frames with the same columns (nulls equal each other)."""
    return a.select(pl.all_horizontal(pl.col(c).eq_missing(b[c]) for c in a.columns)).to_series()


def _lookup(values: pl.DataFrame, table: pl.DataFrame) -> pl.Series:
    """Row number in ``table`` (unique rows) of each row of ``values``; null where absent."""
    on = values.columns
    row = _row_of(values.select(_key_hash(on)), table.select(_key_hash(on)), ["_h"])
    if row is None:  # two rows of the table share a hash
        exact = _row_of(values, table, on)
        assert exact is not None, "the table must have unique rows"
        return exact
    found = _same_rows(values, table.select(pl.all().gather(row)))
    return pl.select(pl.when(found).then(row)).to_series()


def _codes(keys: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """Dense UInt32 code of each row of ``keys``, and the distinct rows (row ``i`` is code ``i``).

    Codes follow the order of first appearance.
    """
    hashed = keys.select(_key_hash(keys.columns))
    first = hashed.with_row_index("_first").unique("_h", keep="first", maintain_order=True)
    distinct = keys[first["_first"]]
    code = _row_of(hashed, first, ["_h"])
    assert code is not None  # `first` is unique on _h
    if _same_rows(keys, distinct[code]).all():
        return code, distinct
    distinct = keys.unique(maintain_order=True)  # a hash collision: group the columns
    exact = _row_of(keys, distinct, keys.columns)
    assert exact is not None
    return exact, distinct


def _order_sums(
    row: pl.Series, n_orders: int, values: Mapping[str, pl.Series]
) -> dict[str, np.ndarray]:
    """Per order (``row``: each fill's order row, no nulls), the sum of each of ``values``."""
    index = row.to_numpy()
    return {
        k: np.bincount(index, weights=v.to_numpy(), minlength=n_orders) for k, v in values.items()
    }


# =========================================================================== validation


def _collect(frame: Frame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _as(result: pl.DataFrame, lazy: bool) -> Frame:
    return result.lazy() if lazy else result


def _id_list(ids: pl.Series) -> str:
    shown = ", ".join(str(v) for v in ids.head(_MAX_IDS).to_list())
    more = f" ... ({ids.len()} in total)" if ids.len() > _MAX_IDS else ""
    return f"{shown}{more}"


def _fill_totals(orders: pl.DataFrame, fills: pl.DataFrame, row: pl.Series) -> pl.DataFrame:
    """``orders`` + the totals of their fills (``row``: each fill's order row, no nulls).

    ``n_fills``, ``filled_qty``, ``fill_notional``, ``fees`` (0 without fills),
    ``first_fill_ts``, ``last_fill_ts`` (null without fills): one O(n) pass per column.
    """
    n = orders.height
    index = row.to_numpy()
    sums = _order_sums(
        row,
        n,
        fills.select(
            pl.col("qty").alias("filled_qty"),
            (pl.col("qty") * pl.col("px")).alias("fill_notional"),
            pl.col("fee").alias("fees"),
        ).to_dict(),
    )
    count = np.bincount(index, minlength=n)
    ts = fills["ts"].dt.epoch("us").to_numpy()
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, index, ts)
    np.maximum.at(last, index, ts)
    filled = pl.Series(count > 0)
    return orders.with_columns(
        pl.Series("n_fills", count, dtype=pl.UInt32),
        *(pl.Series(k, v, dtype=pl.Float64) for k, v in sums.items()),
        *(
            pl.when(filled).then(pl.Series(t).cast(schemas.TIMESTAMP)).alias(name)
            for name, t in (("first_fill_ts", first), ("last_fill_ts", last))
        ),
    )


_ORDER_CHECKS: dict[str, pl.Expr] = {
    "fills before the order's decision time (ts)": pl.col("first_fill_ts") < pl.col("ts"),
    "filled quantity exceeds the order quantity (overfill)": pl.col("filled_qty")
    > pl.col("qty") * (1.0 + _QTY_RTOL),
}
"""Cross checks on orders with their fill totals."""


def _cross_problems(
    orders: pl.DataFrame, fills: pl.DataFrame, row: pl.Series, totals: pl.DataFrame
) -> list[str]:
    """Fills of unknown orders, fills not matching their order, and the order checks.

    The common (valid) path is one pass of boolean sums per frame; offending ids are looked
    up only when a check fails.
    """
    problems: list[str] = []
    orphan = row.is_null()
    if orphan.any():
        lost = fills.filter(orphan)
        fill_ids, order_ids = lost["fill_id"].sort(), lost["order_id"].unique().sort()
        problems.append(
            f"{fill_ids.len()} fill(s) of order_id(s) absent from orders: fill_id "
            f"{_id_list(fill_ids)} (order_id {_id_list(order_ids)})"
        )
    theirs = orders.select(pl.col("side", "symbol").gather(row))
    mismatch = {
        f"fill {c} differs from the order's {c}": (pl.col(c) != theirs[c]).fill_null(False)
        for c in ("side", "symbol")
    }
    counts = fills.select(m.sum().alias(k) for k, m in mismatch.items()).row(0, named=True)
    for label, n in counts.items():
        if n:
            bad = row.filter(fills.select(mismatch[label]).to_series())
            ids = orders["order_id"].gather(bad.unique()).sort()
            problems.append(f"{label}: {ids.len()} order(s), order_id {_id_list(ids)}")
    counts = totals.select(
        cond.fill_null(False).sum().alias(label) for label, cond in _ORDER_CHECKS.items()
    ).row(0, named=True)
    for label, n in counts.items():
        if n:
            ids = totals.filter(_ORDER_CHECKS[label].fill_null(False))["order_id"].sort()
            problems.append(f"{label}: {ids.len()} order(s), order_id {_id_list(ids)}")
    return problems


@dataclass(frozen=True)
class _Checked:
    """Validated inputs: orders with their fill totals, fills, quotes, and the link."""

    orders: pl.DataFrame
    fills: pl.DataFrame
    quotes: pl.DataFrame | None
    order_row: pl.Series
    """Per fill, the row number of its order in ``orders`` (UInt32)."""


def _checked(orders: Frame, fills: Frame, quotes: Frame | None = None) -> _Checked:
    """Validate ``orders``, ``fills`` (and ``quotes``) together; raise on any problem.

    Inside :func:`obsbench.schemas.validation_memo`, once per pair of frame objects, with
    or without quotes.
    """
    o = schemas.validate(_collect(orders), "orders", allow_extra=True)
    f = schemas.validate(_collect(fills), "fills", allow_extra=True)
    q = None if quotes is None else schemas.validate(_collect(quotes), "quotes", allow_extra=True)
    pair = schemas.memoized(("execution",), (o, f), lambda: _linked(o, f))
    return replace(pair, quotes=q)


def _linked(o: pl.DataFrame, f: pl.DataFrame) -> _Checked:
    """Link validated fills to their orders; raise on fills that do not fit their order."""
    row = _lookup(f.select("order_id"), o.select("order_id"))
    known = row.is_not_null()
    matched = (f, row) if known.all() else (f.filter(known), row.filter(known))
    totals = _fill_totals(o, *matched)
    problems = _cross_problems(o, f, row, totals)
    if problems:
        dataset = "fills"
        raise SchemaError(
            dataset,
            problems,
            hint="every fill must belong to an order in `orders`, with the order's side and "
            "symbol, at or after its ts, and at most its quantity in total.",
        )
    return _Checked(totals, f, None, row)


def _validated(
    orders: Frame, fills: Frame, quotes: Frame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """Validated orders with their fill totals, validated fills (and quotes).

    The orders come back with ``n_fills``, ``filled_qty``, ``fill_notional``, ``fees``
    (0 without fills), ``first_fill_ts`` and ``last_fill_ts`` (null without fills).
    """
    c = _checked(orders, fills, quotes)
    return c.orders, c.fills, c.quotes


def validate_execution(orders: F, fills: Frame, quotes: Frame | None = None) -> F:
    """Validate orders and fills (and quotes) together; return the orders with fill totals.

    Parameters
    ----------
    orders, fills, quotes
        Canonical ``orders``, ``fills`` and (optionally) ``quotes`` frames. Extra columns
        are kept.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``orders`` with canonical dtypes plus ``n_fills``, ``filled_qty``,
        ``fill_notional``, ``fees``, ``first_fill_ts``, ``last_fill_ts`` (0 / null for
        orders without fills); lazy if ``orders`` is lazy.

    Raises
    ------
    SchemaError
        For anything :func:`obsbench.schemas.validate` rejects (sides other than buy/sell,
        zero or negative prices or quantities, nulls, duplicate ids), and for fills of
        unknown orders, fills whose side or symbol differs from their order's, fills
        before the order's ``ts`` and overfilled orders, listing the offending ids.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 1, 2, 14, tzinfo=timezone.utc)
    >>> orders = pl.DataFrame(
    ...     {
    ...         "order_id": ["o1"],
    ...         "ts": [t],
    ...         "strategy": ["s"],
    ...         "symbol": ["AAPL"],
    ...         "side": ["buy"],
    ...         "qty": [100.0],
    ...         "arrival_px": [10.0],
    ...         "limit_px": [None],
    ...         "venue": ["XNAS"],
    ...         "broker": ["ibkr"],
    ...         "status": ["filled"],
    ...     },
    ...     schema_overrides={"limit_px": pl.Float64},
    ... )
    >>> fills = pl.DataFrame(
    ...     {
    ...         "fill_id": ["f1", "f2"],
    ...         "order_id": ["o1", "o9"],
    ...         "ts": [t, t],
    ...         "symbol": ["AAPL", "AAPL"],
    ...         "side": ["buy", "buy"],
    ...         "qty": [150.0, 5.0],
    ...         "px": [10.0, 10.0],
    ...         "fee": [0.0, 0.0],
    ...         "venue": ["XNAS", "XNAS"],
    ...     }
    ... )
    >>> validate_execution(orders, fills)
    Traceback (most recent call last):
    ...
    obsbench.errors.SchemaError: 2 problem(s) in 'fills' data:
      - 1 fill(s) of order_id(s) absent from orders: fill_id f2 (order_id o9)
      - filled quantity exceeds the order quantity (overfill): 1 order(s), order_id o1
    ...
    """
    totals, _, _ = _validated(orders, fills, quotes)
    return _as(totals, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]


# =========================================================================== market prices


_KEY_LIMIT = 2**62  # composite quote keys stay below this (int64)


@dataclass(frozen=True)
class _QuoteBook:
    """Quotes keyed for as-of look-ups by symbol code (the one as-of join of this module).

    Each quote becomes the integer ``code x span + (ts - origin)``, ``code`` being its
    symbol's row in ``symbols``; sorted, the mid in force for a symbol at ``t`` is the last
    key at or before the symbol's key for ``t``: one binary search, no join. Keys that
    would overflow int64 (``symbols x span`` above 2^62: over ~14,000 symbols with ten
    years of microseconds) fall back to polars' ``join_asof`` on the codes.
    """

    symbols: pl.DataFrame
    """The distinct quoted symbols: row ``i`` is code ``i``."""
    origin: int
    """Earliest quote time, microseconds since the epoch."""
    span: int
    """Latest minus earliest quote time, plus 1 (µs)."""
    keys: np.ndarray | None
    """Sorted composite keys, or None (overflow: use ``frame``)."""
    mids: np.ndarray
    """The mid of each key."""
    frame: pl.DataFrame | None
    """``_sym`` (code), ``_t`` (µs), ``mid`` sorted by ``_t``, for the overflow path."""

    @classmethod
    def of(cls, quotes: pl.DataFrame) -> _QuoteBook:
        code, symbols = _codes(quotes.select("symbol"))
        ts = quotes["ts"].dt.epoch("us")
        origin = ts.min() if quotes.height else 0
        span = ts.max() - origin + 1 if quotes.height else 1  # type: ignore[operator]
        mids = quotes["mid"].to_numpy()
        if symbols.height * span >= _KEY_LIMIT:
            frame = pl.DataFrame({"_sym": code, "_t": ts, "mid": mids}).sort("_t")
            return cls(symbols, origin, span, None, mids, frame)  # type: ignore[arg-type]
        keys = code.cast(pl.Int64).to_numpy() * span + (ts.to_numpy() - origin)
        if not np.all(keys[1:] >= keys[:-1]):  # not symbol-major and time-ordered already
            order = np.argsort(keys, kind="stable")
            keys, mids = keys[order], mids[order]
        return cls(symbols, origin, span, keys, mids, None)  # type: ignore[arg-type]

    @property
    def last_ts(self) -> pl.Series:
        """The latest quote time (one value)."""
        return pl.Series([self.origin + self.span - 1]).cast(schemas.TIMESTAMP)

    def mid_at(self, code: pl.Series, ts: pl.Series) -> pl.Series:
        """The mid in force for symbol ``code`` (null: not quoted) at ``ts``; null if none."""
        t = ts.dt.epoch("us")
        if self.keys is None:
            assert self.frame is not None
            return (
                pl.DataFrame({"_sym": code, "_t": t})
                .with_row_index("_row")
                .lazy()
                .sort("_t")
                .join_asof(self.frame.lazy(), on="_t", by="_sym", check_sortedness=False)
                .sort("_row")
                .collect()["mid"]
            )
        c = code.cast(pl.Int64).fill_null(-1).to_numpy()
        off = t.fill_null(-1).to_numpy() - self.origin
        key = c * self.span + np.minimum(off, self.span - 1)
        # search symbol by symbol, each in its own quotes only (a shallower search that
        # stays in cache); a stable argsort of 16-bit codes is a radix sort
        small = self.symbols.height < 2**16 - 1
        by_symbol = np.argsort((c + 1).astype(np.uint16) if small else c, kind="stable")
        starts = np.arange(-1, self.symbols.height + 1)
        quotes_at = np.searchsorted(self.keys, np.maximum(starts, 0) * self.span)
        needles_at = np.searchsorted(c[by_symbol], starts)
        found = np.empty(len(key), np.int64)
        for s in range(len(starts) - 1):
            lo, hi, first, last = *quotes_at[s : s + 2], *needles_at[s : s + 2]
            found[first:last] = (
                lo - 1 + np.searchsorted(self.keys[lo:hi], key[by_symbol[first:last]], side="right")
            )
        pos = np.empty(len(key), np.int64)
        pos[by_symbol] = found
        hit = (c >= 0) & (off >= 0) & (pos >= 0)
        pos[~hit] = 0
        if len(self.keys):
            hit &= self.keys[pos] // self.span == c
        mid = self.mids[pos] if len(self.keys) else np.zeros(len(key))
        return pl.select(pl.when(pl.Series(hit)).then(pl.Series(mid))).to_series()


def _asof_ready(frame: pl.DataFrame | pl.LazyFrame, ts: str, key: str) -> pl.LazyFrame:
    """``frame`` ordered as ``join_asof(by=key)`` needs: by ``ts`` within each ``key``.

    Sorting is skipped when an eager frame already is in such an order: globally by time
    (time-major quotes, as the simulator and most feeds write them) or key by key, each
    key in one contiguous, time-sorted run (a per-symbol file layout). Both checks are
    single O(n) passes over numeric columns, much cheaper than the sort they avoid.
    """
    if isinstance(frame, pl.DataFrame) and frame.height:
        if frame[ts].is_sorted():
            return frame.lazy().set_sorted(ts)
        k = pl.col(key)
        new_run = k != k.shift()
        ordered = frame.select(
            (new_run | (pl.col(ts).diff() >= pl.duration(microseconds=0))).all().alias("a"),
            (new_run.sum() + 1 == k.n_unique()).alias("b"),
        ).row(0)
        if all(ordered):
            return frame.lazy()
    return frame.lazy().sort(ts)


def mid_at(frame: F, quotes: Frame, *, at: str = "ts", name: str = "mid") -> F:
    """Add the mid in force at each row's time: the latest quote at or before it.

    The one as-of join every benchmark uses (fill-time mid, mid at the end of the horizon,
    marks).

    Parameters
    ----------
    frame
        Rows with ``symbol`` and a datetime column ``at``.
    quotes
        Canonical quotes (``symbol``, ``ts``, ``mid``); need not be sorted.
    at
        The time column of ``frame``.
    name
        Name of the added column.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``frame`` plus ``name``; null where the symbol has no quote at or before the time
        (a mid is never taken from the future). An eager frame keeps its row order; a
        lazy one comes back sorted by ``at``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> q = pl.DataFrame(
    ...     {
    ...         "symbol": ["A", "A"],
    ...         "ts": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 11)],
    ...         "mid": [10.0, 11.0],
    ...     }
    ... )
    >>> f = pl.DataFrame(
    ...     {
    ...         "symbol": ["A", "A", "A"],
    ...         "ts": [
    ...             datetime(2024, 1, 1, 9),
    ...             datetime(2024, 1, 1, 10, 30),
    ...             datetime(2024, 1, 1, 11),
    ...         ],
    ...     }
    ... )
    >>> mid_at(f, q)["mid"].to_list()
    [None, 10.0, 11.0]
    """
    if isinstance(frame, pl.LazyFrame):
        # join on a u64 hash of the symbol (4x faster than a string key), unless two of
        # the quoted symbols collide, which is checked on the distinct symbols only
        symbols = quotes.lazy().select(pl.col("symbol").unique())
        distinct = symbols.select(pl.len(), pl.col("symbol").hash().n_unique()).collect().row(0)
        key = pl.col("symbol").hash() if distinct[0] == distinct[1] else pl.col("symbol")
        q = quotes.select(key.alias("_sym"), pl.col("ts").alias(at), pl.col("mid").alias(name))
        return (  # type: ignore[return-value]
            frame.with_columns(key.alias("_sym"))
            .sort(at)
            .join_asof(
                _asof_ready(q, at, "_sym"),
                on=at,
                by="_sym",
                strategy="backward",
                check_sortedness=False,
            )
            .drop("_sym")
        )
    book = _QuoteBook.of(_collect(quotes).select("symbol", "ts", "mid"))
    code = _lookup(frame.select("symbol"), book.symbols)
    return frame.with_columns(book.mid_at(code, frame[at]).alias(name))  # type: ignore[return-value]


def _last_mid() -> pl.Expr:
    """The mid of the latest quote (an O(n) arg-max, no sort)."""
    return pl.col("mid").get(pl.col("ts").arg_max())


def _market(orders: pl.DataFrame, quotes: pl.DataFrame) -> tuple[_QuoteBook, pl.Series]:
    """The quote book, and each order's symbol code in it (null: symbol not quoted)."""
    book = _QuoteBook.of(quotes)
    return book, _lookup(orders.select("symbol"), book.symbols)


def _end_px(book: _QuoteBook, code: pl.Series, end: datetime | None) -> pl.Series:
    """Each order's ``end_px``: its symbol's mid at ``end`` (default: its last quote)."""
    at = book.last_ts if end is None else pl.Series([end]).cast(schemas.TIMESTAMP)
    symbols = book.symbols.height
    ts = pl.select(pl.repeat(at[0], symbols, dtype=schemas.TIMESTAMP)).to_series()
    per_symbol = book.mid_at(pl.int_range(symbols, eager=True, dtype=pl.UInt32), ts)
    return per_symbol.gather(code).alias("end_px")


def interval_vwap(
    intervals: F,
    trades: Frame,
    *,
    start: str = "start",
    end: str = "end",
    price: str = "px",
    volume: str = "qty",
) -> F:
    """Volume-weighted average price of the trades in ``[start, end]`` of each interval.

    Parameters
    ----------
    intervals
        Rows with ``symbol`` and datetime columns ``start`` and ``end`` (e.g. an order's
        decision time and last fill time).
    trades
        Trade prints with ``symbol``, ``ts``, ``price`` and ``volume`` columns: exchange
        prints when you have them, else the platform's own fills (all orders, all
        strategies), which is what :func:`fill_slippage` uses.
    start, end, price, volume
        Column names.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``intervals`` plus ``vwap``; null for an interval without trades.

    Notes
    -----
    ``vwap = sum(v_j p_j) / sum(v_j)`` over the trades ``j`` of the symbol with
    ``start <= ts_j <= end`` (both ends inclusive). Computed with per-symbol cumulative
    sums and two as-of joins, so the cost is ``O((n_trades + n_intervals) log n)``
    whatever the interval lengths.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> t = [datetime(2024, 1, 1, 10, m) for m in range(4)]
    >>> trades = pl.DataFrame(
    ...     {
    ...         "symbol": ["A"] * 4,
    ...         "ts": t,
    ...         "px": [10.0, 11.0, 12.0, 13.0],
    ...         "qty": [1.0, 1.0, 2.0, 100.0],
    ...     }
    ... )
    >>> iv = pl.DataFrame({"symbol": ["A"], "start": [t[1]], "end": [t[2]]})
    >>> interval_vwap(iv, trades)["vwap"].round(9).to_list()
    [11.666666667]
    """
    lazy = isinstance(intervals, pl.LazyFrame)
    cum = (
        trades.lazy()
        .group_by("symbol", "ts")
        .agg((pl.col(price) * pl.col(volume)).sum().alias("_pv"), pl.col(volume).sum().alias("_v"))
        .sort("symbol", "ts")
        .with_columns(
            pl.col("_pv").cum_sum().over("symbol").alias("_cpv"),
            pl.col("_v").cum_sum().over("symbol").alias("_cv"),
        )
        .select("symbol", "ts", "_cpv", "_cv")
        .sort("ts")
    )
    base = intervals.lazy().with_row_index("_row")
    at_end = base.sort(end).join_asof(
        cum.rename({"ts": end}), on=end, by="symbol", strategy="backward", check_sortedness=False
    )
    before_start = (
        base.select("_row", "symbol", start)
        .sort(start)
        .join_asof(
            cum.rename({"ts": start, "_cpv": "_cpv0", "_cv": "_cv0"}),
            on=start,
            by="symbol",
            strategy="backward",
            check_sortedness=False,
            allow_exact_matches=False,
        )
        .select("_row", "_cpv0", "_cv0")
    )
    volume_in = pl.col("_cv") - pl.col("_cv0").fill_null(0.0)
    out = (
        at_end.join(before_start, on="_row", how="left")
        .with_columns(
            pl.when(volume_in > 0)
            .then((pl.col("_cpv") - pl.col("_cpv0").fill_null(0.0)) / volume_in)
            .alias("vwap")
        )
        .sort("_row")
        .drop("_row", "_cpv", "_cv", "_cpv0", "_cv0")
    )
    return out if lazy else out.collect()  # type: ignore[return-value]


def interval_twap(intervals: F, quotes: Frame, *, start: str = "start", end: str = "end") -> F:
    """Time-weighted average mid over ``[start, end]`` of each interval.

    Parameters
    ----------
    intervals
        Rows with ``symbol``, ``start`` and ``end`` datetimes.
    quotes
        Canonical quotes; a quote's mid is in force until the symbol's next quote.
    start, end
        Column names.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``intervals`` plus ``twap``: ``(1 / (end - start)) x integral of mid(t) dt`` over
        the interval, with ``mid(t)`` the step function of :func:`mid_at`. An interval of
        zero length gives the mid at ``start``; null where no quote precedes ``start``.

    Notes
    -----
    With per-symbol cumulative areas ``C_k = sum_{j<k} mid_j (t_{j+1} - t_j)``, the area up
    to ``t`` is ``A(t) = C_k + mid_k (t - t_k)`` for the last quote ``k`` at or before
    ``t``, and ``twap = (A(end) - A(start)) / (end - start)``: two as-of joins, no
    per-interval scan. Areas accumulate in float64 price x microseconds, which keeps
    ~1e-6 relative precision over months of quotes.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> q = pl.DataFrame(
    ...     {
    ...         "symbol": ["A", "A"],
    ...         "ts": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 1)],
    ...         "mid": [10.0, 13.0],
    ...     }
    ... )
    >>> iv = pl.DataFrame(
    ...     {
    ...         "symbol": ["A"],
    ...         "start": [datetime(2024, 1, 1, 10)],
    ...         "end": [datetime(2024, 1, 1, 10, 2)],
    ...     }
    ... )
    >>> interval_twap(iv, q)["twap"].to_list()
    [11.5]
    """
    lazy = isinstance(intervals, pl.LazyFrame)
    us = pl.col("ts").dt.epoch("us").cast(pl.Float64)
    area = (
        quotes.lazy()
        .select("symbol", "ts", "mid")
        .sort("symbol", "ts")
        .with_columns(
            (pl.col("mid") * (us.shift(-1) - us).fill_null(0.0))
            .cum_sum()
            .shift(1, fill_value=0.0)
            .over("symbol")
            .alias("_c"),
            us.alias("_t"),
        )
        .select("symbol", "ts", "mid", "_c", "_t")
        .sort("ts")
    )

    def area_at(col: str, suffix: str) -> pl.Expr:
        t = pl.col(col).dt.epoch("us").cast(pl.Float64)
        return (pl.col(f"_c{suffix}") + pl.col(f"mid{suffix}") * (t - pl.col(f"_t{suffix}"))).alias(
            f"_a{suffix}"
        )

    base = intervals.lazy().with_row_index("_row")
    at_start = base.sort(start).join_asof(
        area.rename({"ts": start, "mid": "mid0", "_c": "_c0", "_t": "_t0"}),
        on=start,
        by="symbol",
        strategy="backward",
        check_sortedness=False,
    )
    at_end = (
        base.select("_row", "symbol", end)
        .sort(end)
        .join_asof(
            area.rename({"ts": end, "mid": "mid1", "_c": "_c1", "_t": "_t1"}),
            on=end,
            by="symbol",
            strategy="backward",
            check_sortedness=False,
        )
        .select("_row", "mid1", "_c1", "_t1", pl.col(end).alias("_end"))
    )
    span = (pl.col("_end") - pl.col(start)).dt.total_microseconds().cast(pl.Float64)
    out = (
        at_start.join(at_end, on="_row", how="left")
        .with_columns(area_at(start, "0"), area_at("_end", "1"))
        .with_columns(
            pl.when(pl.col("mid0").is_null())
            .then(None)
            .when(span == 0)
            .then(pl.col("mid0"))
            .otherwise((pl.col("_a1") - pl.col("_a0")) / span)
            .alias("twap")
        )
        .sort("_row")
        .drop("_row", "mid0", "_c0", "_t0", "mid1", "_c1", "_t1", "_end", "_a0", "_a1")
    )
    return out if lazy else out.collect()  # type: ignore[return-value]


# =========================================================================== frame level


def _order_level(totals: pl.DataFrame, end_px: pl.Series | None) -> pl.LazyFrame:
    """One row per order: order columns, fill totals and (with ``end_px``) cost columns."""
    lf = totals.lazy()
    avg_px = pl.when(pl.col("filled_qty") > 0).then(pl.col("fill_notional") / pl.col("filled_qty"))
    lf = lf.with_columns(
        avg_px.alias("avg_px"),
        (pl.col("qty") * pl.col("arrival_px")).alias("decision_notional"),
        execution_cost(),
    ).with_columns(slippage_bps("side", "arrival_px", "avg_px"))
    if end_px is None:
        return lf
    return (
        lf.with_columns(end_px)
        .with_columns(opportunity_cost(), implementation_shortfall())
        .with_columns(
            cost_bps("implementation_shortfall", "decision_notional").alias(
                "implementation_shortfall_bps"
            )
        )
    )


def order_executions(
    orders: F, fills: Frame, quotes: Frame | None = None, *, end: datetime | None = None
) -> F:
    """One row per order: fill totals, slippage vs arrival and implementation shortfall.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` and ``fills``.
    quotes
        Canonical ``quotes``; needed for the opportunity cost and implementation
        shortfall columns (they are omitted without quotes).
    end
        End of the evaluation horizon: unfilled quantity is valued at each symbol's mid at
        ``end`` (:func:`mid_at`). Default: each symbol's last quote.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        The order columns plus ``n_fills``, ``filled_qty``, ``fill_notional``, ``fees``,
        ``first_fill_ts``, ``last_fill_ts``, ``avg_px`` (null without fills),
        ``decision_notional`` (``qty x arrival_px``), ``execution_cost``,
        ``slippage_bps`` (of ``avg_px`` vs ``arrival_px``, equal to the quantity-weighted
        slippage of the fills) and, with quotes, ``end_px``, ``opportunity_cost``,
        ``implementation_shortfall`` and ``implementation_shortfall_bps`` (of the decision
        notional). Lazy if ``orders`` is lazy.

    Raises
    ------
    SchemaError
        As :func:`validate_execution`.
    """
    totals, _, q = _validated(orders, fills, quotes)
    end_px = None if q is None else _end_px(*_market(totals, q), end)
    out = _order_level(totals, end_px).collect()
    return _as(out, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]


def fill_slippage(
    orders: F,
    fills: Frame,
    quotes: Frame | None = None,
    *,
    benchmark: Benchmark = "arrival",
    trades: Frame | None = None,
) -> F:
    """Per-fill slippage against a benchmark price, with the order's group columns.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` and ``fills``.
    quotes
        Canonical ``quotes``; required for ``"fill_mid"`` and ``"interval_twap"``.
    benchmark
        ``"arrival"``: the order's ``arrival_px`` (mid at arrival; the default).
        ``"fill_mid"``: the mid in force at the fill's ``ts`` (:func:`mid_at`).
        ``"interval_vwap"``: the VWAP of ``trades`` over the order's life, from its ``ts``
        to its last fill, both inclusive (:func:`interval_vwap`). Without ``trades``, the
        prints are the fills themselves across *all* orders of the symbol, so the
        benchmark includes the order's own fills (a single order alone in its symbol has
        slippage 0 by construction).
        ``"interval_twap"``: the time-weighted mid of ``quotes`` over the same interval
        (:func:`interval_twap`), the market benchmark when no trade prints exist.
    trades
        Trade prints (``symbol``, ``ts``, ``px``, ``qty``) for ``"interval_vwap"``.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        The fill columns plus the order's ``strategy``, ``venue`` (as ``order_venue``),
        ``broker``, ``arrival_px``, ``benchmark_px`` and ``slippage_bps``, in fill ``ts``
        order. Lazy if ``orders`` is lazy.

    Raises
    ------
    SchemaError
        As :func:`validate_execution`.
    InvalidParameter
        For an unknown benchmark, or one that needs quotes without them.
    """
    ensure_choice(benchmark, BENCHMARKS, param_name="benchmark")
    if quotes is None and benchmark in ("fill_mid", "interval_twap"):
        msg = f"benchmark={benchmark!r} needs quotes"
        raise InvalidParameter(msg, hint="pass quotes=..., or use benchmark='arrival'.")
    o, f, q = _validated(orders, fills, quotes)
    order_cols = o.select(
        "order_id",
        pl.col("ts").alias("order_ts"),
        "strategy",
        pl.col("venue").alias("order_venue"),
        "broker",
        "arrival_px",
    )
    lf = f.lazy().join(order_cols.lazy(), on="order_id", how="left")
    if benchmark == "arrival":
        lf = lf.with_columns(pl.col("arrival_px").alias("benchmark_px"))
    elif benchmark == "fill_mid":
        assert q is not None
        lf = mid_at(lf, q.lazy(), name="benchmark_px")
    else:
        life = (
            o.lazy()
            .filter(pl.col("n_fills") > 0)
            .select(
                "order_id",
                "symbol",
                pl.col("ts").alias("start"),
                pl.col("last_fill_ts").alias("end"),
            )
        )
        if benchmark == "interval_vwap":
            prints = f.lazy() if trades is None else trades.lazy()
            bench = interval_vwap(life, prints).rename({"vwap": "benchmark_px"})
        else:
            assert q is not None
            bench = interval_twap(life, q.lazy()).rename({"twap": "benchmark_px"})
        lf = lf.join(bench.select("order_id", "benchmark_px"), on="order_id", how="left")
    out = lf.with_columns(slippage_bps("side", "benchmark_px", "px")).sort("ts").collect()
    return _as(out, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]


def slippage(
    orders: F,
    fills: Frame,
    quotes: Frame | None = None,
    *,
    benchmark: Benchmark = "arrival",
    by: Sequence[str] = ("order_id",),
    trades: Frame | None = None,
) -> F:
    """Quantity-weighted slippage per order (default) or per any group of fill columns.

    Parameters
    ----------
    orders, fills, quotes, benchmark, trades
        As in :func:`fill_slippage`.
    by
        Group columns of :func:`fill_slippage`'s output: ``order_id``, ``strategy``,
        ``symbol``, ``order_venue``, ``venue`` (the fill's), ``broker``, ``side``...

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group, sorted by it: ``fills``, ``filled_qty``, ``fill_notional``,
        ``fees`` and ``slippage_bps = weighted_mean(slippage_bps, qty)``.

    Examples
    --------
    See ``docs/metrics/execution.md``; hand-computed cases in
    ``tests/unit/metrics/test_execution.py``.
    """
    per_fill = fill_slippage(orders, fills, quotes, benchmark=benchmark, trades=trades)
    keys = list(by)
    out = (
        per_fill.lazy()
        .group_by(keys)
        .agg(
            pl.len().alias("fills"),
            pl.col("qty").sum().alias("filled_qty"),
            (pl.col("qty") * pl.col("px")).sum().alias("fill_notional"),
            pl.col("fee").sum().alias("fees"),
            weighted_mean("slippage_bps", "qty").alias("slippage_bps"),
        )
        .sort(keys)
    )
    return out if isinstance(orders, pl.LazyFrame) else out.collect()  # type: ignore[return-value]


def _fill_rate_aggs() -> list[pl.Expr]:
    return [
        pl.len().alias("orders"),
        (pl.col("filled_qty") >= pl.col("qty") * (1.0 - _QTY_RTOL)).sum().alias("filled_orders"),
        pl.col("n_fills").sum().alias("fills"),
        pl.col("qty").sum().alias("ordered_qty"),
        pl.col("filled_qty").sum(),
        fill_rate(),
        order_fill_rate(),
    ]


def fill_rates(orders: F, fills: Frame, *, by: Sequence[str] = ("strategy",)) -> F:
    """Quantity and order-count fill rates by any grouping of order columns.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` and ``fills``.
    by
        Order columns: any of ``strategy``, ``symbol``, ``venue``, ``broker``, ``side``,
        ``status``... (empty: one row for everything).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group, sorted: ``orders``, ``filled_orders`` (fully filled),
        ``fills``, ``ordered_qty``, ``filled_qty``, ``fill_rate`` (:func:`fill_rate`) and
        ``order_fill_rate`` (:func:`order_fill_rate`).

    Raises
    ------
    SchemaError
        As :func:`validate_execution`.
    """
    o, _, _ = _validated(orders, fills)
    lf = o.lazy()
    keys = list(by)
    out = (
        lf.group_by(keys).agg(_fill_rate_aggs()).sort(keys)
        if keys
        else lf.select(_fill_rate_aggs())
    ).collect()
    return _as(out, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]


_STAGES: dict[str, tuple[str, str]] = {
    "market_data_to_decision": ("market_data_ts", "ts"),
    "decision_to_ack": ("ts", "ack_ts"),
    "ack_to_first_fill": ("ack_ts", "first_fill_ts"),
    "decision_to_first_fill": ("ts", "first_fill_ts"),
    "first_to_last_fill": ("first_fill_ts", "last_fill_ts"),
    "decision_to_last_fill": ("ts", "last_fill_ts"),
    "market_data_to_first_fill": ("market_data_ts", "first_fill_ts"),
}


def order_timestamps_from_spans(
    spans: F,
    *,
    ack_service: str = "broker-gateway",
    attribute: str = "order.id",
) -> F:
    """Per order, the market-data time and the broker ack time, read from its trace.

    Parameters
    ----------
    spans
        Canonical ``spans`` whose ``attributes`` JSON names the order (``attribute``), as
        the simulator's order-flow traces do (market-data -> signal -> risk-check ->
        order-router -> broker-gateway).
    ack_service
        The service whose span ends when the broker acknowledges the order.
    attribute
        The attribute key holding the order id.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``order_id``, ``market_data_ts`` (earliest span start of the order's traces, i.e.
        the market-data snapshot that triggered it) and ``ts`` (latest end of an
        ``ack_service`` span; null if the trace has none): the ``acks`` of
        :func:`execution_latency`.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timezone
    >>> t = [datetime(2024, 1, 2, 14, 0, 0, us, tzinfo=timezone.utc) for us in (0, 900, 5000)]
    >>> spans = pl.DataFrame(
    ...     {
    ...         "trace_id": ["t", "t"],
    ...         "span_id": ["a", "b"],
    ...         "parent_span_id": [None, "a"],
    ...         "service": ["market-data", "broker-gateway"],
    ...         "name": ["GET", "POST"],
    ...         "start": [t[0], t[1]],
    ...         "end": [t[2], t[2]],
    ...         "status": ["ok", "ok"],
    ...         "attributes": ['{"order.id":"o1"}', '{"order.id":"o1"}'],
    ...     }
    ... )
    >>> order_timestamps_from_spans(spans).rows()[0][0]
    'o1'
    """
    s = schemas.validate(_collect(spans), "spans", allow_extra=True)
    out = (
        s.lazy()
        .with_columns(
            pl.col("attributes").str.json_path_match(f"$['{attribute}']").alias("order_id")
        )
        .drop_nulls("order_id")
        .group_by("order_id")
        .agg(
            pl.col("start").min().alias("market_data_ts"),
            pl.col("end").filter(pl.col("service") == ack_service).max().alias("ts"),
        )
        .sort("order_id")
        .collect()
    )
    return _as(out, isinstance(spans, pl.LazyFrame))  # type: ignore[return-value]


def execution_latency(
    orders: F,
    fills: Frame,
    *,
    acks: Frame | None = None,
    by: Sequence[str] = ("strategy",),
    quantiles: Sequence[float] = LATENCY_QUANTILES,
) -> F:
    """Latency percentiles of market data -> decision -> ack -> first fill -> last fill.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` (``ts`` is the decision time) and ``fills``.
    acks
        Optional ``order_id``, ``ts`` of the broker acknowledgements, and optionally
        ``market_data_ts``: :func:`order_timestamps_from_spans` reads both from traces (a
        FIX execution-report log works as well). Without acks the ack and market-data
        stages are omitted.
    by
        Order columns to group by (``strategy``, ``symbol``, ``venue``, ``broker``...).
    quantiles
        Percentile levels (default p50, p95, p99).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        Long format, one row per group and ``stage``, in path order:
        ``market_data_to_decision``, ``decision_to_ack``, ``ack_to_first_fill``,
        ``decision_to_first_fill``, ``first_to_last_fill``, ``decision_to_last_fill``,
        ``market_data_to_first_fill`` (tick to trade); columns ``orders`` (orders having
        both timestamps), ``p50_ms``, ``p95_ms``, ``p99_ms``. Orders without fills do not
        enter the fill stages.

    Notes
    -----
    Each order contributes one duration per stage, ``latency_ms(start, end)``; the
    percentiles interpolate linearly
    (:func:`~obsbench.metrics.sla.latency_percentile`). An order with one fill has
    ``first_to_last_fill = 0``.

    Raises
    ------
    SchemaError
        As :func:`validate_execution`, and if ``acks`` name unknown orders.
    """
    o, _, _ = _validated(orders, fills)
    lf = o.lazy()
    available = {"ts", "first_fill_ts", "last_fill_ts"}
    if acks is not None:
        check_columns(acks, ("order_id", "ts"), dataset="acks", temporal=("ts",))
        a = _collect(acks)
        unknown = a.join(o.select("order_id"), on="order_id", how="anti")["order_id"]
        if unknown.len():
            dataset = "acks"
            raise SchemaError(dataset, [f"acks of unknown order_id(s): {_id_list(unknown)}"])
        extra = ["market_data_ts"] if "market_data_ts" in a.columns else []
        per_order = (
            a.lazy()
            .group_by("order_id")
            .agg(pl.col("ts").min().alias("ack_ts"), *(pl.col(c).min() for c in extra))
        )
        lf = lf.join(per_order, on="order_id", how="left")
        available |= {"ack_ts", *extra}
    stages = {k: v for k, v in _STAGES.items() if set(v) <= available}
    keys = list(by)
    long = pl.concat(
        [
            lf.select(*keys, pl.lit(stage).alias("stage"), latency_ms(s, e))
            for stage, (s, e) in stages.items()
        ]
    ).drop_nulls("latency_ms")
    aggs = [
        pl.len().alias("orders"),
        *(latency_percentile("latency_ms", q=q).alias(f"{quantile_name(q)}_ms") for q in quantiles),
    ]
    order = pl.col("stage").replace_strict(list(_STAGES), range(len(_STAGES)))
    out = long.group_by([*keys, "stage"]).agg(aggs).sort([*keys, order]).collect()
    return _as(out, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]


def span_latency(
    spans: F,
    *,
    start: str,
    end: str,
    by: Sequence[str] = (),
    quantiles: Sequence[float] = LATENCY_QUANTILES,
) -> F:
    """Latency percentiles of a path through a trace: start of ``start`` -> end of ``end``.

    Parameters
    ----------
    spans
        Canonical ``spans``.
    start, end
        Service names: per trace, the path runs from the earliest ``start`` of a span of
        service ``start`` to the latest ``end`` of a span of service ``end`` (e.g.
        ``start="market-data", end="broker-gateway"`` for market data to order ack).
    by
        Extra grouping columns present on the spans (e.g. none, or ``status``), taken from
        the ``start`` spans.
    quantiles
        Percentile levels (default p50, p95, p99).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group: ``traces`` (traces containing both services) and ``p50_ms``,
        ``p95_ms``, ``p99_ms`` of ``latency_ms(start, end)``.

    Raises
    ------
    SchemaError
        As :func:`obsbench.schemas.validate` for ``spans``.
    """
    s = schemas.validate(_collect(spans), "spans", allow_extra=True).lazy()
    keys = list(by)
    first = (
        s.filter(pl.col("service") == start)
        .group_by("trace_id")
        .agg(pl.col("start").min().alias("_t0"), *(pl.col(k).first() for k in keys))
    )
    last = (
        s.filter(pl.col("service") == end)
        .group_by("trace_id")
        .agg(pl.col("end").max().alias("_t1"))
    )
    paths = first.join(last, on="trace_id", how="inner").with_columns(latency_ms("_t0", "_t1"))
    aggs = [
        pl.len().alias("traces"),
        *(latency_percentile("latency_ms", q=q).alias(f"{quantile_name(q)}_ms") for q in quantiles),
    ]
    out = (paths.group_by(keys).agg(aggs).sort(keys) if keys else paths.select(aggs)).collect()
    return _as(out, isinstance(spans, pl.LazyFrame))  # type: ignore[return-value]


def _sorted_within_groups(frame: pl.DataFrame, group: pl.Series, rank: pl.Series) -> pl.DataFrame:
    """``frame`` + ``_g`` (``group``), sorted by group, then by the integers ``rank``.

    Null ranks go last. Exact quantiles sort each group's values: on input already in
    order that sort is a linear pass. One int64 key ``group x width + rank`` sorts faster
    than two columns, when it fits.
    """
    out = frame.with_columns(group.alias("_g"))
    lo, hi = rank.min(), rank.max()
    width = 1 if lo is None else int(hi) - int(lo) + 2  # type: ignore[arg-type]
    if out.is_empty() or (int(group.max()) + 1) * width >= _KEY_LIMIT:  # type: ignore[arg-type]
        return (
            out.with_columns(rank.alias("_rank")).sort("_g", "_rank", nulls_last=True).drop("_rank")
        )
    key = (
        group.cast(pl.Int64).to_numpy() * width + (rank - (lo or 0)).fill_null(width - 1).to_numpy()
    )
    return out[np.argsort(key)]


def execution_summary(
    orders: F,
    fills: Frame,
    quotes: Frame,
    *,
    by: Sequence[str] = DEFAULT_GROUP,
    end: datetime | None = None,
    quantiles: Sequence[float] = LATENCY_QUANTILES,
) -> F:
    """Execution quality per (strategy, symbol, venue): fills, costs and latency.

    Parameters
    ----------
    orders, fills, quotes
        Canonical ``orders``, ``fills`` and ``quotes``.
    by
        Order columns keying the rows (default ``strategy``, ``symbol``, ``venue``).
    end
        End of the implementation-shortfall horizon (as :func:`order_executions`).
    quantiles
        Percentile levels of the decision -> first fill latency.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group, sorted by it:

        - ``orders``, ``filled_orders``, ``fills``, ``ordered_qty``, ``filled_qty``,
          ``fill_rate``, ``order_fill_rate`` (as :func:`fill_rates`);
        - ``fill_notional``, ``fees``;
        - ``slippage_bps`` vs arrival mid and ``slippage_mid_bps`` vs the mid at fill
          time, both quantity-weighted over the group's fills (:func:`weighted_mean`);
        - ``execution_cost``, ``opportunity_cost``, ``implementation_shortfall`` (sums,
          currency) and ``implementation_shortfall_bps`` (of the group's decision
          notional);
        - ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``: decision -> first
          fill over the group's filled orders.

    Notes
    -----
    A composition of the expressions of this module over :func:`order_executions`; every
    output row depends only on its group's orders and fills (and its symbol's quotes), so
    the function runs unchanged per group on a distributed engine (DESIGN §9).

    Raises
    ------
    SchemaError
        As :func:`validate_execution`, and for quotes failing their schema.
    """
    c = _checked(orders, fills, quotes)
    assert c.quotes is not None
    book, code = _market(c.orders, c.quotes)
    # fill-mid slippage per order: the fill's mid from its order's symbol code (a fill's
    # symbol is its order's), the weighted-mean sums per order in one O(n) pass
    terms = _weighted_terms(slippage_bps("side", "mid", "px"), "qty")
    fill_terms = c.fills.select("side", "px", "qty").with_columns(
        book.mid_at(code.gather(c.order_row), c.fills["ts"]).alias("mid")
    )
    sums = _order_sums(
        c.order_row,
        c.orders.height,
        fill_terms.select(terms[0].alias("num"), terms[1].alias("den")).to_dict(),
    )
    mid_slip = pl.when(pl.col("n_fills") > 0).then(
        _weighted_ratio(pl.lit(pl.Series(sums["num"])), pl.lit(pl.Series(sums["den"])))
    )
    per_order = (
        _order_level(c.orders, _end_px(book, code, end))
        .with_columns(mid_slip.alias("slippage_mid_bps"))
        .collect()
    )
    keys = list(by)
    group, groups = _codes(per_order.select(keys))
    aggs = [
        *_fill_rate_aggs(),
        pl.col("fill_notional").sum(),
        pl.col("fees").sum(),
        weighted_mean("slippage_bps", "filled_qty").alias("slippage_bps"),
        weighted_mean("slippage_mid_bps", "filled_qty").alias("slippage_mid_bps"),
        pl.col("execution_cost").sum(),
        pl.col("opportunity_cost").sum(),
        pl.col("implementation_shortfall").sum(),
        cost_bps(pl.col("implementation_shortfall").sum(), pl.col("decision_notional").sum()).alias(
            "implementation_shortfall_bps"
        ),
    ]
    totals = (
        per_order.lazy()
        .with_columns(group.alias("_g"))
        .group_by("_g")
        .agg(aggs)
        .collect(engine="streaming")
    )
    latency = per_order.select(
        latency_ms("ts", "first_fill_ts"),
        (pl.col("first_fill_ts") - pl.col("ts")).dt.total_microseconds().alias("us"),
    )
    percentiles = (
        _sorted_within_groups(latency.select("latency_ms"), group, latency["us"])
        .lazy()
        .group_by("_g")
        .agg(
            latency_percentile("latency_ms", q=level).alias(f"latency_{quantile_name(level)}_ms")
            for level in quantiles
        )
        .collect(engine="streaming")
    )
    out = (
        groups.with_row_index("_g")
        .join(totals, on="_g")
        .join(percentiles, on="_g")
        .drop("_g")
        .sort(keys)
    )
    return _as(out, isinstance(orders, pl.LazyFrame))  # type: ignore[return-value]
