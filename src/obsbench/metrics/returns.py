"""Performance and risk metrics on simple period returns, as polars expressions.

Every metric takes a column name or ``pl.Expr`` of simple period returns and returns one
``pl.Expr``, usable eager or lazy in ``select``, ``with_columns``, ``group_by().agg()`` and
``over()``. Given a ``pl.Series`` it returns the Python ``float`` (``drawdown`` and the
rolling metrics return a Series). :func:`strategy_summary` composes the same expressions in
one ``group_by``; it is not a second implementation.

Conventions (one decision each, shared by every function here)
---------------------------------------------------------------
- **Reference.** Values and signs agree with empyrical-reloaded wherever it defines the
  metric (to 1e-10 relative in ``tests/unit/metrics/test_returns.py``), including the
  degenerate inputs: empty, all missing, constant, no downside, one row. The single
  deliberate difference: :func:`value_at_risk` ignores missing returns, while empyrical's
  ``value_at_risk`` (``np.percentile``) returns NaN as soon as one return is NaN.
- **NaN and null are both "missing".** polars skips null but propagates NaN, and returns
  files carry either. Each metric first applies ``fill_nan(None)``, so both are skipped by
  every reduction, as empyrical's nan-aware functions skip NaN. A missing period still
  *counts as a period* where empyrical counts it: in the year count of
  :func:`annual_return`, as a flat period (return 0) in :func:`drawdown`, and in the
  "fewer than 2 rows" guards.
- **Undefined is NaN, never null.** Empty input, zero dispersion, too few rows give
  ``NaN`` (``float('nan')`` on the Series path). Division of a non-zero number by a zero
  deviation gives ``±inf`` (constant positive returns have an infinite Sharpe ratio).
- **Sample statistics.** Standard deviations use ``ddof=1``; a series whose present values
  are all equal has deviation exactly 0 (empyrical's ``_zero_dispersion_std``), not the
  ~1e-18 rounding residue.
- **Quantiles** interpolate linearly between order statistics, as ``np.percentile``
  (``interpolation="linear"``; polars' own default is ``"nearest"``).
- **Rates are per period.** ``risk_free``, ``required_return`` and ``threshold`` are
  returns per period (per day for daily data), like empyrical. quantstats takes an
  *annual* ``rf`` and converts it to ``(1 + rf) ** (1 / periods) - 1``.
- **Sign.** Losses are negative numbers: :func:`max_drawdown`, :func:`value_at_risk` and
  :func:`conditional_value_at_risk` are return quantities (``-0.03`` is a 3% loss), as in
  empyrical and quantstats.
- **Speed.** polars does not share common subexpressions inside ``group_by().agg()``, so
  each metric binds its input once per group with :func:`~obsbench.metrics._common.let`
  (clean the returns, or build the wealth index, once) and evaluates its formula on that.
  :func:`strategy_summary` binds each input once for *all* metrics.
- **Order.** Path-dependent metrics (drawdowns, Calmar, stability) use row order: sort by
  ``ts`` (within each strategy) first. :func:`strategy_summary` does this itself.

Examples
--------
>>> import polars as pl
>>> import obsbench.metrics as obm
>>> df = pl.DataFrame(
...     {
...         "strategy": ["a", "a", "a", "a", "b", "b", "b", "b"],
...         "ret": [0.01, -0.02, 0.015, 0.005, 0.002, 0.001, -0.001, 0.003],
...     }
... )
>>> df.group_by("strategy", maintain_order=True).agg(
...     obm.sharpe_ratio("ret"), obm.max_drawdown("ret").alias("mdd")
... )
shape: (2, 3)
┌──────────┬──────────────┬────────┐
│ strategy ┆ sharpe_ratio ┆ mdd    │
│ ---      ┆ ---          ┆ ---    │
│ str      ┆ f64          ┆ f64    │
╞══════════╪══════════════╪════════╡
│ a        ┆ 2.552889     ┆ -0.02  │
│ b        ┆ 11.61895     ┆ -0.001 │
└──────────┴──────────────┴────────┘
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import polars as pl

from obsbench._typing import VAR_METHODS, IntoExpr, VarMethod
from obsbench.constants import DEFAULT_VAR_LEVEL, TRADING_DAYS_PER_YEAR
from obsbench.errors import ColumnNotFound, SchemaError
from obsbench.metrics._common import (
    NAN,
    ensure_choice,
    ensure_level,
    ensure_positive,
    let,
    let_struct,
    metric,
    nan_where,
    rolling_metric,
    to_expr,
)

__all__ = [
    "alpha",
    "annual_return",
    "annual_volatility",
    "beta",
    "calmar_ratio",
    "conditional_value_at_risk",
    "correlation_matrix",
    "downside_risk",
    "drawdown",
    "max_drawdown",
    "omega_ratio",
    "rolling_sharpe",
    "rolling_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "stability_of_timeseries",
    "strategy_summary",
    "tail_ratio",
    "total_return",
    "value_at_risk",
]

_BETA_MIN_VARIANCE = 1.0e-30  # empyrical: a benchmark variance below this gives beta NaN


_E = pl.element()  # inside a `let` formula: the values bound for the current group


def _clean(ret: IntoExpr) -> pl.Expr:
    """The returns as Float64 with NaN turned into null, so every reduction skips both."""
    r = to_expr(ret).cast(pl.Float64)
    # not fill_nan(None): polars plans that as when(is_not_nan | is_null), two passes more
    return pl.when(r.is_nan()).then(None).otherwise(r)


def _excess(r: pl.Expr, rate: float) -> pl.Expr:
    """Returns in excess of a per-period rate (no extra pass when the rate is 0)."""
    return r if rate == 0 else r - rate


def _std(x: pl.Expr) -> pl.Expr:
    """Sample standard deviation (ddof=1), exactly 0 when all present values are equal."""
    return x.std(ddof=1) * pl.when(x.max() > x.min()).then(1.0).otherwise(0.0)


def _wealth(r: pl.Expr) -> pl.Expr:
    """Wealth index ``prod(1 + r)`` of cleaned returns, a missing return being a flat period."""
    return (r.fill_null(0.0) + 1.0).cum_prod()


def _log_wealth(r: pl.Expr) -> pl.Expr:
    """Cumulative log return of cleaned returns (null where the return is missing)."""
    return r.log1p().cum_sum()


def _underwater_ratio(wealth: pl.Expr) -> pl.Expr:
    """``wealth / running peak`` with the peak starting at 1.0 before the first return."""
    return wealth / wealth.cum_max().clip(lower_bound=1.0)


# What a formula is evaluated on: each metric binds one of these once per group (`let`)
# and its formula refers to it as `_E` as often as it needs, at no extra cost.
_RETURNS, _WEALTH, _LOG_WEALTH = "returns", "wealth", "log_wealth"
_SOURCES: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    _RETURNS: lambda r: r,
    _WEALTH: _wealth,
    _LOG_WEALTH: _log_wealth,
}


def _bind(ret: IntoExpr, source: str, formula: pl.Expr) -> pl.Expr:
    """``formula`` (over ``_E``) evaluated on ``source`` of the cleaned returns."""
    return let(_SOURCES[source](_clean(ret)), formula)


def _scalar(ret: IntoExpr, source: str, formula: pl.Expr, name: str) -> pl.Expr:
    return _bind(ret, source, formula).fill_null(NAN).alias(name)


# --------------------------------------------------------------------------- formulas
# Each metric's formula, written once over the bound values `r` (cleaned returns), `w`
# (wealth index) or `y` (log wealth). Public functions and strategy_summary both use them.


def _cagr(ending: pl.Expr, n: pl.Expr, p: float) -> pl.Expr:
    return ending ** (1.0 / (n.cast(pl.Float64) / p)) - 1.0


def _f_total_return(r: pl.Expr) -> pl.Expr:
    return nan_where(r.len() == 0, (r + 1.0).product() - 1.0)


def _f_annual_return(r: pl.Expr, p: float) -> pl.Expr:
    return nan_where(r.len() == 0, _cagr((r + 1.0).product(), r.len(), p))


def _f_annual_volatility(r: pl.Expr, p: float) -> pl.Expr:
    return nan_where(r.len() < 2, _std(r) * math.sqrt(p))


def _f_downside_risk(r: pl.Expr, required_return: float, p: float) -> pl.Expr:
    # ** 2, not shortfall * shortfall: polars would evaluate the clip twice.
    shortfall = _excess(r, required_return).clip(upper_bound=0.0)
    return ((shortfall**2).mean().sqrt() * math.sqrt(p)).fill_null(NAN)  # no rows: NaN


def _f_sharpe_ratio(r: pl.Expr, risk_free: float, p: float) -> pl.Expr:
    excess = _excess(r, risk_free)
    return nan_where(r.len() < 2, excess.mean() / _std(excess) * math.sqrt(p))


def _f_sortino_ratio(r: pl.Expr, required_return: float, p: float) -> pl.Expr:
    mean_annual = _excess(r, required_return).mean() * p
    return nan_where(r.len() < 2, mean_annual / _f_downside_risk(r, required_return, p))


def _f_value_at_risk(r: pl.Expr, level: float, method: str) -> pl.Expr:
    q = 1.0 - level
    if method == "historical":
        return r.quantile(q, interpolation="linear").fill_null(NAN)
    z = NormalDist().inv_cdf(q)
    if method == "gaussian":
        z_eff: pl.Expr | float = z
    else:  # cornish_fisher; NaN moments only occur with zero dispersion, where σ = 0
        s = r.skew(bias=True)
        k = r.kurtosis(fisher=True, bias=True)
        z_eff = (
            z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s * s / 36
        ).fill_nan(0.0)
    return (r.mean() + z_eff * _std(r)).fill_null(NAN)


def _f_conditional_value_at_risk(r: pl.Expr, level: float) -> pl.Expr:
    m = r.count().cast(pl.Int64)
    k = ((m - 1).cast(pl.Float64) * (1.0 - level)).floor().cast(pl.Int64) + 1
    return nan_where(m == 0, r.drop_nulls().bottom_k(k.clip(lower_bound=0)).mean())


def _f_tail_ratio(r: pl.Expr) -> pl.Expr:
    right = r.quantile(0.95, interpolation="linear").abs()
    return (right / r.quantile(0.05, interpolation="linear").abs()).fill_null(NAN)


def _f_omega_ratio(r: pl.Expr, threshold: float) -> pl.Expr:
    excess = _excess(r, threshold)
    losses = -excess.clip(upper_bound=0.0).sum()
    ratio = pl.when(losses > 0).then(excess.clip(lower_bound=0.0).sum() / losses)
    return nan_where(r.len() < 2, ratio)  # no losses: NaN (null -> NaN), as empyrical


def _f_max_drawdown(w: pl.Expr) -> pl.Expr:
    # min(w / max(peak, 1)) without a clip pass: where the peak is below the starting
    # wealth 1.0, w / 1.0 = w is the smaller of the two. No rows: NaN.
    return (pl.min_horizontal((w / w.cum_max()).min(), w.min()) - 1.0).fill_null(NAN)


def _f_calmar_ratio(w: pl.Expr, p: float) -> pl.Expr:
    # CAGR from the final wealth (= prod(1 + r)); no drawdown (mdd == 0) gives NaN.
    mdd = _f_max_drawdown(w)
    return nan_where(w.len() == 0, pl.when(mdd < 0).then(_cagr(w.last(), w.len(), p) / -mdd))


def _f_stability_of_timeseries(y: pl.Expr) -> pl.Expr:
    # cum_count numbers the present values 1..m; corr drops the pairs where y is null.
    return nan_where(y.len() < 2, pl.corr(y.cum_count(), y) ** 2)


# --------------------------------------------------------------------------- growth


@metric()
def total_return(ret: IntoExpr) -> pl.Expr:
    """Compounded return over the whole period.

    Parameters
    ----------
    ret
        Simple period returns: a column name, ``pl.Expr`` or ``pl.Series``.

    Returns
    -------
    pl.Expr
        Named ``total_return``; a ``float`` for a Series.

    Notes
    -----
    ``total_return = prod(1 + r_t) - 1`` over the present returns (missing returns are
    flat periods). Not annualised. Empty input gives NaN; all-missing input gives 0.0
    (nothing was gained); one row gives that return.

    References
    ----------
    empyrical ``cum_returns_final(returns)``; quantstats ``comp``.

    Examples
    --------
    >>> import polars as pl
    >>> round(total_return(pl.Series([0.1, -0.1])), 12)
    -0.01
    """
    return _scalar(ret, _RETURNS, _f_total_return(_E), "total_return")


@metric()
def annual_return(ret: IntoExpr, periods_per_year: float = TRADING_DAYS_PER_YEAR) -> pl.Expr:
    """Compound annual growth rate (CAGR).

    Parameters
    ----------
    ret
        Simple period returns.
    periods_per_year
        Return periods per year: 252 for daily, 52 weekly, 12 monthly.

    Returns
    -------
    pl.Expr
        Named ``annual_return``.

    Notes
    -----
    ``(1 + total_return) ** (1 / years) - 1`` with ``years = n / periods_per_year``, where
    ``n`` is the number of rows *including* missing returns (a missing period is a flat
    period that still took time), as empyrical's ``len(returns)``.

    The year count is a known trap: obsbench and empyrical count periods, so 252 daily rows
    are one year whatever their dates. quantstats ``cagr`` counts calendar time between the
    first and last index date instead (``days / 365`` in recent versions), which differs
    for short, gappy or non-daily series. Empty input gives NaN.

    References
    ----------
    empyrical ``annual_return`` / ``cagr``.

    Examples
    --------
    >>> import polars as pl
    >>> round(annual_return(pl.Series([0.01] * 12), periods_per_year=12), 6)
    0.126825
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    return _scalar(ret, _RETURNS, _f_annual_return(_E, p), "annual_return")


# --------------------------------------------------------------------------- risk


@metric()
def annual_volatility(ret: IntoExpr, periods_per_year: float = TRADING_DAYS_PER_YEAR) -> pl.Expr:
    """Annualised standard deviation of returns.

    Parameters
    ----------
    ret
        Simple period returns.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``annual_volatility``.

    Notes
    -----
    ``std(r, ddof=1) * sqrt(periods_per_year)`` (square-root-of-time scaling). Fewer than
    two rows, or fewer than two present returns, give NaN; a constant series gives
    exactly 0.0.

    References
    ----------
    empyrical ``annual_volatility`` (``alpha=2``); quantstats ``volatility``.

    Examples
    --------
    >>> import polars as pl
    >>> round(annual_volatility(pl.Series([0.01, -0.01]), periods_per_year=4), 6)
    0.028284
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    return _scalar(ret, _RETURNS, _f_annual_volatility(_E, p), "annual_volatility")


@metric()
def downside_risk(
    ret: IntoExpr,
    required_return: float = 0.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
) -> pl.Expr:
    """Annualised downside deviation below a required return (Sortino's denominator).

    Parameters
    ----------
    ret
        Simple period returns.
    required_return
        Minimum acceptable return *per period*.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``downside_risk``; 0 or positive.

    Notes
    -----
    ``sqrt(mean(min(r_t - required_return, 0) ** 2)) * sqrt(periods_per_year)``.

    The mean runs over **all** present periods, with periods above the required return
    contributing 0; it is *not* the standard deviation of the losing periods only, a
    frequent mistake (Sortino and Forsey; empyrical's docstring makes the same point).
    quantstats agrees (``sum(losses**2) / len(returns)``). Empty or all-missing input gives
    NaN; no period below ``required_return`` gives 0.0.

    References
    ----------
    empyrical ``downside_risk``.

    Examples
    --------
    >>> import polars as pl
    >>> round(downside_risk(pl.Series([0.02, -0.02, 0.01, -0.04]), periods_per_year=1), 6)
    0.022361
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    formula = _f_downside_risk(_E, required_return, p)
    return _scalar(ret, _RETURNS, formula, "downside_risk")


@metric()
def max_drawdown(ret: IntoExpr) -> pl.Expr:
    """Largest peak-to-trough fall of the wealth index (a negative number).

    Parameters
    ----------
    ret
        Simple period returns, in time order.

    Returns
    -------
    pl.Expr
        Named ``max_drawdown``; in ``[-1, 0]``.

    Notes
    -----
    ``min_t W_t / max(1, max_{s<=t} W_s) - 1`` with ``W_t = prod_{s<=t}(1 + r_s)``.

    The wealth index starts at 1.0 *before* the first return, so a loss on the first day
    is a drawdown (``[-0.05]`` gives -0.05). Peers that start the running peak at the first
    day's wealth (``cumprod(1 + r)`` then ``cummax``; jquantstats 0.13.1 gives 0.0 for
    ``[-0.05, 0.02, 0.01]``) miss it.
    Missing returns are flat periods. Empty input gives NaN; no loss gives 0.0.

    The wealth index is computed once per group (one ``cum_prod``) and bound with
    :func:`~obsbench.metrics._common.let`; the drawdown is one ``cum_max``, a division and
    a ``min``, with the subtraction of 1 after the ``min`` (exact: ``x - 1`` is monotone).

    References
    ----------
    empyrical ``max_drawdown`` (value and sign).

    Examples
    --------
    >>> import polars as pl
    >>> round(max_drawdown(pl.Series([-0.05, 0.1, -0.2, 0.05])), 6)
    -0.2
    """
    return _scalar(ret, _WEALTH, _f_max_drawdown(_E), "max_drawdown")


@metric(output="series")
def drawdown(ret: IntoExpr) -> pl.Expr:
    """Drawdown of the wealth index at each period (for underwater charts).

    Parameters
    ----------
    ret
        Simple period returns, in time order.

    Returns
    -------
    pl.Expr
        One value per row, named ``drawdown``, in ``[-1, 0]``; a Series for a Series. In
        ``group_by().agg()`` it gives a list per group; use ``.over("strategy")`` in
        ``with_columns`` for one value per row.

    Notes
    -----
    ``W_t / max(1, max_{s<=t} W_s) - 1``, the wealth index ``W`` starting at 1.0 before
    the first return (see :func:`max_drawdown`, which is this series' minimum). A missing
    return is a flat period: its row repeats the previous drawdown, as in empyrical.

    References
    ----------
    empyrical ``drawdown_series`` (without its anchor row).

    Examples
    --------
    >>> import polars as pl
    >>> drawdown(pl.Series("ret", [-0.5, 1.0, 0.5])).round(6).to_list()
    [-0.5, 0.0, 0.0]
    """
    return (_underwater_ratio(_wealth(_clean(ret))) - 1.0).alias("drawdown")


@metric()
def value_at_risk(
    ret: IntoExpr, level: float = DEFAULT_VAR_LEVEL, method: VarMethod = "historical"
) -> pl.Expr:
    """Value at risk: the ``1 - level`` quantile of period returns (negative for a loss).

    Parameters
    ----------
    ret
        Simple period returns.
    level
        Confidence level in (0, 1); 0.95 looks at the worst 5% of periods.
    method
        ``"historical"`` (empirical quantile), ``"gaussian"`` (normal fit) or
        ``"cornish_fisher"`` (normal quantile corrected for skew and kurtosis).

    Returns
    -------
    pl.Expr
        Named ``value_at_risk``. A return, not a positive loss amount: ``-0.02`` means
        "on 95% of days the return is above -2%".

    Raises
    ------
    InvalidParameter
        For an unknown ``method`` or a ``level`` outside (0, 1).

    Notes
    -----
    With ``q = 1 - level``, ``z = Φ⁻¹(q)``, mean ``μ``, ``σ = std(ddof=1)``:

    - historical: ``quantile(r, q)``, linear interpolation between order statistics as
      ``np.percentile`` (polars' default ``"nearest"`` would differ);
    - gaussian: ``μ + z σ``;
    - cornish_fisher: ``μ + z_cf σ``,
      ``z_cf = z + (z²-1) S/6 + (z³-3z) K/24 - (2z³-5z) S²/36`` with the (biased, moment)
      skewness ``S`` and excess kurtosis ``K`` (Zangari 1996; PerformanceAnalytics
      ``VaR(method="modified")``).

    Missing returns are ignored. Empty or all-missing input gives NaN; one row gives that
    return (historical) or NaN (parametric, which need ``σ``); constant input gives the
    constant.

    References
    ----------
    historical: empyrical ``value_at_risk(returns, cutoff=1 - level)`` on the present
    returns (empyrical itself returns NaN if any return is NaN). gaussian: quantstats
    ``value_at_risk`` (``norm.ppf(1 - confidence, μ, σ)``).

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series([-0.03, -0.01, 0.0, 0.01, 0.02])
    >>> round(value_at_risk(s, level=0.8), 6)
    -0.014
    >>> round(value_at_risk(s, level=0.8, method="gaussian"), 6)
    -0.018189
    """
    level = ensure_level(level)
    ensure_choice(method, VAR_METHODS, param_name="method")
    if method == "historical":  # one reference to the returns: a `let` would only add a copy
        return _f_value_at_risk(_clean(ret), level, method).alias("value_at_risk")
    return _scalar(ret, _RETURNS, _f_value_at_risk(_E, level, method), "value_at_risk")


@metric()
def conditional_value_at_risk(ret: IntoExpr, level: float = DEFAULT_VAR_LEVEL) -> pl.Expr:
    """Expected shortfall: the mean of the worst ``1 - level`` share of period returns.

    Parameters
    ----------
    ret
        Simple period returns.
    level
        Confidence level in (0, 1).

    Returns
    -------
    pl.Expr
        Named ``conditional_value_at_risk``; a return (negative for a loss), never above
        the historical :func:`value_at_risk` at the same level.

    Notes
    -----
    With ``m`` present returns sorted ascending, ``k = floor((m - 1) (1 - level))``:
    ``CVaR = mean(r_(0), ..., r_(k))``, the ``k + 1`` smallest returns (empyrical's
    partition rule, computed with ``bottom_k``, no full sort). Missing returns are removed
    before ``k`` is chosen. Empty or all-missing input gives NaN; one row gives that
    return.

    quantstats' ``conditional_value_at_risk`` differs: it averages the returns below its
    *gaussian* VaR.

    References
    ----------
    empyrical ``conditional_value_at_risk(returns, cutoff=1 - level)``.

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series([-0.03, -0.01, 0.0, 0.01, 0.02])
    >>> round(conditional_value_at_risk(s, level=0.5), 6)
    -0.013333
    """
    level = ensure_level(level)
    formula = _f_conditional_value_at_risk(_E, level)
    return _scalar(ret, _RETURNS, formula, "conditional_value_at_risk")


@metric()
def tail_ratio(ret: IntoExpr) -> pl.Expr:
    """Ratio of the right tail (95th percentile) to the left tail (5th percentile).

    Parameters
    ----------
    ret
        Simple period returns.

    Returns
    -------
    pl.Expr
        Named ``tail_ratio``; 0 or positive. 0.25 means losses are four times as large as
        gains at the tails.

    Notes
    -----
    ``|quantile(r, 0.95)| / |quantile(r, 0.05)|``, linear interpolation. Missing returns
    are ignored; empty or all-missing input gives NaN; a zero 5th percentile gives inf
    (or NaN if both are 0). quantstats ``tail_ratio`` is the same (pandas ``quantile`` is
    linear).

    References
    ----------
    empyrical ``tail_ratio``.

    Examples
    --------
    >>> import polars as pl
    >>> round(tail_ratio(pl.Series([-0.02, -0.01, 0.0, 0.01, 0.04])), 6)
    1.888889
    """
    return _scalar(ret, _RETURNS, _f_tail_ratio(_E), "tail_ratio")


# --------------------------------------------------------------------------- ratios


@metric()
def sharpe_ratio(
    ret: IntoExpr, risk_free: float = 0.0, periods_per_year: float = TRADING_DAYS_PER_YEAR
) -> pl.Expr:
    """Annualised Sharpe ratio.

    Parameters
    ----------
    ret
        Simple period returns.
    risk_free
        Risk-free return *per period* (a daily rate for daily returns), not annual.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``sharpe_ratio``.

    Notes
    -----
    ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``.

    ``risk_free`` is per period as in empyrical; quantstats ``sharpe(rf=...)`` takes an
    annual rate and de-annualises it. Fewer than two present returns give NaN; constant
    returns give ``±inf`` (NaN if they equal ``risk_free``). The ratio is invariant to
    scaling excess returns by ``c > 0``.

    References
    ----------
    empyrical ``sharpe_ratio``.

    Examples
    --------
    >>> import polars as pl
    >>> round(sharpe_ratio(pl.Series([0.01, -0.02, 0.015, 0.005])), 6)
    2.552889
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    return _scalar(ret, _RETURNS, _f_sharpe_ratio(_E, risk_free, p), "sharpe_ratio")


@metric()
def sortino_ratio(
    ret: IntoExpr,
    required_return: float = 0.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
) -> pl.Expr:
    """Annualised Sortino ratio: excess return over downside deviation.

    Parameters
    ----------
    ret
        Simple period returns.
    required_return
        Minimum acceptable return *per period*.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``sortino_ratio``.

    Notes
    -----
    ``mean(r - required_return) * periods_per_year / downside_risk(r, required_return)``,
    i.e. ``mean / sqrt(mean(min(r - req, 0)²)) * sqrt(periods_per_year)``. The downside
    deviation averages over **all** periods (see :func:`downside_risk`), not only the
    losing ones. Fewer than two rows give NaN; no period below ``required_return`` gives
    ``+inf`` (NaN if the mean excess is 0), as empyrical.

    References
    ----------
    empyrical ``sortino_ratio``; quantstats ``sortino`` uses the same downside deviation
    (its ``rf`` is annual).

    Examples
    --------
    >>> import polars as pl
    >>> round(sortino_ratio(pl.Series([0.02, -0.02, 0.01, -0.04]), periods_per_year=1), 6)
    -0.33541
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    formula = _f_sortino_ratio(_E, required_return, p)
    return _scalar(ret, _RETURNS, formula, "sortino_ratio")


@metric()
def calmar_ratio(ret: IntoExpr, periods_per_year: float = TRADING_DAYS_PER_YEAR) -> pl.Expr:
    """Calmar ratio: CAGR over the absolute maximum drawdown.

    Parameters
    ----------
    ret
        Simple period returns, in time order.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``calmar_ratio``.

    Notes
    -----
    ``annual_return(r) / |max_drawdown(r)|`` over the whole series (not the classic
    trailing 36 months). No drawdown (``max_drawdown == 0``), empty input or an infinite
    result give NaN, as empyrical.

    References
    ----------
    empyrical ``calmar_ratio``; quantstats ``calmar`` divides its own calendar-based CAGR.

    Examples
    --------
    >>> import polars as pl
    >>> round(calmar_ratio(pl.Series([0.1, -0.1, 0.05, 0.02]), periods_per_year=4), 6)
    0.6029
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    return _scalar(ret, _WEALTH, _f_calmar_ratio(_E, p), "calmar_ratio")


@metric()
def omega_ratio(ret: IntoExpr, threshold: float = 0.0) -> pl.Expr:
    """Omega ratio: gains above a threshold over losses below it.

    Parameters
    ----------
    ret
        Simple period returns.
    threshold
        Return threshold *per period*.

    Returns
    -------
    pl.Expr
        Named ``omega_ratio``; 0 or positive.

    Notes
    -----
    ``sum(max(r - threshold, 0)) / sum(max(threshold - r, 0))``.

    empyrical's ``omega_ratio(returns, risk_free, required_return, annualization=252)``
    takes an *annual* required return and converts it to ``(1 + R) ** (1/252) - 1``; this
    function takes the per-period threshold directly (empyrical with
    ``annualization=1``). Fewer than two rows, or no return below the threshold, give NaN
    (empyrical's convention, not inf).

    References
    ----------
    empyrical ``omega_ratio(returns, required_return=threshold, annualization=1)``.

    Examples
    --------
    >>> import polars as pl
    >>> round(omega_ratio(pl.Series([0.02, -0.01, 0.03, -0.02])), 6)
    1.666667
    """
    return _scalar(ret, _RETURNS, _f_omega_ratio(_E, threshold), "omega_ratio")


@metric()
def stability_of_timeseries(ret: IntoExpr) -> pl.Expr:
    """R² of a straight-line fit to cumulative log returns.

    Parameters
    ----------
    ret
        Simple period returns, in time order.

    Returns
    -------
    pl.Expr
        Named ``stability_of_timeseries``; in ``[0, 1]``, 1 for steady compounding.

    Notes
    -----
    ``corr(t, y_t)²`` with ``y_t = sum_{s<=t} log(1 + r_s)`` over the present returns
    (missing returns are dropped, not treated as flat) and ``t = 0, 1, ...``. Fewer than
    two rows give NaN; so do fewer than two present returns and an exactly flat ``y``
    (all returns 0), as empyrical/scipy.

    References
    ----------
    empyrical ``stability_of_timeseries`` (``scipy.stats.linregress(...).rvalue ** 2``).

    Examples
    --------
    >>> import polars as pl
    >>> round(stability_of_timeseries(pl.Series([0.01, 0.012, 0.009, 0.011])), 6)
    0.997314
    """
    formula = _f_stability_of_timeseries(_E)
    return _scalar(ret, _LOG_WEALTH, formula, "stability_of_timeseries")


# --------------------------------------------------------------------------- benchmark


def _bind_pair(ret: IntoExpr, benchmark: IntoExpr, formula: pl.Expr, name: str) -> pl.Expr:
    """``formula`` over ``_E`` = struct {r, b} of cleaned strategy and benchmark returns."""
    b = _clean(to_expr(benchmark, param_name="benchmark"))
    pair = pl.struct(_clean(ret).alias("r"), b.alias("b"))
    return let(pair, formula).fill_null(NAN).alias(name)


def _paired_excess(risk_free: float) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(all rows, strategy excess, benchmark excess); the latter null unless both present."""
    r, b = _E.struct.field("r"), _E.struct.field("b")
    both = r.is_not_null() & b.is_not_null()
    return r, pl.when(both).then(_excess(r, risk_free)), pl.when(both).then(_excess(b, risk_free))


def _beta(y: pl.Expr, x: pl.Expr) -> pl.Expr:
    centred = x - x.mean()
    variance = (centred * centred).mean()
    return (centred * y).mean() / pl.when(variance >= _BETA_MIN_VARIANCE).then(variance)


def _f_beta(risk_free: float) -> pl.Expr:
    r, y, x = _paired_excess(risk_free)
    return nan_where(r.len() < 2, _beta(y, x))


def _f_alpha(risk_free: float, p: float) -> pl.Expr:
    r, y, x = _paired_excess(risk_free)
    residual = (y - _beta(y, x) * x).mean()
    return nan_where(r.len() < 2, (residual + 1.0) ** p - 1.0)


@metric(data=("ret", "benchmark"))
def beta(ret: IntoExpr, benchmark: IntoExpr, risk_free: float = 0.0) -> pl.Expr:
    """Beta: slope of strategy returns on benchmark returns.

    Parameters
    ----------
    ret
        Simple period returns of the strategy.
    benchmark
        Simple period returns of the benchmark, row-aligned with ``ret`` (join on ``ts``
        first).
    risk_free
        Risk-free return per period, subtracted from both (beta is invariant to it).

    Returns
    -------
    pl.Expr
        Named ``beta``.

    Notes
    -----
    ``cov(r, b) / var(b)`` over the rows where both are present (both with ``ddof=0``, so
    the ratio is the OLS slope). Fewer than two rows, or a benchmark variance below 1e-30,
    give NaN.

    References
    ----------
    empyrical ``beta``; quantstats ``greeks`` (``np.cov``, same slope).

    Examples
    --------
    >>> import polars as pl
    >>> round(beta(pl.Series([0.02, -0.01, 0.03]), pl.Series([0.01, -0.01, 0.02])), 6)
    1.357143
    """
    return _bind_pair(ret, benchmark, _f_beta(risk_free), "beta")


@metric(data=("ret", "benchmark"))
def alpha(
    ret: IntoExpr,
    benchmark: IntoExpr,
    risk_free: float = 0.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
) -> pl.Expr:
    """Annualised (compounded) Jensen's alpha against a benchmark.

    Parameters
    ----------
    ret
        Simple period returns of the strategy.
    benchmark
        Simple period returns of the benchmark, row-aligned with ``ret``.
    risk_free
        Risk-free return per period.
    periods_per_year
        Return periods per year.

    Returns
    -------
    pl.Expr
        Named ``alpha``.

    Notes
    -----
    ``(1 + mean((r - rf) - β (b - rf))) ** periods_per_year - 1`` with ``β`` from
    :func:`beta`, over the rows where both are present. quantstats ``greeks`` annualises
    arithmetically instead (``mean * periods``). Fewer than two rows or an undefined beta
    give NaN.

    References
    ----------
    empyrical ``alpha``.

    Examples
    --------
    >>> import polars as pl
    >>> r, b = pl.Series([0.02, -0.01, 0.03]), pl.Series([0.01, -0.01, 0.02])
    >>> round(alpha(r, b, periods_per_year=3), 6)
    0.012912
    """
    p = ensure_positive(periods_per_year, param_name="periods_per_year")
    return _bind_pair(ret, benchmark, _f_alpha(risk_free, p), "alpha")


# --------------------------------------------------------------------------- rolling


@metric(output="series")
def rolling_sharpe(
    ret: IntoExpr,
    risk_free: float = 0.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
    *,
    window: int,
) -> pl.Expr:
    """:func:`sharpe_ratio` over each trailing ``window`` of rows.

    Derived from the base expression by
    :func:`~obsbench.metrics._common.rolling_metric`; the value at row ``i`` is
    ``sharpe_ratio`` of rows ``i - window + 1 .. i``, with the same conventions. The
    first ``window - 1`` rows are null (empyrical's ``roll_sharpe_ratio`` omits them).
    Use ``.over("strategy")`` for per-strategy series.

    Examples
    --------
    >>> import polars as pl
    >>> rolling_sharpe(pl.Series([0.01, 0.02, -0.01, 0.03]), window=3).round(4).to_list()
    [None, None, 6.9282, 10.1678]
    """
    return rolling_metric(sharpe_ratio(ret, risk_free, periods_per_year), window=window)


@metric(output="series")
def rolling_volatility(
    ret: IntoExpr, periods_per_year: float = TRADING_DAYS_PER_YEAR, *, window: int
) -> pl.Expr:
    """:func:`annual_volatility` over each trailing ``window`` of rows.

    Derived from the base expression by
    :func:`~obsbench.metrics._common.rolling_metric` (see :func:`rolling_sharpe`).

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series([0.01, -0.01, 0.01, 0.01])
    >>> rolling_volatility(s, periods_per_year=4, window=2).round(6).to_list()
    [None, 0.028284, 0.028284, 0.0]
    """
    return rolling_metric(annual_volatility(ret, periods_per_year), window=window)


# --------------------------------------------------------------------------- frames

_DATASET = "returns"
_RETURNS_COLUMNS = ("strategy", "ts", "ret")


def _check_returns_frame(frame: pl.DataFrame | pl.LazyFrame) -> pl.Schema:
    """Cheap schema check of a ``returns`` frame (names and dtypes, no row scan)."""
    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        msg = f"expected a polars DataFrame or LazyFrame, got {type(frame).__name__}"
        raise SchemaError(_DATASET, [msg], hint="convert with pl.from_pandas(...) first.")
    schema = frame.collect_schema()
    missing = [c for c in _RETURNS_COLUMNS if c not in schema]
    if missing:
        msg = f"returns frame lacks column(s) {missing}; it has {list(schema)}"
        raise ColumnNotFound(
            msg,
            hint="the canonical returns frame is long: strategy (str), ts (datetime), ret "
            "(simple period return); rename your columns, e.g. .rename({'return': 'ret'}).",
        )
    problems = []
    if not schema["ret"].is_numeric():
        problems.append(f"column 'ret' has dtype {schema['ret']}, expected Float64")
    if not schema["ts"].is_temporal():
        problems.append(f"column 'ts' has dtype {schema['ts']}, expected Datetime or Date")
    if problems:
        raise SchemaError(_DATASET, problems)
    return schema


_SUMMARY_COLUMNS = (
    "n_periods",
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "downside_risk",
    "max_drawdown",
    "calmar_ratio",
    "omega_ratio",
    "tail_ratio",
    "stability_of_timeseries",
    "value_at_risk",
    "value_at_risk_gaussian",
    "value_at_risk_cornish_fisher",
    "conditional_value_at_risk",
)


def _summary_exprs(
    ret: pl.Expr,
    benchmark: pl.Expr | None,
    *,
    risk_free: float,
    required_return: float,
    threshold: float,
    periods_per_year: float,
    level: float,
) -> list[pl.Expr]:
    """The metric formulas of :func:`strategy_summary`, one ``let`` per bound source.

    The formulas are the ones the public functions evaluate; grouping them by source into
    one struct each binds the (sorted, cleaned) returns, the wealth index and the log
    wealth once per strategy instead of once per metric.
    """
    p = periods_per_year
    on_returns = (
        _E.len().alias("n_periods"),
        _f_total_return(_E).alias("total_return"),
        _f_annual_return(_E, p).alias("annual_return"),
        _f_annual_volatility(_E, p).alias("annual_volatility"),
        _f_sharpe_ratio(_E, risk_free, p).alias("sharpe_ratio"),
        _f_sortino_ratio(_E, required_return, p).alias("sortino_ratio"),
        _f_downside_risk(_E, required_return, p).alias("downside_risk"),
        _f_omega_ratio(_E, threshold).alias("omega_ratio"),
        _f_tail_ratio(_E).alias("tail_ratio"),
        _f_value_at_risk(_E, level, "historical").alias("value_at_risk"),
        _f_value_at_risk(_E, level, "gaussian").alias("value_at_risk_gaussian"),
        _f_value_at_risk(_E, level, "cornish_fisher").alias("value_at_risk_cornish_fisher"),
        _f_conditional_value_at_risk(_E, level).alias("conditional_value_at_risk"),
    )
    on_wealth = (
        _f_max_drawdown(_E).alias("max_drawdown"),
        _f_calmar_ratio(_E, p).alias("calmar_ratio"),
    )
    cleaned = _clean(ret)
    exprs = [
        let_struct(cleaned, *on_returns).alias("__on_returns"),
        let_struct(_wealth(cleaned), *on_wealth).alias("__on_wealth"),
        _scalar(ret, _LOG_WEALTH, _f_stability_of_timeseries(_E), "stability_of_timeseries"),
    ]
    if benchmark is not None:
        exprs += [alpha(ret, benchmark, risk_free, p), beta(ret, benchmark, risk_free)]
    return exprs


def strategy_summary(
    returns: pl.DataFrame | pl.LazyFrame,
    benchmark: str | pl.DataFrame | pl.LazyFrame | None = None,
    *,
    risk_free: float = 0.0,
    required_return: float = 0.0,
    threshold: float = 0.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
    level: float = DEFAULT_VAR_LEVEL,
) -> pl.DataFrame | pl.LazyFrame:
    """One row per strategy with every return metric of this module.

    A composition of this module's expressions in a single ``group_by("strategy").agg``;
    each column equals the function of the same name applied to that strategy's returns.

    Parameters
    ----------
    returns
        A canonical ``returns`` frame (long: ``strategy``, ``ts``, ``ret``), eager or lazy.
        Rows need not be sorted: each strategy's returns are ordered by ``ts``.
    benchmark
        ``None``; the name of a column of ``returns`` holding the benchmark return of each
        row; or a frame with ``ts`` and ``ret`` (benchmark returns, joined on ``ts``). With
        a benchmark, ``alpha`` and ``beta`` columns are added.
    risk_free
        Per-period risk-free return (Sharpe, alpha, beta).
    required_return
        Per-period minimum acceptable return (Sortino, downside risk).
    threshold
        Per-period Omega threshold.
    periods_per_year
        Return periods per year.
    level
        Confidence level of the VaR and CVaR columns.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        Same kind as ``returns``, sorted by strategy: ``strategy``, ``n_periods``,
        ``total_return``, ``annual_return``, ``annual_volatility``, ``sharpe_ratio``,
        ``sortino_ratio``, ``downside_risk``, ``max_drawdown``, ``calmar_ratio``,
        ``omega_ratio``, ``tail_ratio``, ``stability_of_timeseries``, ``value_at_risk``
        (historical), ``value_at_risk_gaussian``, ``value_at_risk_cornish_fisher``,
        ``conditional_value_at_risk`` [, ``alpha``, ``beta``].

    Raises
    ------
    ColumnNotFound
        If ``strategy``, ``ts`` or ``ret`` (or the benchmark column) is missing.
    SchemaError
        If ``ret`` is not numeric or ``ts`` not temporal.

    Notes
    -----
    Validation is a schema-only check (names and dtypes) so that it costs nothing on
    millions of rows; run ``obsbench.schemas.validate(frame, "returns")`` for the full
    row-level check (nulls in keys, returns below -100%).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> df = pl.DataFrame(
    ...     {
    ...         "strategy": ["a", "a", "b", "b"],
    ...         "ts": [date(2024, 1, 2), date(2024, 1, 1)] * 2,
    ...         "ret": [0.01, -0.02, 0.03, 0.01],
    ...     }
    ... )
    >>> strategy_summary(df).select("strategy", "total_return", "max_drawdown")
    shape: (2, 3)
    ┌──────────┬──────────────┬──────────────┐
    │ strategy ┆ total_return ┆ max_drawdown │
    │ ---      ┆ ---          ┆ ---          │
    │ str      ┆ f64          ┆ f64          │
    ╞══════════╪══════════════╪══════════════╡
    │ a        ┆ -0.0102      ┆ -0.02        │
    │ b        ┆ 0.0403       ┆ 0.0          │
    └──────────┴──────────────┴──────────────┘
    """
    level = ensure_level(level)
    periods_per_year = ensure_positive(periods_per_year, param_name="periods_per_year")
    schema = _check_returns_frame(returns)
    lazy = returns.lazy()
    bench: pl.Expr | None = None
    if isinstance(benchmark, str):
        if benchmark not in schema:
            msg = f"benchmark column {benchmark!r} not in the returns frame {list(schema)}"
            raise ColumnNotFound(
                msg, hint="pass the name of an existing column, or a frame with ts and ret."
            )
        bench = pl.col(benchmark).sort_by("ts")
    elif isinstance(benchmark, pl.DataFrame | pl.LazyFrame):
        bschema = benchmark.collect_schema()
        if "ts" not in bschema or "ret" not in bschema:
            msg = f"benchmark frame needs columns ts and ret; it has {list(bschema)}"
            raise ColumnNotFound(msg, hint="select/rename the benchmark to [ts, ret].")
        bench_col = "__obsbench_benchmark"
        lazy = lazy.join(
            benchmark.lazy().select("ts", pl.col("ret").alias(bench_col)), on="ts", how="left"
        )
        bench = pl.col(bench_col).sort_by("ts")
    elif benchmark is not None:
        msg = f"benchmark must be None, a column name or a frame, got {type(benchmark).__name__}"
        raise SchemaError(_DATASET, [msg])
    ret = pl.col("ret").sort_by("ts")
    exprs = _summary_exprs(
        ret,
        bench,
        risk_free=risk_free,
        required_return=required_return,
        threshold=threshold,
        periods_per_year=periods_per_year,
        level=level,
    )
    columns = [*_SUMMARY_COLUMNS, *(["alpha", "beta"] if bench is not None else [])]
    out = (
        lazy.group_by("strategy")
        .agg(exprs)
        .unnest("__on_returns", "__on_wealth")
        .select("strategy", *columns)
        .sort("strategy")
    )
    return out if isinstance(returns, pl.LazyFrame) else out.collect()


def correlation_matrix(returns: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Strategy × strategy Pearson correlation of returns (for the risk heat map).

    Parameters
    ----------
    returns
        A canonical ``returns`` frame (``strategy``, ``ts``, ``ret``), eager or lazy.

    Returns
    -------
    pl.DataFrame
        A ``strategy`` column and one Float64 column per strategy (sorted by name), the
        diagonal 1.0 (NaN for a strategy with fewer than two returns or zero variance).

    Notes
    -----
    Returns are pivoted on ``ts`` (one column per strategy). Each pair uses the dates where
    both returns are present (pairwise-complete, as ``pandas.DataFrame.corr``); NaN and
    null are both missing. Fewer than two common dates, or no variation over them, give
    NaN. The computation is a few matrix products, O(dates × strategies²).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> days = [date(2024, 1, d) for d in (1, 2, 3)]
    >>> df = pl.DataFrame(
    ...     {
    ...         "strategy": ["a"] * 3 + ["b"] * 3,
    ...         "ts": days * 2,
    ...         "ret": [0.01, 0.02, 0.03, -0.01, -0.02, -0.03],
    ...     }
    ... )
    >>> correlation_matrix(df)
    shape: (2, 3)
    ┌──────────┬──────┬──────┐
    │ strategy ┆ a    ┆ b    │
    │ ---      ┆ ---  ┆ ---  │
    │ str      ┆ f64  ┆ f64  │
    ╞══════════╪══════╪══════╡
    │ a        ┆ 1.0  ┆ -1.0 │
    │ b        ┆ -1.0 ┆ 1.0  │
    └──────────┴──────┴──────┘
    """
    import numpy as np  # numpy is a core dependency, imported here to keep import light

    _check_returns_frame(returns)
    frame = returns.lazy().select("strategy", "ts", _clean("ret").alias("ret")).collect()
    wide = frame.pivot(on="strategy", index="ts", values="ret", aggregate_function="first")
    names = sorted(c for c in wide.columns if c != "ts")
    values = wide.select(names).to_numpy().astype(np.float64)
    present = ~np.isnan(values)
    m = present.astype(np.float64)
    filled = np.where(present, values, 0.0)
    means = filled.sum(axis=0) / np.maximum(m.sum(axis=0), 1.0)
    x = np.where(present, values - means, 0.0)  # centred for accuracy, then pairwise
    with np.errstate(invalid="ignore", divide="ignore"):
        n = m.T @ m
        sx = x.T @ m  # sx[i, j]: sum of x_i over the dates where x_j is present
        sxx = (x * x).T @ m
        sxy = x.T @ x
        cov = sxy - sx * sx.T / n
        var_i = sxx - sx * sx / n
        corr = cov / np.sqrt(var_i * var_i.T)
    corr[(n < 2) | ~np.isfinite(corr)] = NAN
    corr = np.clip(corr, -1.0, 1.0)
    return pl.DataFrame({"strategy": names}).with_columns(
        pl.Series(name, corr[:, j]) for j, name in enumerate(names)
    )
