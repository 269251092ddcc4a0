"""Canonical datasets: the column contract between loaders, metrics, apps and notebooks.

Each dataset of ``DESIGN.md`` section 3 is a `dataframely <https://github.com/Quantco/dataframely>`_
schema. dataframely evaluates the row rules (nulls, ranges, allowed values, ask >= bid) in one
polars pass; obsbench adds what dataframely does not say clearly on its own: missing and extra
columns, dtype problems (naive timestamps above all) and messages that name the offending keys.

All timestamps are ``Datetime("us", "UTC")``. Free-form key/value data (span attributes,
log fields, sample labels, audit details) is a JSON string, so that any key set fits one
column and round-trips through Parquet, SQL and Prometheus unchanged.

Examples
--------
>>> import polars as pl
>>> from obsbench import schemas
>>> schemas.validate(pl.DataFrame({"symbol": ["AAPL"], "bid": ["2.0"]}), "quotes")
Traceback (most recent call last):
...
obsbench.errors.SchemaError: 2 problem(s) in 'quotes' data:
  - missing column(s): ts, ask, mid
  - column 'bid' has dtype String, expected Float64
Hint: fix the listed columns/rows; ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, overload

import dataframely as dy
import polars as pl

from obsbench.errors import SchemaError, UnknownName

TIME_ZONE = "UTC"
TIMESTAMP = pl.Datetime("us", TIME_ZONE)
SIDES = ("buy", "sell")
ORDER_STATUSES = ("new", "partially_filled", "filled", "cancelled", "rejected")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SEVERITIES = ("warning", "critical", "emergency")
ALERT_STATES = ("inactive", "pending", "firing", "resolved", "nodata", "error")


def _ts(*, nullable: bool = False) -> dy.Datetime:
    return dy.Datetime(time_zone=TIME_ZONE, time_unit="us", nullable=nullable)


def _one_of(values: tuple[str, ...], *, nullable: bool = False) -> dy.String:
    return dy.String(nullable=nullable, check={f"one of {list(values)}": lambda c: c.is_in(values)})


def _positive(*, nullable: bool = False) -> dy.Float64:
    return dy.Float64(min_exclusive=0.0, nullable=nullable)


class Returns(dy.Schema):
    strategy = dy.String()
    ts = _ts()
    ret = dy.Float64(nullable=True, allow_nan=True, min=-1.0)


class Orders(dy.Schema):
    order_id = dy.String(primary_key=True)
    ts = _ts()
    strategy = dy.String()
    symbol = dy.String()
    side = _one_of(SIDES)
    qty = _positive()
    arrival_px = _positive()
    limit_px = _positive(nullable=True)
    venue = dy.String()
    broker = dy.String()
    status = _one_of(ORDER_STATUSES)


class Fills(dy.Schema):
    fill_id = dy.String(primary_key=True)
    order_id = dy.String()
    ts = _ts()
    symbol = dy.String()
    side = _one_of(SIDES)
    qty = _positive()
    px = _positive()
    fee = dy.Float64(min=0.0)
    venue = dy.String()


class Quotes(dy.Schema):
    symbol = dy.String()
    ts = _ts()
    bid = _positive()
    ask = _positive()
    mid = _positive()

    @dy.rule()
    def ask_not_below_bid(cls) -> pl.Expr:
        return pl.col("ask") >= pl.col("bid")


class Requests(dy.Schema):
    ts = _ts()
    service = dy.String()
    endpoint = dy.String()
    latency_ms = dy.Float64(min=0.0)
    status_code = dy.Int32(min=100, max=599)
    ok = dy.Bool()
    trace_id = dy.String(nullable=True)


class Spans(dy.Schema):
    trace_id = dy.String()
    span_id = dy.String(primary_key=True)
    parent_span_id = dy.String(nullable=True)
    service = dy.String()
    name = dy.String()
    start = _ts()
    end = _ts()
    status = _one_of(("ok", "error", "unset"))
    attributes = dy.String(nullable=True)

    @dy.rule()
    def end_not_before_start(cls) -> pl.Expr:
        return pl.col("end") >= pl.col("start")


class Logs(dy.Schema):
    ts = _ts()
    level = _one_of(LOG_LEVELS)
    service = dy.String()
    message = dy.String()
    trace_id = dy.String(nullable=True)
    fields = dy.String(nullable=True)


class Samples(dy.Schema):
    ts = _ts()
    metric = dy.String()
    labels = dy.String()
    value = dy.Float64(nullable=True, allow_nan=True, allow_inf=True)


class ApiUsage(dy.Schema):
    ts = _ts()
    provider = dy.String()
    endpoint = dy.String()
    used = dy.Int64(min=0)
    limit = dy.Int64(min=1)
    window_s = dy.Int64(min=1)


class Costs(dy.Schema):
    ChargePeriodStart = _ts()
    ChargePeriodEnd = _ts()
    BilledCost = dy.Float64()
    EffectiveCost = dy.Float64()
    ServiceName = dy.String()
    ResourceId = dy.String()
    ProviderName = dy.String()
    Tags = dy.Struct({"team": dy.String(nullable=True), "service": dy.String(nullable=True)})

    @dy.rule()
    def period_not_reversed(cls) -> pl.Expr:
        return pl.col("ChargePeriodEnd") >= pl.col("ChargePeriodStart")


class Audit(dy.Schema):
    seq = dy.Int64(nullable=True, min=1)  # assigned by the audit store
    ts = _ts()
    actor = dy.String()
    action = dy.String()
    resource = dy.String()
    details = dy.String()
    correlation_id = dy.String(nullable=True)
    prev_hash = dy.String(nullable=True)  # assigned by the audit store
    hash = dy.String(nullable=True)  # assigned by the audit store


class Alerts(dy.Schema):
    rule = dy.String()
    severity = _one_of(SEVERITIES)
    state = _one_of(ALERT_STATES)
    labels = dy.String()
    value = dy.Float64(nullable=True, allow_nan=True, allow_inf=True)
    active_at = _ts(nullable=True)
    fired_at = _ts(nullable=True)
    resolved_at = _ts(nullable=True)


class Incidents(dy.Schema):
    """Ground truth of the incidents the simulator injected (for scoring detectors)."""

    incident_id = dy.String(primary_key=True)
    kind = _one_of(
        ("latency_spike", "error_burst", "broker_throttling", "strategy_drawdown", "cost_spike")
    )
    target = dy.String()
    start = _ts()
    end = _ts()
    magnitude = dy.Float64()

    @dy.rule()
    def end_not_before_start(cls) -> pl.Expr:
        return pl.col("end") >= pl.col("start")


SCHEMAS: dict[str, type[dy.Schema]] = {
    "returns": Returns,  # one row per strategy per day (close to close)
    "returns_intraday": Returns,  # one row per strategy per bar (e.g. 1 minute)
    "orders": Orders,
    "fills": Fills,
    "quotes": Quotes,
    "requests": Requests,
    "spans": Spans,
    "logs": Logs,
    "samples": Samples,
    "api_usage": ApiUsage,
    "costs": Costs,
    "audit": Audit,
    "alerts": Alerts,
    "incidents": Incidents,
}
DATASETS: tuple[str, ...] = tuple(SCHEMAS)

# Columns that identify a row in error messages, per dataset.
_KEYS: dict[str, tuple[str, ...]] = {
    "returns": ("strategy", "ts"),
    "returns_intraday": ("strategy", "ts"),
    "orders": ("order_id",),
    "fills": ("fill_id", "order_id"),
    "quotes": ("symbol", "ts"),
    "requests": ("service", "ts"),
    "spans": ("span_id",),
    "logs": ("service", "ts"),
    "samples": ("metric", "ts"),
    "api_usage": ("provider", "ts"),
    "costs": ("ResourceId", "ChargePeriodStart"),
    "audit": ("actor", "ts"),
    "alerts": ("rule", "active_at"),
    "incidents": ("incident_id",),
}
_EXAMPLES = 5


def schema_of(dataset: str) -> pl.Schema:
    """The polars schema (column name -> dtype) of a canonical dataset."""
    return pl.Schema({name: col.dtype for name, col in _schema(dataset).columns().items()})


def describe(dataset: str) -> str:
    """One line per column: ``name: dtype`` and ``(nullable)`` where nulls are allowed."""
    cols = _schema(dataset).columns()
    return "\n".join(
        f"{name}: {col.dtype}{' (nullable)' if col.nullable else ''}" for name, col in cols.items()
    )


def empty(dataset: str) -> pl.DataFrame:
    """An empty frame with the dataset's columns and dtypes."""
    return pl.DataFrame(schema=schema_of(dataset))


@overload
def validate(frame: pl.DataFrame, dataset: str, *, allow_extra: bool = ...) -> pl.DataFrame: ...
@overload
def validate(frame: pl.LazyFrame, dataset: str, *, allow_extra: bool = ...) -> pl.LazyFrame: ...
def validate(
    frame: pl.DataFrame | pl.LazyFrame, dataset: str, *, allow_extra: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """Check ``frame`` against a canonical dataset and return it with canonical dtypes.

    Safe casts are applied silently: integer to float, narrower to wider integers, ``Date``
    to midnight-UTC ``Datetime``, another time unit or an aware time zone to ``us``/UTC,
    categoricals to strings. Everything else is a problem; all problems are collected and
    raised together.

    Parameters
    ----------
    frame
        The data. A ``LazyFrame`` is collected for the row rules and returned lazy again.
    dataset
        One of :data:`DATASETS`.
    allow_extra
        Keep columns the dataset does not define instead of reporting them.

    Returns
    -------
    The frame with the dataset's column order and dtypes (extra columns last, if allowed).

    Raises
    ------
    SchemaError
        Listing every missing or extra column, wrong dtype, naive timestamp, null in a
        required column, value out of range, disallowed category and broken row rule, with
        example keys of the offending rows.
    UnknownName
        If ``dataset`` is not a canonical dataset.
    """
    return memoized(
        ("validate", dataset, allow_extra),
        (frame,),
        lambda: _validate(frame, dataset, allow_extra=allow_extra),
    )


def _validate(
    frame: pl.DataFrame | pl.LazyFrame, dataset: str, *, allow_extra: bool
) -> pl.DataFrame | pl.LazyFrame:
    schema = _schema(dataset)
    lazy = isinstance(frame, pl.LazyFrame)
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    expected = schema_of(dataset)

    problems: list[str] = []
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if extra and not allow_extra:
        problems.append(
            f"unexpected column(s): {', '.join(extra)} (drop them or pass allow_extra=True)"
        )

    casts: list[pl.Expr] = []
    for name, want in expected.items():
        if name not in df.columns:
            continue
        have = df.schema[name]
        fix = _safe_cast(pl.col(name), have, want)
        if isinstance(fix, str):
            problems.append(f"column '{name}' {fix}")
        elif fix is not None:
            casts.append(fix.alias(name))
    if problems:
        raise SchemaError(dataset, problems)

    df = df.with_columns(casts) if casts else df
    ordered = df.select([*expected, *(extra if allow_extra else [])])
    _check_rows(ordered.select(list(expected)), dataset, schema)
    return ordered.lazy() if lazy else ordered


_T = TypeVar("_T")
_MEMO: ContextVar[dict[tuple[Any, ...], tuple[tuple[object, ...], Any]] | None] = ContextVar(
    "obsbench_validation_memo", default=None
)


@contextmanager
def validation_memo() -> Iterator[None]:
    """Check each frame once inside the block, however many metrics receive it.

    Inside the block, :func:`validate` (and the cross-frame checks of
    :mod:`obsbench.metrics.execution`) given the *same frame object* again return the first
    result instead of re-checking it. The live dashboard model wraps each tick in it, since
    four view groups receive the day's orders, fills and quotes. The memo belongs to the
    current thread (a ``ContextVar``) and ends with the block; frames must not be changed
    in place inside it (polars frames are only changed by a few explicit in-place methods).

    Examples
    --------
    >>> import polars as pl
    >>> quotes = empty("quotes")
    >>> with validation_memo():
    ...     validate(quotes, "quotes") is validate(quotes, "quotes")
    True
    >>> validate(quotes, "quotes") is validate(quotes, "quotes")
    False
    """
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def memoized(tag: tuple[Any, ...], frames: tuple[object, ...], compute: Callable[[], _T]) -> _T:
    """``compute()``, or its earlier result for the same ``tag`` and frame objects.

    Only inside :func:`validation_memo`; elsewhere it always computes. The frames are kept
    referenced with the result, so their ``id`` cannot be reused within the block.
    """
    memo = _MEMO.get()
    if memo is None:
        return compute()
    key = (*tag, *map(id, frames))
    hit = memo.get(key)
    if hit is not None:
        return hit[1]
    result = compute()
    memo[key] = (frames, result)
    return result


def _schema(dataset: str) -> type[dy.Schema]:
    try:
        return SCHEMAS[dataset]
    except KeyError:
        err = UnknownName.from_choices("dataset", dataset, SCHEMAS)
        raise err from None


_INT_ORDER = (pl.Int8, pl.Int16, pl.Int32, pl.Int64)
_UINT_ORDER = (pl.UInt8, pl.UInt16, pl.UInt32)


def _safe_cast(col: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr | str | None:
    """``None`` if ``have`` already is ``want``; a cast expression if safe; else the problem."""
    if have == want:
        return None
    if isinstance(want, pl.Datetime):
        if isinstance(have, pl.Datetime):
            if have.time_zone is None:
                return (
                    "holds timestamps without time zone; obsbench needs UTC: use "
                    ".dt.replace_time_zone('UTC') if they are UTC, or the zone they are in"
                )
            return col.dt.convert_time_zone(TIME_ZONE).dt.cast_time_unit("us")
        if have == pl.Date:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone(TIME_ZONE)
    elif want == pl.Float64 and (have.is_integer() or have == pl.Float32):
        return col.cast(pl.Float64)
    elif want in _INT_ORDER and have.is_integer():
        widenable = _INT_ORDER[: _INT_ORDER.index(want)] + _UINT_ORDER[: _INT_ORDER.index(want)]
        if have in widenable:
            return col.cast(want)
    elif want == pl.String and isinstance(have, (pl.Categorical, pl.Enum)):
        return col.cast(pl.String)
    elif isinstance(want, pl.Struct) and isinstance(have, pl.Struct):
        return _struct_cast(col, have, want)
    return f"has dtype {have}, expected {want}"


def _struct_cast(col: pl.Expr, have: pl.Struct, want: pl.Struct) -> pl.Expr | str:
    have_fields = {f.name: f.dtype for f in have.fields}
    unknown = [n for n in have_fields if n not in {f.name for f in want.fields}]
    if unknown:
        return f"has unexpected struct field(s) {unknown}, expected {want}"
    fields = [
        col.struct.field(f.name).cast(f.dtype)
        if f.name in have_fields
        else pl.lit(None, f.dtype).alias(f.name)
        for f in want.fields
    ]
    return pl.struct(fields)


def _rules_hold(df: pl.DataFrame, schema: type[dy.Schema]) -> bool:
    """Whether every row rule holds, in one aggregating pass that copies no rows.

    The common case (valid data) stops here; dataframely's ``filter``, which splits the
    frame into valid and invalid rows, only runs to explain a failure.
    """
    checks = []
    key_unique = True
    for name, rule in schema._validation_rules(with_cast=False).items():
        if name == "primary_key":
            key_unique = False
        elif type(rule) is dy._rule.Rule:
            checks.append(rule.expr.fill_null(True).all())
        else:  # a group rule: let dataframely evaluate it
            return False
    if df.is_empty():
        return True
    if checks and not all(df.select(pl.all_horizontal(checks)).row(0)):
        return False
    return key_unique or _key_unique(df, schema.primary_key())


def _key_unique(df: pl.DataFrame, key: list[str]) -> bool:
    """Whether ``key`` is unique, cheapest sufficient test first.

    Strictly increasing keys (ids written in order) are unique: one O(n) comparison pass.
    Distinct u64 hashes (``Expr.hash``, vectorised) prove distinct keys; only equal hashes
    (a duplicate, or a collision) fall through to the exact count, a string hash table
    several times slower than either.
    """
    # a single key column hashes twice as fast as a one-field struct
    k = pl.col(key[0]) if len(key) == 1 else pl.struct(key)
    increasing = (k > k.shift()).slice(1).all(ignore_nulls=False).fill_null(False)
    tests = [increasing] if len(key) == 1 else []
    tests += [k.hash().n_unique() == pl.len(), k.n_unique() == pl.len()]
    return any(df.select(test).item() for test in tests)


def _check_rows(df: pl.DataFrame, dataset: str, schema: type[dy.Schema]) -> None:
    if _rules_hold(df, schema):
        return
    _, failure = schema.filter(df, cast=False)
    counts = failure.counts()
    if not counts:
        return
    invalid = failure.invalid()
    keys = [k for k in _KEYS[dataset] if k in invalid.columns]
    problems = []
    for rule, n in counts.items():
        offending = invalid.filter(_rule_violated(rule, schema))
        problems.append(f"{_explain(rule, schema)}: {n} row(s){_examples(offending, keys)}")
    raise SchemaError(dataset, problems)


def _rule_violated(rule: str, schema: type[dy.Schema]) -> pl.Expr:
    """An expression true on the rows that break ``rule`` (to show examples)."""
    column, _, kind = rule.partition("|")
    if not kind:  # a frame-level rule
        if rule == "primary_key":
            pk = schema.primary_key()
            return pl.struct(pk).is_duplicated()
        expr = _frame_rules(schema)[rule]
        return expr.not_().fill_null(True)
    return _column_rule_violation(schema.columns()[column], column, kind)


def _frame_rules(schema: type[dy.Schema]) -> dict[str, pl.Expr]:
    return {name: rule.expr for name, rule in schema._schema_validation_rules().items()}


def _column_rule_violation(column: dy.Column, name: str, kind: str) -> pl.Expr:
    c = pl.col(name)
    bounds = {
        "min": lambda: c < column.min,  # type: ignore[attr-defined]
        "min_exclusive": lambda: c <= column.min_exclusive,  # type: ignore[attr-defined]
        "max": lambda: c > column.max,  # type: ignore[attr-defined]
        "max_exclusive": lambda: c >= column.max_exclusive,  # type: ignore[attr-defined]
    }
    if kind == "nullability":
        return c.is_null()
    if kind == "nan":
        return c.is_nan()
    if kind == "inf":
        return c.is_infinite()
    if kind in bounds:
        return bounds[kind]()
    if kind.startswith("check__"):
        return column.check[kind.removeprefix("check__")](c).not_().fill_null(False)  # type: ignore[index]
    return pl.lit(True)


def _explain(rule: str, schema: type[dy.Schema]) -> str:
    column, _, kind = rule.partition("|")
    if not kind:
        if rule == "primary_key":
            return f"duplicate key ({', '.join(schema.primary_key())})"
        return rule.replace("_", " ")
    col = schema.columns()[column]
    texts = {
        "nullability": f"nulls in required column '{column}'",
        "nan": f"NaN in '{column}'",
        "inf": f"infinite values in '{column}'",
        "min": f"'{column}' below its minimum {getattr(col, 'min', None)}",
        "min_exclusive": f"'{column}' not > {getattr(col, 'min_exclusive', None)}",
        "max": f"'{column}' above its maximum {getattr(col, 'max', None)}",
        "max_exclusive": f"'{column}' not < {getattr(col, 'max_exclusive', None)}",
    }
    if kind.startswith("check__"):
        return f"'{column}' not {kind.removeprefix('check__')}"
    return texts.get(kind, f"'{column}' breaks rule {kind}")


def _examples(rows: pl.DataFrame, keys: list[str]) -> str:
    if not keys or rows.is_empty():
        return ""
    shown = rows.select(keys).head(_EXAMPLES).rows()
    text = ", ".join("/".join(str(v) for v in row) for row in shown)
    more = " ..." if rows.height > _EXAMPLES else ""
    return f" ({'/'.join(keys)}: {text}{more})"
