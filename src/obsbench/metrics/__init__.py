"""Verified metrics as polars expressions (``ob.metrics``).

One module per concept; each metric is a function returning a ``pl.Expr`` usable in
``select``, ``with_columns``, ``group_by().agg()`` and ``over()``, eager or lazy, and a
Python scalar when given a ``pl.Series``. Conventions and references are in each module's
docstring and in ``docs/metrics/``.
"""

from __future__ import annotations

from obsbench.metrics._common import InvalidArgumentType, InvalidParameter, rolling_metric
from obsbench.metrics.returns import (
    alpha,
    annual_return,
    annual_volatility,
    beta,
    calmar_ratio,
    conditional_value_at_risk,
    correlation_matrix,
    downside_risk,
    drawdown,
    max_drawdown,
    omega_ratio,
    rolling_sharpe,
    rolling_volatility,
    sharpe_ratio,
    sortino_ratio,
    stability_of_timeseries,
    strategy_summary,
    tail_ratio,
    total_return,
    value_at_risk,
)

__all__ = [
    "InvalidArgumentType",
    "InvalidParameter",
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
    "rolling_metric",
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
