"""Mark-to-market P&L and its attribution: position, trading and fees.

Daily P&L of each (strategy, symbol) is split into three parts that add up to the change
in mark-to-market value, which :func:`pnl_attribution` computes independently as
``total_pnl`` so that the split can be checked (``tests/unit/metrics/test_pnl.py`` asserts
``position_pnl + trading_pnl + fee_pnl == total_pnl`` on simulator data).

With ``c_d`` the close mark of day ``d``, ``pos_d`` the position at the end of day ``d``
and fills ``i`` of day ``d`` (side sign ``s_i``, quantity ``q_i``, price ``p_i``, fee
``f_i``):

- ``position_pnl_d = pos_{d-1} x (c_d - c_{d-1})``: what yesterday's book earned;
- ``trading_pnl_d = sum_i s_i q_i (c_d - p_i)``: today's fills against today's close;
- ``fee_pnl_d = -sum_i f_i``;
- ``total_pnl_d = V_d - V_{d-1}`` with ``V_d = pos_d c_d + cash_d`` and
  ``cash_d = cash_{d-1} - sum_i (s_i q_i p_i + f_i)``.

Because ``pos_d = pos_{d-1} + sum_i s_i q_i``, the three parts sum to ``total_pnl_d``
exactly (up to float rounding, ~1e-12 relative).

Conventions
-----------
- **Days are UTC calendar days.** A day's close mark is the last quote mid of that day
  (:func:`daily_marks`); pass your own ``marks`` (official closes) to override.
- **P&L is signed as money made**: a gain is positive, fees are a negative ``fee_pnl``.
- **No silent gaps.** A fill on a day without a mark for its symbol is an error; a
  position carries over days with no fills, and earns position P&L on every day its
  symbol has a mark.

Examples
--------
>>> import polars as pl
>>> from obsbench.metrics.pnl import position_pnl, trading_pnl
>>> day = pl.DataFrame(
...     {
...         "side": ["buy", "sell"],
...         "qty": [100.0, 40.0],
...         "px": [10.0, 10.5],
...         "close": [10.2, 10.2],
...     }
... )
>>> round(day.select(trading_pnl().sum()).item(), 9)
32.0
>>> pl.select(position_pnl(pl.lit(60.0), pl.lit(10.25), pl.lit(10.0))).item()
-15.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import polars as pl

from obsbench import schemas
from obsbench._typing import IntoExpr
from obsbench.errors import SchemaError
from obsbench.metrics._common import metric, to_expr
from obsbench.metrics.execution import _last_mid, _validated, side_sign
from obsbench.metrics.sla import check_columns

__all__ = [
    "cumulative_pnl",
    "daily_marks",
    "pnl_attribution",
    "position_pnl",
    "trading_pnl",
]

F = TypeVar("F", pl.DataFrame, pl.LazyFrame)
Frame = pl.DataFrame | pl.LazyFrame

_PARTS = ("position_pnl", "trading_pnl", "fee_pnl")


@metric(data=("prev_position", "prev_close", "close"), output="series")
def position_pnl(
    prev_position: IntoExpr = "prev_position",
    prev_close: IntoExpr = "prev_close",
    close: IntoExpr = "close",
) -> pl.Expr:
    """P&L of the position carried in from the previous period.

    Parameters
    ----------
    prev_position
        Signed position (shares, long > 0) at the previous close.
    prev_close, close
        Previous and current close marks.

    Returns
    -------
    pl.Expr
        Row-wise ``prev_position x (close - prev_close)``, named ``position_pnl``. A zero
        position gives 0 even when ``prev_close`` is null (the first day).

    Examples
    --------
    >>> import polars as pl
    >>> position_pnl(pl.Series([-100.0]), pl.Series([10.0]), pl.Series([9.5])).to_list()
    [50.0]
    """
    pos = to_expr(prev_position, param_name="prev_position")
    move = to_expr(close, param_name="close") - to_expr(prev_close, param_name="prev_close")
    return pl.when(pos == 0).then(pl.lit(0.0)).otherwise(pos * move).alias("position_pnl")


@metric(data=("side", "qty", "px", "close"), output="series")
def trading_pnl(
    side: IntoExpr = "side", qty: IntoExpr = "qty", px: IntoExpr = "px", close: IntoExpr = "close"
) -> pl.Expr:
    """P&L of a fill marked to the period's close: ``s x q x (close - px)``.

    Parameters
    ----------
    side
        ``"buy"``/``"sell"`` (``s`` = +1/-1).
    qty, px
        Fill quantity and price.
    close
        Close mark of the fill's period.

    Returns
    -------
    pl.Expr
        Row-wise, named ``trading_pnl``; sum it over a period's fills. Fees are not
        included (they are ``fee_pnl``).

    Examples
    --------
    >>> import polars as pl
    >>> trading_pnl(
    ...     pl.Series(["buy", "sell"]),
    ...     pl.Series([100.0, 100.0]),
    ...     pl.Series([10.0, 10.0]),
    ...     pl.Series([10.5, 10.5]),
    ... ).to_list()
    [50.0, -50.0]
    """
    q = to_expr(qty, param_name="qty")
    price = to_expr(px, param_name="px")
    mark = to_expr(close, param_name="close")
    return (side_sign(side) * q * (mark - price)).alias("trading_pnl")


def daily_marks(quotes: F) -> F:
    """Close mark per symbol and UTC day: the mid of the day's last quote.

    Parameters
    ----------
    quotes
        Canonical ``quotes``.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``symbol``, ``date`` (``pl.Date``, UTC), ``close``; sorted by symbol and date.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timezone
    >>> ts = [datetime(2024, 1, 2, h, tzinfo=timezone.utc) for h in (14, 20)]
    >>> q = pl.DataFrame(
    ...     {
    ...         "symbol": ["A", "A"],
    ...         "ts": ts,
    ...         "bid": [9.9, 10.9],
    ...         "ask": [10.1, 11.1],
    ...         "mid": [10.0, 11.0],
    ...     }
    ... )
    >>> daily_marks(q).rows()
    [('A', datetime.date(2024, 1, 2), 11.0)]
    """
    lazy = isinstance(quotes, pl.LazyFrame)
    q = schemas.validate(quotes.collect() if lazy else quotes, "quotes", allow_extra=True)
    out = (
        q.lazy()
        .group_by("symbol", pl.col("ts").dt.date().alias("date"))
        .agg(_last_mid().alias("close"))
        .sort("symbol", "date")
    )
    return out if lazy else out.collect()  # type: ignore[return-value]


def _initial(initial_positions: Frame | None) -> pl.DataFrame:
    schema = {"strategy": pl.String, "symbol": pl.String, "qty": pl.Float64, "px": pl.Float64}
    if initial_positions is None:
        return pl.DataFrame(schema=schema)
    check_columns(initial_positions, schema, dataset="initial_positions", numeric=("qty", "px"))
    frame = initial_positions.lazy().select(
        pl.col("strategy", "symbol").cast(pl.String), pl.col("qty", "px").cast(pl.Float64)
    )
    df = frame.collect()
    bad = df.filter(~(pl.col("px") > 0) | pl.col("qty").is_null() | ~pl.col("qty").is_finite())
    if bad.height:
        keys = ", ".join(f"{s}/{y}" for s, y in bad.select("strategy", "symbol").rows())
        dataset = "initial_positions"
        raise SchemaError(dataset, [f"px not > 0 or qty missing for strategy/symbol {keys}"])
    return df.group_by("strategy", "symbol").agg(pl.col("qty").sum(), pl.col("px").last())


def pnl_attribution(
    orders: F,
    fills: Frame,
    quotes: Frame | None = None,
    *,
    marks: Frame | None = None,
    initial_positions: Frame | None = None,
) -> F:
    """Daily mark-to-market P&L per (strategy, symbol), split into position, trading, fees.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` (for each fill's strategy) and ``fills``.
    quotes
        Canonical ``quotes``, for the close marks (:func:`daily_marks`) when ``marks`` is
        not given.
    marks
        ``symbol``, ``date``, ``close``: official close marks (override ``quotes``).
    initial_positions
        ``strategy``, ``symbol``, ``qty`` (signed), ``px`` (the mark they are carried at):
        positions held before the first day. Default: flat.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per strategy, symbol and marked day from the pair's first fill day (or the
        first mark day, for initial positions) on, sorted: ``strategy``, ``symbol``,
        ``date``, ``position`` (end of day), ``close``, ``position_pnl``,
        ``trading_pnl``, ``fee_pnl``, ``total_pnl`` (formulas in the module docstring).

    Raises
    ------
    SchemaError
        As :func:`~obsbench.metrics.execution.validate_execution`; for fills on a day
        without a close mark for their symbol (listing symbol/date) and for bad initial
        positions.
        Also if neither ``quotes`` nor ``marks`` is given.

    Examples
    --------
    See ``docs/metrics/execution.md``; hand-computed cases in
    ``tests/unit/metrics/test_pnl.py``.
    """
    if quotes is None and marks is None:
        dataset, msg = "marks", "pnl_attribution needs close marks: got neither quotes nor marks"
        raise SchemaError(dataset, [msg], hint="pass quotes=... or marks=(symbol, date, close).")
    o, f, _ = _validated(orders, fills)
    if marks is None:
        assert quotes is not None
        m = daily_marks(quotes.lazy() if isinstance(quotes, pl.LazyFrame) else quotes)
        m = m.collect() if isinstance(m, pl.LazyFrame) else m
    else:
        check_columns(marks, ("symbol", "date", "close"), dataset="marks", numeric=("close",))
        m = (
            marks.lazy()
            .select(pl.col("symbol").cast(pl.String), pl.col("date").cast(pl.Date), "close")
            .collect()
        )
    init = _initial(initial_positions)

    fills_d = (
        f.lazy()
        .join(o.lazy().select("order_id", "strategy"), on="order_id")
        .with_columns(pl.col("ts").dt.date().alias("date"))
    )
    # A fill's day must have a mark for its symbol: never value a trade at a missing price.
    unmarked = (
        fills_d.select("symbol", "date")
        .unique()
        .join(m.lazy(), on=["symbol", "date"], how="anti")
        .sort("symbol", "date")
        .collect()
    )
    unmarked_init = init.join(m.select("symbol").unique(), on="symbol", how="anti")
    problems = []
    if unmarked.height:
        shown = ", ".join(f"{s}/{d}" for s, d in unmarked.head(20).rows())
        problems.append(f"no close mark for {unmarked.height} symbol/date(s) with fills: {shown}")
    if unmarked_init.height:
        shown = ", ".join(sorted(unmarked_init["symbol"].unique().to_list()))
        problems.append(f"no close mark at all for initial-position symbol(s): {shown}")
    if problems:
        dataset = "marks"
        raise SchemaError(
            dataset,
            problems,
            hint="pass quotes covering every trading day, or marks with those closes.",
        )
    daily = (
        fills_d.join(m.lazy(), on=["symbol", "date"])
        .group_by("strategy", "symbol", "date")
        .agg(
            (side_sign("side") * pl.col("qty")).sum().alias("net_qty"),
            (side_sign("side") * pl.col("qty") * pl.col("px")).sum().alias("trade_value"),
            trading_pnl().sum(),
            (-pl.col("fee").sum()).alias("fee_pnl"),
        )
    )
    first_day = (
        pl.concat(
            [
                daily.group_by("strategy", "symbol").agg(pl.col("date").min().alias("_first")),
                init.lazy()
                .join(
                    m.lazy().group_by("symbol").agg(pl.col("date").min().alias("_first")),
                    on="symbol",
                )
                .select("strategy", "symbol", "_first"),
            ]
        )
        .group_by("strategy", "symbol")
        .agg(pl.col("_first").min())
    )
    grid = (
        first_day.join(m.lazy(), on="symbol")
        .filter(pl.col("date") >= pl.col("_first"))
        .drop("_first")
    )
    zero = ("net_qty", "trade_value", "trading_pnl", "fee_pnl")
    keys = ["strategy", "symbol"]
    prev_pos = (pl.col("position") - pl.col("net_qty")).alias("prev_position")
    out = (
        grid.join(daily, on=[*keys, "date"], how="left")
        .with_columns(pl.col(zero).fill_null(0.0))
        .join(init.lazy().rename({"qty": "_q0", "px": "_p0"}), on=keys, how="left")
        .with_columns(pl.col("_q0").fill_null(0.0))
        .sort([*keys, "date"])
        .with_columns(
            (pl.col("_q0") + pl.col("net_qty").cum_sum().over(keys)).alias("position"),
            pl.col("close").shift(1).over(keys).fill_null(pl.col("_p0")).alias("prev_close"),
        )
        .with_columns(
            position_pnl(prev_pos, "prev_close", "close"),
            # V_d - V_{d-1}: the day's change of position value, minus the cash spent on
            # fills and fees, computed from the end-of-day book (independent of the split).
            (
                pl.col("position") * pl.col("close")
                - pl.when(prev_pos == 0).then(0.0).otherwise(prev_pos * pl.col("prev_close"))
                - pl.col("trade_value")
                + pl.col("fee_pnl")
            ).alias("total_pnl"),
        )
        .select(*keys, "date", "position", "close", *_PARTS, "total_pnl")
        .collect()
    )
    return out.lazy() if isinstance(orders, pl.LazyFrame) else out  # type: ignore[return-value]


def cumulative_pnl(attribution: F, *, by: Sequence[str] = ("strategy",)) -> F:
    """Daily and cumulative P&L per group, for charts.

    Parameters
    ----------
    attribution
        The output of :func:`pnl_attribution` (or any frame with ``date``, the ``by``
        columns and the P&L columns).
    by
        Group columns (``strategy``, ``symbol``, or none for the whole book).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group and date, sorted: the summed ``position_pnl``, ``trading_pnl``,
        ``fee_pnl``, ``total_pnl`` and ``cumulative_pnl`` (running sum of ``total_pnl``
        within the group).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> att = pl.DataFrame(
    ...     {
    ...         "strategy": ["a", "a", "a"],
    ...         "symbol": ["X", "Y", "X"],
    ...         "date": [date(2024, 1, 2), date(2024, 1, 2), date(2024, 1, 3)],
    ...         "position_pnl": [0.0, 0.0, 5.0],
    ...         "trading_pnl": [3.0, -1.0, 0.0],
    ...         "fee_pnl": [-1.0, -1.0, 0.0],
    ...         "total_pnl": [2.0, -2.0, 5.0],
    ...     }
    ... )
    >>> cumulative_pnl(att)["cumulative_pnl"].to_list()
    [0.0, 5.0]
    """
    keys = list(by)
    check_columns(attribution, [*keys, "date", *_PARTS, "total_pnl"], dataset="pnl")
    out = (
        attribution.lazy()
        .group_by([*keys, "date"])
        .agg(pl.col(*_PARTS, "total_pnl").sum())
        .sort([*keys, "date"])
        .with_columns(
            (
                pl.col("total_pnl").cum_sum().over(keys) if keys else pl.col("total_pnl").cum_sum()
            ).alias("cumulative_pnl")
        )
    )
    return out if isinstance(attribution, pl.LazyFrame) else out.collect()  # type: ignore[return-value]
