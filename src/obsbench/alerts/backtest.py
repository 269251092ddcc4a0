"""Backtests: how often rules would have fired, and whether they caught the incidents.

:func:`backtest` computes each distinct signal once over ``[start, end]`` at the evaluation
step (:func:`~obsbench.alerts.signals.signal_history`), replays every rule on it with the
same state machine as the live evaluator (:func:`~obsbench.alerts.state.replay`), and
reports per rule:

- ``alerts``: firing episodes (per series and severity);
- ``firing_seconds``: their total firing time (an episode still firing at ``end`` counts
  up to ``end``);
- ``flaps``: episodes that started within ``flap_window`` of the previous episode of the
  same series and severity resolving (the "resolved, fired again" pattern people hate);
- against the simulator's injected ``incidents`` (ground truth): ``incidents`` relevant to
  the rule (kinds in its ``detects``, or all, aimed at a series the rule watched: the
  incident's target is one of its label values), ``detected`` (a firing episode of a series
  labelled with the incident's target, or an unlabelled one, overlapping
  ``[start, end + grace]``), ``detection_rate``, and ``mean_ttd_s`` / ``median_ttd_s``
  (time to detect: first firing minus incident start, 0 if it was already firing);
- ``unmatched_alerts``: episodes that overlap no relevant incident (noise, for rules
  meant to detect incidents).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from obsbench.alerts.rules import Rule
from obsbench.alerts.state import Prepared, prepare, replay_prepared

if TYPE_CHECKING:
    from obsbench.store import Store

_US = pl.Datetime("us", "UTC")

SUMMARY_SCHEMA = {
    "rule": pl.String,
    "evaluations": pl.Int64,
    "alerts": pl.Int64,
    "firing_seconds": pl.Float64,
    "flaps": pl.Int64,
    "incidents": pl.Int64,
    "detected": pl.Int64,
    "detection_rate": pl.Float64,
    "mean_ttd_s": pl.Float64,
    "median_ttd_s": pl.Float64,
    "unmatched_alerts": pl.Int64,
}


@dataclass
class BacktestResult:
    """The outcome of :func:`backtest`.

    ``summary`` has one row per rule (:data:`SUMMARY_SCHEMA`); ``episodes`` one row per
    firing episode (rule, series, severity, fired_at, resolved_at, seconds); ``timelines``
    the replayed timeline of each rule; ``seconds`` where the time went.
    """

    summary: pl.DataFrame
    episodes: pl.DataFrame
    timelines: dict[str, pl.DataFrame] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return self.summary._repr_html_()


def episodes_of(timeline: pl.DataFrame, end: datetime) -> pl.DataFrame:
    """Firing episodes of a replay timeline: one row per (series, severity, active_at)."""
    labels = [
        c
        for c in timeline.columns
        if c not in ("ts", "alertname", "severity", "state", "value", "active_at")
    ]
    series = (
        pl.struct(labels).struct.json_encode() if labels else pl.lit("{}", dtype=pl.String)
    ).alias("series")
    keys = ["alertname", "series", "severity", "active_at"]
    tl = timeline.filter(pl.col("state").is_in(["firing", "inactive"])).with_columns(series)
    firing = (
        tl.filter(pl.col("state") == "firing")
        .group_by(keys)
        .agg(fired_at=pl.col("ts").min(), peak=pl.col("value").max())
    )
    resolved = (
        tl.filter(pl.col("state") == "inactive").group_by(keys).agg(resolved_at=pl.col("ts").min())
    )
    out = firing.join(resolved, on=keys, how="left", nulls_equal=True)
    out = out.with_columns(
        seconds=(
            (pl.col("resolved_at").fill_null(pl.lit(end).cast(_US)) - pl.col("fired_at"))
            .dt.total_microseconds()
            .cast(pl.Float64)
            / 1e6
        )
    )
    return out.rename({"alertname": "rule"}).sort("rule", "series", "severity", "fired_at")


def _flaps(episodes: pl.DataFrame, window: timedelta) -> pl.DataFrame:
    prev_end = pl.col("resolved_at").shift(1).over("rule", "series", "severity")
    return (
        episodes.sort("rule", "series", "severity", "fired_at")
        .with_columns(flap=(pl.col("active_at") - prev_end) <= window)
        .group_by("rule")
        .agg(flaps=pl.col("flap").fill_null(False).sum().cast(pl.Int64))
    )


def score(
    rule: Rule,
    episodes: pl.DataFrame,
    incidents: pl.DataFrame,
    *,
    grace: timedelta = timedelta(minutes=15),
    targets: set[str] | None = None,
) -> dict[str, float | int]:
    """Detection of the relevant ``incidents`` by one rule's firing ``episodes``.

    Relevant: of a kind in the rule's ``detects`` (any kind if empty) and, when ``targets``
    is given (the label values of the series the rule watched), aimed at one of them.
    """
    rel = incidents
    if rule.detects:
        rel = rel.filter(pl.col("kind").is_in(list(rule.detects)))
    if targets is not None:
        rel = rel.filter(pl.col("target").is_in(sorted(targets)))
    n = rel.height
    eps = episodes.filter(pl.col("rule") == rule.name)
    if n == 0:
        nan = float("nan")
        return {
            "incidents": 0,
            "detected": 0,
            "detection_rate": nan,
            "mean_ttd_s": nan,
            "median_ttd_s": nan,
            "unmatched_alerts": eps.height,
        }
    inc = rel.select(
        "incident_id", "target", inc_start="start", inc_end=pl.col("end") + grace
    ).with_row_index("_i")
    ep = eps.with_row_index("_e").with_columns(
        fired_at=pl.col("fired_at"),
        until=pl.col("resolved_at").fill_null(pl.lit(datetime.max.replace(tzinfo=UTC)).cast(_US)),
    )
    pairs = ep.join(inc, how="cross").filter(
        (pl.col("fired_at") <= pl.col("inc_end"))
        & (pl.col("until") >= pl.col("inc_start"))
        & (
            (pl.col("series") == "{}")
            | pl.col("series").str.contains(
                pl.concat_str(pl.lit('"'), pl.col("target"), pl.lit('"')), literal=True
            )
        )
    )
    first = pairs.group_by("_i").agg(
        first=pl.col("fired_at").min(), start=pl.col("inc_start").first()
    )
    ttd = (
        first.select(((pl.col("first") - pl.col("start")).dt.total_microseconds() / 1e6).clip(0))
        .to_series()
        .to_numpy()
    )
    matched = pairs.get_column("_e").unique().len()
    return {
        "incidents": n,
        "detected": first.height,
        "detection_rate": first.height / n,
        "mean_ttd_s": float(np.mean(ttd)) if ttd.size else float("nan"),
        "median_ttd_s": float(np.median(ttd)) if ttd.size else float("nan"),
        "unmatched_alerts": eps.height - matched,
    }


def backtest(
    rules: Sequence[Rule],
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(minutes=1),
    store: Store | None = None,
    prometheus_url: str | None = None,
    sources: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
    values: Mapping[str, pl.DataFrame] | None = None,
    incidents: pl.DataFrame | None = None,
    flap_window: timedelta = timedelta(minutes=15),
    grace: timedelta = timedelta(minutes=15),
) -> BacktestResult:
    """Replay ``rules`` over ``[start, end]`` every ``step`` and score them.

    Parameters
    ----------
    rules
        The rules (their own ``interval`` overrides ``step``).
    start, end
        The period (UTC).
    step
        The evaluation interval.
    store
        Where named signals read history, and ``incidents`` (default: ``OBSBENCH_HOME``).
    prometheus_url
        For PromQL signals.
    sources
        Dataset name -> frame, read instead of the store.
    values
        Rule name -> precomputed signal frame (``ts``, labels, ``value``), skipping the
        signal computation (for signals computed elsewhere, and benchmarks).
    incidents
        Ground truth (the ``incidents`` dataset); default: the store's, if any.
    flap_window, grace
        See the module docstring.
    """
    from obsbench.alerts.signals import signal_history

    start = _utc(start)
    end = _utc(end)
    clock = {"signals": 0.0, "replay": 0.0, "score": 0.0}
    prepared: dict[tuple, Prepared] = {}
    timelines: dict[str, pl.DataFrame] = {}
    evaluations: dict[str, int] = {}
    watched: dict[str, set[str] | None] = {}
    for rule in rules:
        every = rule.interval or step
        grid = pl.datetime_range(_ceil(start, every), end, every, eager=True, time_zone="UTC").cast(
            _US
        )
        if values and rule.name in values:  # rules given the same frame share its preparation
            key: tuple = ("values", id(values[rule.name]), every)
        else:
            key = (rule.signal.key(), every)
        if key not in prepared:
            t0 = time.perf_counter()
            if values and rule.name in values:
                frame = values[rule.name]
            else:
                src = (sources or {}).get(_dataset(rule))
                frame = signal_history(
                    rule.signal,
                    start,
                    end,
                    every,
                    store=store,
                    prometheus_url=prometheus_url,
                    frame=src,
                )
            prepared[key] = prepare(frame, grid)
            clock["signals"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        timelines[rule.name] = replay_prepared(rule, prepared[key])
        watched[rule.name] = _targets(prepared[key])
        evaluations[rule.name] = grid.len()
        clock["replay"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    parts = [episodes_of(tl, end) for tl in timelines.values() if tl.height]
    empty = pl.DataFrame(
        schema={
            "rule": pl.String,
            "series": pl.String,
            "severity": pl.String,
            "active_at": _US,
            "fired_at": _US,
            "peak": pl.Float64,
            "resolved_at": _US,
            "seconds": pl.Float64,
        }
    )
    episodes = pl.concat(parts, how="vertical_relaxed") if parts else empty
    if incidents is None:
        incidents = _stored_incidents(store, start, end)
    flaps = dict(_flaps(episodes, flap_window).iter_rows()) if episodes.height else {}
    rows = []
    for rule in rules:
        eps = episodes.filter(pl.col("rule") == rule.name)
        rows.append(
            {
                "rule": rule.name,
                "evaluations": evaluations[rule.name],
                "alerts": eps.height,
                "firing_seconds": float(eps.get_column("seconds").sum()) if eps.height else 0.0,
                "flaps": int(flaps.get(rule.name, 0)),
                **score(rule, eps, incidents, grace=grace, targets=watched[rule.name]),
            }
        )
    clock["score"] = time.perf_counter() - t0
    return BacktestResult(
        summary=pl.DataFrame(rows, schema=SUMMARY_SCHEMA),
        episodes=episodes,
        timelines=timelines,
        seconds=clock,
    )


def _targets(p: Prepared) -> set[str] | None:
    """The label values of a signal's series (``None`` for an unlabelled signal)."""
    if not p.label_cols:
        return None
    return {
        str(v) for c in p.label_cols for v in p.keys.get_column(c).drop_nulls().unique().to_list()
    }


def _dataset(rule: Rule) -> str | None:
    from obsbench.alerts.rules import MetricSignal
    from obsbench.alerts.signals import get

    return get(rule.signal.metric).dataset if isinstance(rule.signal, MetricSignal) else None


def _stored_incidents(store: Store | None, start: datetime, end: datetime) -> pl.DataFrame:
    from obsbench import schemas
    from obsbench.errors import SourceUnavailable
    from obsbench.store import Store

    try:
        frame = (store or Store()).read("incidents")
    except SourceUnavailable:
        return schemas.empty("incidents")
    return frame.filter((pl.col("end") >= start) & (pl.col("start") <= end))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _ceil(ts: datetime, step: timedelta) -> datetime:
    us = round(ts.timestamp() * 1e6)
    size = round(step.total_seconds() * 1e6)
    return datetime.fromtimestamp(-(-us // size) * size / 1e6, UTC)
