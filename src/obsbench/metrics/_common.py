"""Shared machinery of the metric modules (``returns``, ``execution``, ``sla``, ...).

A metric module writes each metric once, as a function that turns column names or
``pl.Expr`` into one ``pl.Expr``. Everything else is derived here, by one helper each:

- :func:`metric` (decorator): the ``pl.Series`` convenience. Called with Series for its data
  parameters, a metric evaluates its own expression on a one-off frame and returns the
  Python scalar (``output="scalar"``) or a Series (``output="series"``).
- :func:`let`: bind a per-group intermediate once and use it many times in one formula.
  polars does not eliminate common subexpressions inside ``group_by().agg()`` (each
  reference to ``pl.col("ret").fill_nan(None)`` or to a ``cum_prod`` is recomputed), so
  a metric that needs its input k times would pay k passes. ``let`` evaluates the input
  once, implodes it per group and runs the formula on ``pl.element()`` in the list engine,
  where references are free. The same expression works in ``select``, ``over`` and
  ``rolling``.
- :func:`rolling_metric`: the rolling version of any aggregating expression, evaluated over
  the last ``window`` rows (``Expr.rolling`` over a row index), so rolling metrics are never
  re-written with ``rolling_mean``/``rolling_std`` formulas.
- :func:`to_expr`, :func:`ensure_choice`, :func:`ensure_level`, :func:`ensure_positive`,
  :func:`ensure_window`: validation at the public edge, returning the normalised value and
  raising an :class:`~obsbench.errors.ObsbenchError` that ends with a ``Hint:``.
- :func:`nan_where` / :data:`NAN`: undefined results are ``NaN`` (never null), as in
  empyrical, so ``math.isnan`` works on every scalar a metric returns.

Examples
--------
A new metric module needs only the expression; the Series path comes from the decorator:

>>> import polars as pl
>>> from obsbench.metrics._common import metric, rolling_metric, to_expr
>>> @metric()
... def mean_return(ret):
...     return to_expr(ret).mean()
>>> mean_return(pl.Series([0.01, 0.03]))
0.02
>>> pl.DataFrame({"ret": [1.0, 2.0, 4.0]}).select(
...     rolling_metric(mean_return("ret"), window=2)
... ).to_series().to_list()
[None, 1.5, 3.0]
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Literal, ParamSpec, TypeVar

import polars as pl

from obsbench.errors import InvalidArgumentType, InvalidParameter

P = ParamSpec("P")
R = TypeVar("R")

NAN = float("nan")
"""The value of an undefined metric (empty input, zero dispersion, too few rows)."""


def to_expr(value: object, *, param_name: str = "ret") -> pl.Expr:
    """Normalise a column name or expression to a ``pl.Expr``.

    Parameters
    ----------
    value
        A column name (``str``) or a ``pl.Expr``.
    param_name
        The parameter's name, for the error message.

    Raises
    ------
    InvalidArgumentType
        For anything else (lists, arrays, Series; Series are handled by :func:`metric`).
    """
    if isinstance(value, pl.Expr):
        return value
    if isinstance(value, str):
        return pl.col(value)
    msg = f"{param_name} must be a column name or a polars expression, got {type(value).__name__}"
    raise InvalidArgumentType(
        msg,
        hint=f'pass {param_name}="ret", pl.col("ret") or a pl.Series '
        "(a list or array: wrap it in pl.Series first).",
    )


def ensure_choice(value: str, choices: Iterable[str], *, param_name: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`InvalidParameter`."""
    valid = tuple(choices)
    if value not in valid:
        raise InvalidParameter.from_choices(param_name, value, valid)
    return value


def ensure_level(level: float, *, param_name: str = "level") -> float:
    """Return ``level`` as a float in the open interval (0, 1) (a confidence level)."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
        msg = f"invalid {param_name}={level!r}: a confidence level must lie strictly in (0, 1)"
        raise InvalidParameter(msg, hint=f"use e.g. {param_name}=0.95 for the 95% level.")
    return float(level)


def ensure_positive(value: float, *, param_name: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (e.g. ``periods_per_year``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        msg = f"invalid {param_name}={value!r}: must be a finite number > 0"
        raise InvalidParameter(
            msg, hint=f"use e.g. {param_name}=252 for daily, 52 weekly or 12 monthly returns."
        )
    return float(value)


def ensure_window(window: int, *, param_name: str = "window") -> int:
    """Return ``window`` if it is an ``int`` >= 1 (a number of rows)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        msg = f"invalid {param_name}={window!r}: must be an int >= 1 (a number of rows)"
        raise InvalidParameter(msg, hint=f"use e.g. {param_name}=63 for a quarter of days.")
    return window


def nan_where(condition: pl.Expr, value: pl.Expr) -> pl.Expr:
    """``NaN`` where ``condition`` holds, else ``value``; a null ``value`` also becomes ``NaN``."""
    return pl.when(condition).then(pl.lit(NAN)).otherwise(value).fill_null(NAN)


def metric(
    *, data: tuple[str, ...] = ("ret",), output: Literal["scalar", "series"] = "scalar"
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Give an expression-building metric its ``pl.Series`` convenience.

    The decorated function is written for column names and expressions only. When the
    arguments named in ``data`` are all ``pl.Series`` (of one length), the wrapper puts
    them in a frame under the parameter names, evaluates the function's expression there
    with ``select`` and returns the scalar (``output="scalar"``, via ``.item()``) or the
    Series (``output="series"``, named like the first data Series). Otherwise it calls the
    function unchanged, so the Series path can never diverge from the expression path.

    Parameters
    ----------
    data
        Names of the data parameters (``("ret",)``, or ``("ret", "benchmark")``).
    output
        What the Series path returns.

    Raises
    ------
    InvalidArgumentType
        If some but not all data arguments are Series.
    InvalidParameter
        If the Series differ in length.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            given = {name: bound.arguments[name] for name in data if name in bound.arguments}
            series = {n: v for n, v in given.items() if isinstance(v, pl.Series)}
            if not series:
                return fn(*args, **kwargs)
            if len(series) != len(given):
                others = sorted(set(given) - set(series))
                msg = f"{fn.__name__}: {sorted(series)} are Series but {others} are not"
                raise InvalidArgumentType(
                    msg, hint="pass all data arguments as pl.Series, or all as column names."
                )
            lengths = {name: len(s) for name, s in series.items()}
            if len(set(lengths.values())) > 1:
                msg = f"{fn.__name__}: Series of different lengths {lengths}"
                raise InvalidParameter(msg, hint="align the Series first (e.g. join on ts).")
            frame = pl.DataFrame([s.alias(name) for name, s in series.items()])
            for name in series:
                bound.arguments[name] = name
            result = frame.select(fn(*bound.args, **bound.kwargs))
            if output == "scalar":
                return result.item()  # type: ignore[no-any-return]
            first = next(iter(series.values()))
            return result.to_series().alias(first.name)  # type: ignore[return-value]

        wrapper.__obsbench_metric__ = {"data": data, "output": output}  # type: ignore[attr-defined]
        return wrapper

    return decorate


def let(value: pl.Expr, formula: pl.Expr) -> pl.Expr:
    """Evaluate ``formula`` (written over ``pl.element()``) with ``value`` computed once.

    ``let(x, f(pl.element()))`` equals ``f(x)`` for any aggregating ``f``, in every context
    (``select``, ``group_by().agg()``, ``over()``, ``Expr.rolling``), but evaluates ``x``
    once per group however often ``f`` refers to it. Use it when ``x`` is costly (a
    cleaning pass, a cumulative product, a sort) and ``f`` refers to it more than once.

    Parameters
    ----------
    value
        The intermediate to bind (one value per row of the group).
    formula
        An expression over ``pl.element()`` that aggregates to one value (a ``pl.struct``
        of several aggregations is fine: unnest it afterwards).

    Examples
    --------
    >>> import polars as pl
    >>> e = pl.element()
    >>> df = pl.DataFrame({"g": ["a", "a", "b"], "x": [1.0, 3.0, 5.0]})
    >>> df.group_by("g", maintain_order=True).agg(let(pl.col("x") * 2, e.max() - e.min()))
    shape: (2, 2)
    ┌─────┬─────┐
    │ g   ┆ x   │
    │ --- ┆ --- │
    │ str ┆ f64 │
    ╞═════╪═════╡
    │ a   ┆ 4.0 │
    │ b   ┆ 0.0 │
    └─────┴─────┘
    """
    return value.implode().list.agg(formula)


def let_struct(value: pl.Expr, *formulas: pl.Expr) -> pl.Expr:
    """Like :func:`let` for several named formulas at once, returned as one struct column.

    Unnest the result (``frame.unnest(name)``) to get one column per formula. (A struct
    body in ``list.agg`` is mistyped by polars' lazy schema resolution, so this uses
    ``list.eval`` and takes the single element.)

    Examples
    --------
    >>> import polars as pl
    >>> e = pl.element()
    >>> df = pl.DataFrame({"x": [1.0, 3.0]})
    >>> df.select(let_struct(pl.col("x"), e.min().alias("lo"), e.max().alias("hi"))).unnest("x")
    shape: (1, 2)
    ┌─────┬─────┐
    │ lo  ┆ hi  │
    │ --- ┆ --- │
    │ f64 ┆ f64 │
    ╞═════╪═════╡
    │ 1.0 ┆ 3.0 │
    └─────┴─────┘
    """
    return value.implode().list.eval(pl.struct(*formulas)).list.first()


def rolling_metric(expr: pl.Expr, *, window: int) -> pl.Expr:
    """Evaluate an aggregating expression over each row's trailing ``window`` rows.

    The single way obsbench derives rolling metrics: ``expr`` is the base metric's own
    expression (e.g. ``sharpe_ratio("ret")``), evaluated by ``Expr.rolling`` over a row
    index, so the rolling value at row ``i`` is exactly the base metric of rows
    ``i - window + 1 .. i``. The first ``window - 1`` rows, which have no full window,
    are null (empyrical's ``roll_*`` functions omit them instead).

    Use ``.over("strategy")`` for one rolling series per group; the frame must be sorted
    by time within each group.

    Parameters
    ----------
    expr
        An expression that aggregates to one value (any obsbench scalar metric).
    window
        Number of rows per window (>= 1).

    Returns
    -------
    pl.Expr
        One value per input row.
    """
    window = ensure_window(window)
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    rolled = expr.rolling(index_column=index, period=f"{window}i")
    return pl.when(index >= window - 1).then(rolled)
