"""Book risk: positions, gross/net exposure, limit utilisation and stress tests.

The inputs are small frames a risk officer can read: ``positions`` (``strategy``,
``symbol``, signed ``qty``, from :func:`positions`), ``prices`` (``symbol``, ``px``, from
:func:`latest_marks`), ``sectors`` (``symbol``, ``sector``), ``limits`` (``scope``,
``name``, ``metric``, ``limit``) and ``scenarios`` (``scenario``, ``scope``, ``name``,
``shock``). Limits, sectors and scenarios also load from YAML (:func:`load_limits`,
:func:`load_sectors`, :func:`load_scenarios`); obsbench ships a sector map of the
simulator's tickers, three named stress scenarios (``equity_crash``, ``tech_selloff``,
``rates_shock``) and an example limits file in ``obsbench/data/``.

Conventions
-----------
- **Notional** of a position is ``qty x px`` (signed: short positions are negative).
- **Exposures** of a group: ``long = sum(max(n, 0))``, ``short = sum(max(-n, 0))``
  (a positive amount), ``gross = long + short = sum(|n|)``, ``net = long - short =
  sum(n)``.
- **Utilisation** is ``|exposure| / limit``; a breach is utilisation > 1 (a book exactly
  at its limit is not in breach).
- **Stress P&L** of a shock ``k`` (a fractional move, -0.1 = -10%) is ``qty x px x k``;
  losses are negative (P&L sign, unlike VaR).
- **No silent drops.** A position whose symbol has no price, or no sector when sectors are
  needed, is an error listing the symbols.

Examples
--------
>>> import polars as pl
>>> from obsbench.metrics.risk import exposure
>>> pos = pl.DataFrame(
...     {
...         "strategy": ["a", "a", "b", "b"],
...         "symbol": ["X", "Y", "X", "Y"],
...         "qty": [100.0, -50.0, -20.0, 0.0],
...     }
... )
>>> px = pl.DataFrame({"symbol": ["X", "Y"], "px": [10.0, 20.0]})
>>> exposure(pos, px)
shape: (2, 6)
┌──────────┬───────────┬────────┬────────┬────────┬────────┐
│ strategy ┆ positions ┆ long   ┆ short  ┆ gross  ┆ net    │
│ ---      ┆ ---       ┆ ---    ┆ ---    ┆ ---    ┆ ---    │
│ str      ┆ u32       ┆ f64    ┆ f64    ┆ f64    ┆ f64    │
╞══════════╪═══════════╪════════╪════════╪════════╪════════╡
│ a        ┆ 2         ┆ 1000.0 ┆ 1000.0 ┆ 2000.0 ┆ 0.0    │
│ b        ┆ 2         ┆ 0.0    ┆ 200.0  ┆ 200.0  ┆ -200.0 │
└──────────┴───────────┴────────┴────────┴────────┴────────┘
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import polars as pl

from obsbench import schemas
from obsbench._typing import IntoExpr
from obsbench.errors import ConfigError, SchemaError
from obsbench.metrics._common import metric, nan_where, to_expr
from obsbench.metrics.execution import _last_mid, _validated, mid_at, side_sign
from obsbench.metrics.sla import check_columns

__all__ = [
    "EXPOSURE_METRICS",
    "LIMIT_SCOPES",
    "exposure",
    "exposure_utilisation",
    "gross_exposure",
    "latest_marks",
    "limit_utilisation",
    "load_limits",
    "load_scenarios",
    "load_sectors",
    "long_exposure",
    "net_exposure",
    "positions",
    "short_exposure",
    "stress_test",
]

F = TypeVar("F", pl.DataFrame, pl.LazyFrame)
Frame: TypeAlias = pl.DataFrame | pl.LazyFrame
Source: TypeAlias = str | Path | Mapping[str, Any] | pl.DataFrame | None

ExposureMetric: TypeAlias = Literal["long", "short", "gross", "net"]
EXPOSURE_METRICS: tuple[ExposureMetric, ...] = ("long", "short", "gross", "net")
LIMIT_SCOPES: tuple[str, ...] = ("firm", "strategy", "symbol", "sector")
WILDCARD = "*"
"""A limit ``name`` that applies to every member of its scope without a limit of its own."""

_DATA = "obsbench"


# =========================================================================== expressions


@metric(data=("notional",))
def long_exposure(notional: IntoExpr = "notional") -> pl.Expr:
    """Long exposure ``sum(max(n, 0))`` of signed notionals (named ``long``).

    Examples
    --------
    >>> import polars as pl
    >>> long_exposure(pl.Series([100.0, -40.0, 10.0]))
    110.0
    """
    return to_expr(notional, param_name="notional").clip(lower_bound=0.0).sum().alias("long")


@metric(data=("notional",))
def short_exposure(notional: IntoExpr = "notional") -> pl.Expr:
    """Short exposure ``sum(max(-n, 0))``, a positive amount (named ``short``).

    Examples
    --------
    >>> import polars as pl
    >>> short_exposure(pl.Series([100.0, -40.0, 10.0]))
    40.0
    """
    return (-to_expr(notional, param_name="notional")).clip(lower_bound=0.0).sum().alias("short")


@metric(data=("notional",))
def gross_exposure(notional: IntoExpr = "notional") -> pl.Expr:
    """Gross exposure ``sum(|n|)`` = long + short (named ``gross``).

    Examples
    --------
    >>> import polars as pl
    >>> gross_exposure(pl.Series([100.0, -40.0, 10.0]))
    150.0
    """
    return to_expr(notional, param_name="notional").abs().sum().alias("gross")


@metric(data=("notional",))
def net_exposure(notional: IntoExpr = "notional") -> pl.Expr:
    """Net exposure ``sum(n)`` = long - short (named ``net``).

    Examples
    --------
    >>> import polars as pl
    >>> net_exposure(pl.Series([100.0, -40.0, 10.0]))
    70.0
    """
    return to_expr(notional, param_name="notional").sum().alias("net")


@metric(data=("value", "limit"), output="series")
def exposure_utilisation(value: IntoExpr = "value", limit: IntoExpr = "limit") -> pl.Expr:
    """Fraction of a limit used: ``|value| / limit`` (named ``utilisation``).

    A non-positive limit gives NaN (:func:`load_limits` rejects such limits).

    Examples
    --------
    >>> import polars as pl
    >>> exposure_utilisation(pl.Series([-300.0, 50.0]), pl.Series([200.0, 100.0])).to_list()
    [1.5, 0.5]
    """
    lim = to_expr(limit, param_name="limit")
    return nan_where(lim <= 0, to_expr(value, param_name="value").abs() / lim).alias("utilisation")


# =========================================================================== loaders


def _read_yaml(source: str | Path, kind: str) -> Any:
    import yaml

    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        msg = f"cannot read {kind} file {path}: {exc.strerror}"
        raise ConfigError(msg, hint=f"pass an existing YAML file of {kind}.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{kind} file {path} is not valid YAML: {exc}"
        raise ConfigError(msg, hint="check the indentation and quoting.") from None


def _shipped(name: str) -> Any:
    import yaml

    return yaml.safe_load(resources.files(_DATA).joinpath("data", name).read_text())


def _document(source: Source, kind: str, key: str, default: str | None) -> Any:
    """The ``key`` entry of a YAML document given as a path, mapping or the shipped file."""
    if source is None:
        if default is None:
            msg = f"no {kind} given"
            raise ConfigError(msg, hint=f"pass a YAML path, a mapping or a frame of {kind}.")
        doc = _shipped(default)
    elif isinstance(source, str | Path):
        doc = _read_yaml(source, kind)
    else:
        doc = source
    if not isinstance(doc, Mapping) or key not in doc:
        msg = f"{kind}: expected a mapping with a top-level {key!r} key"
        raise ConfigError(msg, hint=f"see obsbench/data/ for an example {kind} file.")
    return doc[key]


def load_sectors(source: Source = None) -> pl.DataFrame:
    """Symbol -> sector mapping as a frame (``symbol``, ``sector``).

    Parameters
    ----------
    source
        A frame with ``symbol`` and ``sector``; a mapping ``{"sectors": {symbol: sector}}``
        or ``{symbol: sector}``; a YAML file of the former; or None for the shipped map
        of the simulator's tickers (``obsbench/data/sectors.yaml``).

    Examples
    --------
    >>> load_sectors().filter(symbol="JPM").row(0)
    ('JPM', 'Financials')
    """
    if isinstance(source, pl.DataFrame):
        check_columns(source, ("symbol", "sector"), dataset="sectors")
        frame = source.select(pl.col("symbol", "sector").cast(pl.String))
    else:
        if isinstance(source, Mapping) and "sectors" not in source:
            source = {"sectors": source}
        mapping = _document(source, "sectors", "sectors", "sectors.yaml")
        if not isinstance(mapping, Mapping):
            msg = "sectors: expected a mapping symbol -> sector"
            raise ConfigError(msg, hint="write `sectors: {AAPL: Information Technology}`.")
        frame = pl.DataFrame(
            {"symbol": [str(k) for k in mapping], "sector": [str(v) for v in mapping.values()]},
            schema={"symbol": pl.String, "sector": pl.String},
        )
    dup = frame.filter(pl.col("symbol").is_duplicated())["symbol"].unique().sort()
    if dup.len():
        dataset = "sectors"
        raise SchemaError(dataset, [f"symbols mapped more than once: {', '.join(dup)}"])
    return frame


def load_limits(source: Source) -> pl.DataFrame:
    """Risk limits as a frame (``scope``, ``name``, ``metric``, ``limit``).

    Parameters
    ----------
    source
        A frame with those columns, a mapping ``{"limits": [{scope, name, metric,
        limit}, ...]}`` or a YAML file of it (``obsbench/data/limits.example.yaml``).

    Notes
    -----
    ``scope`` is one of ``firm``, ``strategy``, ``symbol``, ``sector``; ``name`` the
    member (``"*"``: every member without its own limit; always ``"*"`` for ``firm``);
    ``metric`` one of ``long``, ``short``, ``gross``, ``net``; ``limit`` > 0 in currency.

    Raises
    ------
    SchemaError
        Listing every bad row (unknown scope or metric, non-positive limit, duplicates).

    Examples
    --------
    >>> load_limits(
    ...     {"limits": [{"scope": "firm", "name": "*", "metric": "gross", "limit": 1e6}]}
    ... ).row(0)
    ('firm', '*', 'gross', 1000000.0)
    """
    cols = {"scope": pl.String, "name": pl.String, "metric": pl.String, "limit": pl.Float64}
    if isinstance(source, pl.DataFrame):
        check_columns(source, cols, dataset="limits", numeric=("limit",))
        frame = source.select(pl.col(c).cast(t) for c, t in cols.items())
    else:
        rows = _document(source, "limits", "limits", None)
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            msg = "limits: expected a list of {scope, name, metric, limit} mappings"
            raise ConfigError(msg, hint="see obsbench/data/limits.example.yaml.")
        frame = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows], schema=cols, orient="row")
    frame = frame.with_columns(
        pl.when(pl.col("scope") == "firm").then(pl.lit(WILDCARD)).otherwise("name").alias("name")
    )
    problems = []
    checks = {
        f"scope not one of {list(LIMIT_SCOPES)}": ~pl.col("scope").is_in(LIMIT_SCOPES),
        f"metric not one of {list(EXPOSURE_METRICS)}": ~pl.col("metric").is_in(EXPOSURE_METRICS),
        "limit missing or not > 0": ~(pl.col("limit") > 0).fill_null(False),
        "name missing": pl.col("name").is_null(),
        "duplicate (scope, name, metric)": pl.struct("scope", "name", "metric").is_duplicated(),
    }
    for label, bad in checks.items():
        rows_bad = frame.with_row_index("row").filter(bad.fill_null(True))
        if rows_bad.height:
            shown = "; ".join(
                f"row {i}: {s}/{n}/{m}/{v}"
                for i, s, n, m, v in rows_bad.select("row", *cols).head(20).rows()
            )
            problems.append(f"{label}: {shown}")
    if problems:
        dataset = "limits"
        raise SchemaError(dataset, problems, hint="see obsbench/data/limits.example.yaml.")
    return frame


def load_scenarios(source: Source = None) -> pl.DataFrame:
    """Stress scenarios as a frame (``scenario``, ``scope``, ``name``, ``shock``).

    Parameters
    ----------
    source
        A frame with those columns; a mapping ``{"scenarios": {name: {"shocks": {"all":
        k, "sector": {sector: k}, "symbol": {symbol: k}}}}}`` or a YAML file of it; or
        None for the three shipped scenarios (``obsbench/data/scenarios.yaml``):
        ``equity_crash``, ``tech_selloff`` and ``rates_shock``.

    Notes
    -----
    ``scope`` is ``all`` (name ``"*"``), ``sector`` or ``symbol``; a shock is a
    fractional price move > -1. The most specific scope applies to each symbol.

    Examples
    --------
    >>> s = load_scenarios()
    >>> sorted(s["scenario"].unique())
    ['equity_crash', 'rates_shock', 'tech_selloff']
    """
    cols = {"scenario": pl.String, "scope": pl.String, "name": pl.String, "shock": pl.Float64}
    if isinstance(source, pl.DataFrame):
        check_columns(source, cols, dataset="scenarios", numeric=("shock",))
        frame = source.select(pl.col(c).cast(t) for c, t in cols.items())
    else:
        doc = _document(source, "scenarios", "scenarios", "scenarios.yaml")
        rows: list[tuple[str, str, str, object]] = []
        problems: list[str] = []
        for scenario, spec in (doc or {}).items():
            shocks = spec.get("shocks") if isinstance(spec, Mapping) else None
            if not isinstance(shocks, Mapping):
                problems.append(f"scenario {scenario!r} has no 'shocks' mapping")
                continue
            for scope, value in shocks.items():
                if scope == "all":
                    rows.append((str(scenario), "all", WILDCARD, value))
                elif scope in ("sector", "symbol") and isinstance(value, Mapping):
                    rows.extend((str(scenario), scope, str(k), v) for k, v in value.items())
                else:
                    problems.append(
                        f"scenario {scenario!r}: unknown shock scope {scope!r} "
                        "(use all: k, sector: {...}, symbol: {...})"
                    )
        if problems:
            dataset = "scenarios"
            raise SchemaError(dataset, problems)
        frame = pl.DataFrame(rows, schema={**cols, "shock": pl.Object}, orient="row").with_columns(
            pl.col("shock").map_elements(_as_float, return_dtype=pl.Float64)
        )
    bad = frame.filter(
        ~pl.col("scope").is_in(("all", "sector", "symbol"))
        | ~(pl.col("shock") > -1.0).fill_null(False)
        | ~pl.col("shock").is_finite().fill_null(False)
        | pl.struct("scenario", "scope", "name").is_duplicated()
    )
    if bad.height:
        shown = "; ".join(f"{a}/{b}/{c}/{d}" for a, b, c, d in bad.head(20).rows())
        dataset = "scenarios"
        raise SchemaError(
            dataset,
            [
                f"bad shock rows (scope not all/sector/symbol, shock not a number > -1, "
                f"or duplicated): {shown}"
            ],
        )
    return frame


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# =========================================================================== frames


def positions(
    orders: F,
    fills: Frame,
    *,
    at: datetime | None = None,
    initial_positions: Frame | None = None,
) -> F:
    """Net position per (strategy, symbol) from the fills up to ``at``.

    Parameters
    ----------
    orders, fills
        Canonical ``orders`` (for each fill's strategy) and ``fills``.
    at
        Count fills with ``ts <= at`` (default: all).
    initial_positions
        ``strategy``, ``symbol``, ``qty``: positions held before the first fill.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``strategy``, ``symbol``, ``qty`` (signed: long > 0), sorted; flat pairs are kept
        (``qty`` 0) so a book that traded shows every name it touched.

    Raises
    ------
    SchemaError
        As :func:`~obsbench.metrics.execution.validate_execution`.
    """
    o, f, _ = _validated(orders, fills)
    lf = f.lazy()
    if at is not None:
        lf = lf.filter(pl.col("ts") <= pl.lit(at).cast(schemas.TIMESTAMP))
    traded = lf.join(o.lazy().select("order_id", "strategy"), on="order_id").select(
        "strategy", "symbol", (side_sign("side") * pl.col("qty")).alias("qty")
    )
    parts = [traded]
    if initial_positions is not None:
        check_columns(
            initial_positions,
            ("strategy", "symbol", "qty"),
            numeric=("qty",),
            dataset="initial_positions",
        )
        parts.append(
            initial_positions.lazy().select(
                pl.col("strategy", "symbol").cast(pl.String), pl.col("qty").cast(pl.Float64)
            )
        )
    out = (
        pl.concat(parts)
        .group_by("strategy", "symbol")
        .agg(pl.col("qty").sum())
        .sort("strategy", "symbol")
        .collect()
    )
    return out.lazy() if isinstance(orders, pl.LazyFrame) else out  # type: ignore[return-value]


def latest_marks(quotes: F, *, at: datetime | None = None) -> F:
    """Price per symbol: the mid of its last quote at or before ``at`` (default: last).

    Parameters
    ----------
    quotes
        Canonical ``quotes``.
    at
        Valuation time (UTC); symbols without a quote by then are absent.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        ``symbol``, ``px``, sorted by symbol.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timezone
    >>> ts = [datetime(2024, 1, 2, h, tzinfo=timezone.utc) for h in (14, 15)]
    >>> q = pl.DataFrame(
    ...     {
    ...         "symbol": ["A", "A"],
    ...         "ts": ts,
    ...         "bid": [9.9, 10.9],
    ...         "ask": [10.1, 11.1],
    ...         "mid": [10.0, 11.0],
    ...     }
    ... )
    >>> latest_marks(q, at=datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)).rows()
    [('A', 10.0)]
    """
    lazy = isinstance(quotes, pl.LazyFrame)
    q = schemas.validate(quotes.collect() if lazy else quotes, "quotes", allow_extra=True)
    symbols = q.lazy().select("symbol").unique()
    if at is None:
        out = q.lazy().group_by("symbol").agg(_last_mid().alias("px"))
    else:
        when = symbols.with_columns(pl.lit(at).cast(schemas.TIMESTAMP).alias("_at"))
        out = mid_at(when, q.lazy(), at="_at", name="px").drop("_at").drop_nulls("px")
    result = out.sort("symbol").collect()
    return result.lazy() if lazy else result  # type: ignore[return-value]


def _marked(
    positions: Frame, prices: Frame, sectors: Source | bool, need_sector: bool
) -> pl.DataFrame:
    """Positions with ``px``, ``notional`` (and ``sector``), every symbol priced/mapped.

    Inside :func:`obsbench.schemas.validation_memo`, once per set of frame objects (the
    risk page marks the same positions for four exposures, the limits and two stresses).
    """
    return schemas.memoized(
        ("marked", need_sector),
        (positions, prices, sectors),
        lambda: _mark(positions, prices, sectors, need_sector),
    )


def _mark(
    positions: Frame, prices: Frame, sectors: Source | bool, need_sector: bool
) -> pl.DataFrame:
    check_columns(positions, ("strategy", "symbol", "qty"), numeric=("qty",), dataset="positions")
    check_columns(prices, ("symbol", "px"), numeric=("px",), dataset="prices")
    pos = (
        positions.lazy()
        .select(pl.col("strategy", "symbol").cast(pl.String), pl.col("qty").cast(pl.Float64))
        .collect()
    )
    px = prices.lazy().select(pl.col("symbol").cast(pl.String), pl.col("px").cast(pl.Float64))
    px = px.collect()
    problems = []
    bad_px = px.filter(~(pl.col("px") > 0) | ~pl.col("px").is_finite())["symbol"]
    if bad_px.len():
        problems.append(f"prices not > 0 for symbol(s): {', '.join(bad_px.sort())}")
    if px["symbol"].is_duplicated().any():
        dup = px.filter(pl.col("symbol").is_duplicated())["symbol"].unique().sort()
        problems.append(f"more than one price for symbol(s): {', '.join(dup)}")
    unpriced = pos.filter(pl.col("qty") != 0).join(px, on="symbol", how="anti")["symbol"]
    if unpriced.len():
        problems.append(f"no price for position symbol(s): {', '.join(unpriced.unique().sort())}")
    out = pos.join(px, on="symbol", how="left").with_columns(
        (pl.col("qty") * pl.col("px").fill_null(0.0)).alias("notional")
    )
    if need_sector:
        sec = load_sectors(None if sectors is True else sectors)  # type: ignore[arg-type]
        out = out.join(sec, on="symbol", how="left")
        unmapped = out.filter(pl.col("sector").is_null())["symbol"].unique().sort()
        if unmapped.len():
            problems.append(f"no sector for symbol(s): {', '.join(unmapped)}")
    if problems:
        dataset = "positions"
        raise SchemaError(
            dataset,
            problems,
            hint="price every held symbol (risk.latest_marks) and map every symbol to a sector.",
        )
    return out


def _exposure_aggs() -> list[pl.Expr]:
    return [
        pl.len().alias("positions"),
        long_exposure(),
        short_exposure(),
        gross_exposure(),
        net_exposure(),
    ]


def exposure(
    positions: F,
    prices: Frame,
    *,
    by: Sequence[str] = ("strategy",),
    sectors: Source = None,
) -> F:
    """Long, short, gross and net exposure by strategy, symbol, sector or any mix.

    Parameters
    ----------
    positions
        ``strategy``, ``symbol``, ``qty`` (:func:`positions`).
    prices
        ``symbol``, ``px`` (:func:`latest_marks`).
    by
        Any of ``strategy``, ``symbol``, ``sector`` (empty: the whole book).
    sectors
        Sector mapping (see :func:`load_sectors`; default the shipped map); used only
        when ``by`` contains ``sector``.

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per group, sorted: ``positions`` (rows counted), ``long``, ``short``,
        ``gross``, ``net`` in currency.

    Raises
    ------
    SchemaError
        For positions without a price or (by sector) without a sector.
    """
    keys = list(by)
    marked = _marked(positions, prices, sectors, "sector" in keys).lazy()
    out = (
        marked.group_by(keys).agg(_exposure_aggs()).sort(keys)
        if keys
        else marked.select(_exposure_aggs())
    ).collect()
    return out.lazy() if isinstance(positions, pl.LazyFrame) else out  # type: ignore[return-value]


def limit_utilisation(positions: F, prices: Frame, limits: Source, *, sectors: Source = None) -> F:
    """Exposure against each risk limit: value, fraction of the limit used, breach.

    Parameters
    ----------
    positions, prices
        As in :func:`exposure`.
    limits
        Limits as a frame, mapping or YAML path (:func:`load_limits`).
    sectors
        Sector mapping, for ``sector`` limits (default: the shipped map).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per (scope, member, metric) that has a limit (its own or the scope's
        ``"*"`` limit): ``scope``, ``name`` (the member; ``"*"`` for firm), ``metric``,
        ``value`` (the exposure), ``limit``, ``limit_name`` (the limit row that applied:
        the member or ``"*"``), ``utilisation`` (:func:`exposure_utilisation`) and ``breach``
        (utilisation > 1); sorted by utilisation, highest first.

    Examples
    --------
    >>> import polars as pl
    >>> pos = pl.DataFrame({"strategy": ["a", "b"], "symbol": ["X", "X"], "qty": [100.0, -30.0]})
    >>> px = pl.DataFrame({"symbol": ["X"], "px": [10.0]})
    >>> lim = {"limits": [{"scope": "strategy", "name": "*", "metric": "gross", "limit": 500.0}]}
    >>> limit_utilisation(pos, px, lim).select("name", "value", "utilisation", "breach").rows()
    [('a', 1000.0, 2.0, True), ('b', 300.0, 0.6, False)]
    """
    lim = load_limits(limits)
    scopes = lim["scope"].unique().to_list()
    marked = _marked(positions, prices, sectors, "sector" in scopes).lazy()
    frames = []
    for scope in sorted(scopes):
        if scope == "firm":
            grouped = marked.select(pl.lit(WILDCARD).alias("name"), *_exposure_aggs())
        else:
            grouped = marked.group_by(pl.col(scope).alias("name")).agg(_exposure_aggs())
        frames.append(
            grouped.unpivot(
                on=list(EXPOSURE_METRICS),
                index="name",
                variable_name="metric",
                value_name="value",
            ).with_columns(pl.lit(scope).alias("scope"))
        )
    values = pl.concat(frames).select("scope", "name", "metric", "value")
    own = lim.lazy().filter(pl.col("name") != WILDCARD)
    wild = lim.lazy().filter(pl.col("name") == WILDCARD).drop("name").rename({"limit": "_wild"})
    out = (
        values.join(own, on=["scope", "name", "metric"], how="left")
        .join(wild, on=["scope", "metric"], how="left")
        .with_columns(
            pl.when(pl.col("limit").is_not_null())
            .then(pl.col("name"))
            .when(pl.col("_wild").is_not_null())
            .then(pl.lit(WILDCARD))
            .alias("limit_name"),
            pl.coalesce("limit", "_wild").alias("limit"),
        )
        .drop("_wild")
        .filter(pl.col("limit").is_not_null())
        .with_columns(exposure_utilisation())
        .with_columns((pl.col("utilisation") > 1.0).alias("breach"))
        .sort(["utilisation", "scope", "name", "metric"], descending=[True, False, False, False])
        .select("scope", "name", "metric", "value", "limit", "limit_name", "utilisation", "breach")
        .collect()
    )
    return out.lazy() if isinstance(positions, pl.LazyFrame) else out  # type: ignore[return-value]


def stress_test(
    positions: F,
    prices: Frame,
    scenarios: Source = None,
    *,
    by: Sequence[str] = ("strategy",),
    sectors: Source = None,
) -> F:
    """P&L of each scenario's price shocks applied to the current positions.

    Parameters
    ----------
    positions, prices
        As in :func:`exposure`.
    scenarios
        Scenarios as a frame, mapping or YAML path (:func:`load_scenarios`); default the
        three shipped ones.
    by
        Group columns: any of ``strategy``, ``symbol``, ``sector``.
    sectors
        Sector mapping for sector shocks (default: the shipped map).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        One row per scenario and group, sorted: ``net`` (exposure before the shock) and
        ``pnl = sum(qty x px x shock)`` (losses negative).

    Notes
    -----
    Each symbol takes the most specific shock of the scenario: its ``symbol`` shock,
    else its sector's, else the scenario's ``all`` shock, else 0 (unshocked). Every
    position needs a sector when any scenario has sector shocks, so a name missing from
    the mapping can never escape a sector shock unnoticed.

    Examples
    --------
    >>> import polars as pl
    >>> pos = pl.DataFrame(
    ...     {"strategy": ["a", "a"], "symbol": ["JPM", "AAPL"], "qty": [100.0, -50.0]}
    ... )
    >>> px = pl.DataFrame({"symbol": ["JPM", "AAPL"], "px": [200.0, 100.0]})
    >>> for row in stress_test(pos, px).rows():
    ...     print(row)
    ('equity_crash', 'a', 15000.0, -2700.0)
    ('rates_shock', 'a', 15000.0, 850.0)
    ('tech_selloff', 'a', 15000.0, 400.0)
    """
    sc = load_scenarios(scenarios)
    keys = list(by)
    need_sector = "sector" in keys or (sc["scope"] == "sector").any()
    marked = _marked(positions, prices, sectors, need_sector).lazy()
    if not need_sector:
        marked = marked.with_columns(pl.lit(None, pl.String).alias("sector"))
    names = sc.lazy().select("scenario").unique()
    level = {
        scope: sc.lazy()
        .filter(pl.col("scope") == scope)
        .select("scenario", pl.col("name").alias(col), pl.col("shock").alias(f"_k_{scope}"))
        for scope, col in (("symbol", "symbol"), ("sector", "sector"))
    }
    every = (
        sc.lazy()
        .filter(pl.col("scope") == "all")
        .select("scenario", pl.col("shock").alias("_k_all"))
    )
    shocked = (
        marked.join(names, how="cross")
        .join(level["symbol"], on=["scenario", "symbol"], how="left")
        .join(level["sector"], on=["scenario", "sector"], how="left")
        .join(every, on="scenario", how="left")
        .with_columns(pl.coalesce("_k_symbol", "_k_sector", "_k_all", pl.lit(0.0)).alias("shock"))
    )
    out = (
        shocked.group_by(["scenario", *keys])
        .agg(
            net_exposure(),
            (pl.col("notional") * pl.col("shock")).sum().alias("pnl"),
        )
        .sort(["scenario", *keys])
        .collect()
    )
    if not keys:  # the whole book has a row per scenario, P&L 0 when nothing is held
        out = (
            names.collect()
            .join(out, on="scenario", how="left")
            .with_columns(pl.col("net", "pnl").fill_null(0.0))
            .sort("scenario")
        )
    return out.lazy() if isinstance(positions, pl.LazyFrame) else out  # type: ignore[return-value]
