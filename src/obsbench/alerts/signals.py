"""Signals: what a rule compares with its thresholds.

A signal evaluated at time ``t`` is a frame ``ts, <label columns>, value`` with one row per
series. Two kinds:

- **Named obsbench signals** over a canonical dataset (registry :data:`SIGNALS`): the value
  of a metric of :mod:`obsbench.metrics` over the rows with ``t - window < ts <= t``,
  per group of the ``by`` columns. The metric expression is the one function of
  :mod:`obsbench.metrics` (no formula is written here), so an alert value equals the
  dashboard tile and the report number.
- **PromQL** expressions, evaluated by the Prometheus HTTP API (instant query for the live
  evaluator, range query for backtests). Each result series is one alert series; its labels
  (without ``__name__``) are the label columns.

A signal that returns no row at ``t`` has *no data* there; a source that cannot be reached
raises :class:`~obsbench.errors.SourceUnavailable`, which the evaluator turns into the
rule's error state.

Register a new named signal with :func:`register`::

    register("order_reject_rate", SignalSpec(dataset="orders", expr=..., doc="..."))
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from obsbench.errors import ObsbenchError, SourceUnavailable, UnknownName

if TYPE_CHECKING:
    from obsbench.alerts.rules import MetricSignal, PromQLSignal
    from obsbench.store import Store

_US = pl.Datetime("us", "UTC")


class SignalError(ObsbenchError, RuntimeError):
    """A signal cannot be computed (missing metric function, bad parameter)."""


@dataclass(frozen=True)
class SignalSpec:
    """A named signal: the dataset it reads and the metric expression it aggregates.

    ``expr(params)`` returns the aggregating ``pl.Expr`` (built by a function of
    :mod:`obsbench.metrics`); ``prepare(frame, store)`` may join what the metric needs
    (e.g. arrival prices onto fills) before grouping.
    """

    dataset: str
    expr: Callable[[dict[str, Any]], pl.Expr]
    doc: str
    prepare: Callable[[pl.LazyFrame, Store | None, dict[str, Any]], pl.LazyFrame] | None = None
    default_by: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


SIGNALS: dict[str, SignalSpec] = {}
"""The registry of named signals (name -> :class:`SignalSpec`)."""


def register(name: str, spec: SignalSpec) -> None:
    """Register (or replace) a named signal."""
    SIGNALS[name] = spec


def get(name: str) -> SignalSpec:
    """The signal called ``name``; :class:`~obsbench.errors.UnknownName` lists the known ones."""
    try:
        return SIGNALS[name]
    except KeyError:
        msg = "signal"
        raise UnknownName.from_choices(msg, name, SIGNALS) from None


def _metric_fn(module: str, *names: str) -> Callable[..., pl.Expr]:
    """The first of ``names`` that ``obsbench.metrics.<module>`` defines."""
    try:
        mod = importlib.import_module(f"obsbench.metrics.{module}")
    except ImportError:
        mod = None
    for name in names:
        fn = getattr(mod, name, None) if mod is not None else None
        if callable(fn):
            return fn
    wanted = " or ".join(f"obsbench.metrics.{module}.{n}" for n in names)
    msg = f"this signal needs {wanted}, which this build does not have"
    raise SignalError(msg, hint="use a PromQL signal, or install the metrics module.")


def _error_rate(params: dict[str, Any]) -> pl.Expr:
    return _metric_fn("sla", "error_rate")(**params)


def _latency_quantile(q: float) -> Callable[[dict[str, Any]], pl.Expr]:
    def build(params: dict[str, Any]) -> pl.Expr:
        return _metric_fn("sla", "latency_percentile")(**{"q": q, **params})

    return build


def _slippage(params: dict[str, Any]) -> pl.Expr:
    slippage_bps = _metric_fn("execution", "slippage_bps")
    weighted_mean = _metric_fn("execution", "weighted_mean")
    return weighted_mean(slippage_bps(**params), "qty")


def _prepare_fills(
    frame: pl.LazyFrame, store: Store | None, params: dict[str, Any]
) -> pl.LazyFrame:
    if "arrival_px" in frame.collect_schema().names() or store is None:
        return frame
    orders = store.scan("orders").select("order_id", "strategy", "broker", "arrival_px")
    return frame.join(orders, on="order_id", how="left")


def _drawdown(params: dict[str, Any]) -> pl.Expr:
    return _metric_fn("returns", "drawdown")("ret", **params).last()


def _quota(params: dict[str, Any]) -> pl.Expr:
    return _metric_fn("quotas", "peak_utilisation")(**params)


def _burn_rate(params: dict[str, Any]) -> pl.Expr:
    return _metric_fn("sla", "burn_rate")("good", objective=float(params["slo"]["objective"]))


def _prepare_sli(frame: pl.LazyFrame, store: Store | None, params: dict[str, Any]) -> pl.LazyFrame:
    from obsbench import slo as slo_mod

    slo = slo_mod.SLO.model_validate(params["slo"])
    return slo_mod.sli_events(slo, frame)


register(
    "error_rate",
    SignalSpec("requests", _error_rate, "Share of failed requests (metrics.sla.error_rate)."),
)
register(
    "p99_latency",
    SignalSpec(
        "requests",
        _latency_quantile(0.99),
        "99th percentile of latency_ms (metrics.sla.latency_percentile, q=0.99).",
    ),
)
register(
    "p95_latency",
    SignalSpec("requests", _latency_quantile(0.95), "95th percentile of latency_ms."),
)
register(
    "latency_percentile",
    SignalSpec("requests", _latency_quantile(0.5), "Latency percentile; param q (default 0.5)."),
)
register(
    "slippage",
    SignalSpec(
        "fills",
        _slippage,
        "Quantity-weighted mean slippage of fills against the order's arrival price, bps "
        "(metrics.execution.slippage_bps, weighted_mean); positive is a cost.",
        prepare=_prepare_fills,
    ),
)
register(
    "drawdown",
    SignalSpec(
        "returns",
        _drawdown,
        "Drawdown at the window's end from the running peak within the window "
        "(metrics.returns.drawdown); losses are negative, so rules use op '<'.",
    ),
)
register(
    "quota_utilisation",
    SignalSpec(
        "api_usage",
        _quota,
        "Peak used/limit of API quota windows (metrics.quotas.peak_utilisation).",
    ),
)
register(
    "burn_rate",
    SignalSpec(
        "requests",
        _burn_rate,
        "SLO error-budget burn rate (metrics.sla.burn_rate over obsbench.slo.sli_events); "
        "param slo (the SLO as a dict), optional and_window: the value is the smaller of "
        "the burn rates over window and and_window, so '>' means both exceed.",
        prepare=_prepare_sli,
    ),
)


# ----------------------------------------------------------------------------------------
# Named signals over the store.


def _where(frame: pl.LazyFrame, where: dict[str, Any]) -> pl.LazyFrame:
    for col, want in where.items():
        values = [want] if isinstance(want, str) else list(want)
        frame = frame.filter(pl.col(col).cast(pl.String).is_in(values))
    return frame


def filter_where(frame: pl.DataFrame, where: dict[str, Any]) -> pl.DataFrame:
    """Keep the rows whose label equals the value (or is one of the values) of ``where``."""
    return _where(frame.lazy(), where).collect()


def _metric_expr(signal: MetricSignal) -> tuple[SignalSpec, pl.Expr]:
    spec = get(signal.metric)
    params = {k: v for k, v in {**spec.params, **signal.params}.items() if k not in _SOURCE_PARAMS}
    if signal.metric == "burn_rate":
        params["slo"] = signal.params["slo"]
    return spec, spec.expr(params).cast(pl.Float64).alias("value")


_SOURCE_PARAMS = frozenset({"and_window", "slo"})


def _and_window(signal: MetricSignal, fn: Callable[[MetricSignal], pl.DataFrame]) -> pl.DataFrame:
    """``fn`` over ``window``, or the smaller value over ``window`` and ``and_window``."""
    other = signal.params.get("and_window")
    if other is None:
        return fn(signal)
    from obsbench.alerts.durations import parse_duration

    params = {k: v for k, v in signal.params.items() if k != "and_window"}
    first = fn(signal.model_copy(update={"params": params}))
    second = fn(signal.model_copy(update={"params": params, "window": parse_duration(other)}))
    keys = [c for c in first.columns if c != "value"]
    both = first.join(second, on=keys, how="inner", suffix="_2", nulls_equal=True)
    return both.with_columns(value=pl.min_horizontal("value", "value_2")).drop("value_2")


def evaluate_metric(
    signal: MetricSignal,
    at: datetime,
    *,
    store: Store | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """A named signal at one time ``at``: ``ts``, the ``by`` columns, ``value``.

    Reads ``frame`` if given, else the signal's dataset from ``store``; only rows with
    ``at - window < ts <= at`` count.
    """
    return _and_window(signal, lambda s: _evaluate_metric(s, at, store=store, frame=frame))


def metric_history(
    signal: MetricSignal,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    store: Store | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """A named signal at every multiple of ``step`` in ``[start, end]`` (one polars pass).

    Each evaluation ``t`` aggregates the rows with ``t - window < ts <= t``
    (``group_by_dynamic`` with right-closed windows labelled by their end), exactly what
    :func:`evaluate_metric` gives at ``t``.
    """
    return _and_window(
        signal, lambda s: _metric_history(s, start, end, step, store=store, frame=frame)
    )


def _evaluate_metric(
    signal: MetricSignal,
    at: datetime,
    *,
    store: Store | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    from obsbench.store import time_column

    spec, expr = _metric_expr(signal)
    at = _utc(at)
    tcol = time_column(spec.dataset)
    lf = _source(spec, signal, store, frame, at - signal.window, at + timedelta(microseconds=1))
    lf = lf.filter((pl.col(tcol) > at - signal.window) & (pl.col(tcol) <= at))
    by = list(signal.by or spec.default_by)
    if by:
        out = lf.group_by(by).agg(expr).collect()
    else:
        out = lf.select(expr, _n=pl.len()).collect().filter(pl.col("_n") > 0).drop("_n")
    out = out.filter(pl.col("value").is_not_null())
    return out.select(
        pl.lit(at).cast(_US).alias("ts"), *[pl.col(c).cast(pl.String) for c in by], "value"
    )


def _metric_history(
    signal: MetricSignal,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    store: Store | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    from obsbench.store import time_column

    spec, expr = _metric_expr(signal)
    start, end = _utc(start), _utc(end)
    tcol = time_column(spec.dataset)
    lf = _source(spec, signal, store, frame, start - signal.window, end + timedelta(microseconds=1))
    lf = lf.filter((pl.col(tcol) > start - signal.window) & (pl.col(tcol) <= end))
    by = list(signal.by or spec.default_by)
    lf = lf.sort(tcol)
    out = (
        lf.group_by_dynamic(
            tcol,
            every=step,
            period=signal.window,
            offset=-signal.window,
            closed="right",
            label="right",
            group_by=by or None,
            start_by="window",
        )
        .agg(expr)
        .rename({tcol: "ts"})
        .filter((pl.col("ts") >= start) & (pl.col("ts") <= end) & pl.col("value").is_not_null())
        .collect()
    )
    return out.select(
        pl.col("ts").cast(_US), *[pl.col(c).cast(pl.String) for c in by], "value"
    ).sort([*by, "ts"])


def _source(
    spec: SignalSpec,
    signal: MetricSignal,
    store: Store | None,
    frame: pl.DataFrame | pl.LazyFrame | None,
    start: datetime,
    end: datetime,
) -> pl.LazyFrame:
    if frame is not None:
        lf = frame.lazy()
    else:
        if store is None:
            from obsbench.store import Store

            store = Store()
        lf = store.scan(spec.dataset, start=start, end=end)
    if spec.prepare is not None:
        lf = spec.prepare(lf, store, {**spec.params, **signal.params})
    return _where(lf, signal.where)


# ----------------------------------------------------------------------------------------
# PromQL over the Prometheus HTTP API.


def _prom_get(url: str, path: str, params: dict[str, str], timeout: float) -> Any:
    from urllib.error import HTTPError, URLError
    from urllib.parse import urlencode
    from urllib.request import urlopen

    full = f"{url.rstrip('/')}{path}?{urlencode(params)}"
    try:
        with urlopen(full, timeout=timeout) as resp:
            doc = json.load(resp)
    except HTTPError as exc:
        try:
            doc = json.load(exc)
        except (ValueError, OSError):
            doc = {"error": str(exc)}
        msg = f"Prometheus rejected the query {params.get('query')!r}: {doc.get('error', exc)}"
        raise SourceUnavailable(msg, hint="check the PromQL expression.") from None
    except (URLError, OSError, ValueError) as exc:
        msg = f"cannot query Prometheus at {url}: {exc}"
        raise SourceUnavailable(
            msg, hint="start Prometheus or fix OBSBENCH_PROMETHEUS_URL."
        ) from None
    if doc.get("status") != "success":
        msg = f"Prometheus query failed: {doc.get('error', doc)}"
        raise SourceUnavailable(msg, hint="check the PromQL expression.")
    return doc["data"]


def _prom_frame(rows: list[tuple[dict[str, str], list[tuple[float, str]]]]) -> pl.DataFrame:
    names = sorted({k for labels, _ in rows for k in labels if k != "__name__"})
    data: dict[str, list[Any]] = {"ts": [], **{n: [] for n in names}, "value": []}
    for labels, samples in rows:
        for t, v in samples:
            data["ts"].append(round(float(t) * 1e6))
            for n in names:
                data[n].append(labels.get(n))
            data["value"].append(float(v))
    schema = {"ts": pl.Int64, **dict.fromkeys(names, pl.String), "value": pl.Float64}
    frame = pl.DataFrame(data, schema=schema)
    return frame.with_columns(pl.col("ts").cast(_US)).sort([*names, "ts"])


def prometheus_instant(
    url: str, query: str, at: datetime, *, timeout: float = 10.0
) -> pl.DataFrame:
    """Evaluate ``query`` at ``at``: ``ts``, one column per label (no ``__name__``), ``value``."""
    data = _prom_get(url, "/api/v1/query", {"query": query, "time": _epoch(at)}, timeout)
    if data["resultType"] == "scalar":
        t, v = data["result"]
        return _prom_frame([({}, [(t, v)])])
    return _prom_frame([(r["metric"], [tuple(r["value"])]) for r in data["result"]])


def prometheus_range(
    url: str,
    query: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    timeout: float = 60.0,
    max_points: int = 10_000,
) -> pl.DataFrame:
    """Evaluate ``query`` at every ``step`` in ``[start, end]``.

    The range is split into chunks under Prometheus' 11,000-points-per-series limit.
    """
    start, end = _utc(start), _utc(end)
    frames = []
    chunk = step * (max_points - 1)
    lo = start
    while lo <= end:
        hi = min(lo + chunk, end)
        params = {
            "query": query,
            "start": _epoch(lo),
            "end": _epoch(hi),
            "step": f"{step.total_seconds():g}",
        }
        data = _prom_get(url, "/api/v1/query_range", params, timeout)
        frames.append(_prom_frame([(r["metric"], r["values"]) for r in data["result"]]))
        lo = hi + step
    return pl.concat(frames, how="diagonal_relaxed") if frames else _prom_frame([])


def _epoch(ts: datetime) -> str:
    return f"{_utc(ts).timestamp():.3f}"


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# ----------------------------------------------------------------------------------------
# One entry point for rules.


def evaluate_signal(
    signal: MetricSignal | PromQLSignal,
    at: datetime,
    *,
    store: Store | None = None,
    prometheus_url: str | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """A rule's signal at ``at`` (``ts``, labels, ``value``), whatever its kind."""
    from obsbench.alerts.rules import PromQLSignal

    if isinstance(signal, PromQLSignal):
        return prometheus_instant(_prom_url(prometheus_url), signal.promql, at)
    return evaluate_metric(signal, at, store=store, frame=frame)


def signal_history(
    signal: MetricSignal | PromQLSignal,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    store: Store | None = None,
    prometheus_url: str | None = None,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """A rule's signal at every ``step`` in ``[start, end]`` (for backtests)."""
    from obsbench.alerts.rules import PromQLSignal

    if isinstance(signal, PromQLSignal):
        return prometheus_range(_prom_url(prometheus_url), signal.promql, start, end, step)
    return metric_history(signal, start, end, step, store=store, frame=frame)


def _prom_url(url: str | None) -> str:
    if url:
        return url
    from obsbench.config import get_settings

    url = get_settings().prometheus_url
    if not url:
        msg = "this rule has a PromQL signal but no Prometheus is configured"
        raise SourceUnavailable(msg, hint="set OBSBENCH_PROMETHEUS_URL=http://127.0.0.1:9090.")
    return url


def series_key(labels: dict[str, Any]) -> str:
    """The canonical JSON of a label set (sorted keys, nulls dropped): a series' identity."""
    clean = {k: str(v) for k, v in labels.items() if v is not None}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def label_columns(frame: pl.DataFrame) -> list[str]:
    """The label columns of a signal frame (everything but ``ts`` and ``value``)."""
    return [c for c in frame.columns if c not in ("ts", "value")]


def with_series_key(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``series``: the JSON of the label columns, as :func:`series_key` builds it."""
    labels = label_columns(frame)
    if not labels:
        return frame.with_columns(series=pl.lit("{}"))
    parts: list[pl.Expr] = []
    for i, name in enumerate(sorted(labels)):
        item = pl.concat_str(
            pl.lit(("," if i else "") + json.dumps(name) + ":"),
            pl.lit('"'),
            pl.col(name)
            .cast(pl.String)
            .str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True),
            pl.lit('"'),
        )
        parts.append(pl.when(pl.col(name).is_not_null()).then(item).otherwise(pl.lit("")))
    key = pl.concat_str([pl.lit("{"), *parts, pl.lit("}")])
    return frame.with_columns(series=key.str.replace(r"^\{,", "{"))
