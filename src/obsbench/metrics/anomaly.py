"""Anomaly detection on service error rates and latencies: a score and a flag per point.

Two detectors, each an expression over a **regular** series (one row per time bucket,
in time order, missing buckets present as null; :func:`detect_anomalies` builds that grid):

- :func:`robust_score`: a robust z-score, ``0.6745 * (x_t - baseline_t) / MAD_t``
  (Iglewicz and Hoaglin). The baseline is the median of the same time of day over the
  previous ``seasons`` days (seasonal, when ``season`` is given) or the median of the
  previous ``window`` points; ``MAD_t`` is the median absolute residual of the previous
  ``window`` points. Medians make it immune to the outliers it looks for.
- :func:`ewma_score`: an EWMA control chart, ``(x_t - m_{t-1}) / s_{t-1}`` with ``m`` and
  ``s`` the exponentially weighted mean and standard deviation up to the previous point.

:func:`anomaly_flag` turns a score into a flag (``score > threshold`` for ``"up"``).
Scores use only *past* points (the baseline and scale exclude the current point), so a
flag at ``t`` is available at ``t``: the detectors are causal, as an alert evaluator needs.

Conventions
-----------
- **Error rates are gated on traffic.** A minute with 1 error out of 3 requests is not an
  incident; :func:`error_rate_anomalies` blanks buckets with fewer than ``min_requests``
  requests (null value: no score, no flag), as Grafana's robust rules drop sparse series.
- **Scale floor.** A series that is exactly 0 most of the time (error rates) has a MAD of
  0; ``min_scale`` bounds the denominator from below (in the value's unit), so only a
  deviation of ``threshold * min_scale / 0.6745`` or more can flag. With
  ``min_scale=0`` and zero dispersion a deviation scores ``±inf`` and no deviation NaN.
- **Warm-up.** Until ``min_samples`` past points exist the score is null (never flagged).
- Group-awareness comes from the caller (``.over("service")``); the frame-level
  functions take ``by=`` and every output row depends only on its group's rows.

Scoring against ground truth (:func:`score_detections`): an incident is *detected* when a
flagged point of its target falls in its window (event-level recall); precision is the
share of flagged points that fall in some incident window of their target (and the same
for runs of consecutive flags, ``event_precision``).

Examples
--------
>>> import polars as pl
>>> x = [1.0, 1.2, 0.9, 1.1, 1.0, 1.05, 0.95, 6.0, 1.0]
>>> pl.DataFrame({"x": x}).with_columns(
...     score=robust_score("x", window=5, min_samples=3).round(2)
... ).with_columns(flag=anomaly_flag("score")).tail(3)
shape: (3, 3)
┌──────┬───────┬───────┐
│ x    ┆ score ┆ flag  │
│ ---  ┆ ---   ┆ ---   │
│ f64  ┆ f64   ┆ bool  │
╞══════╪═══════╪═══════╡
│ 0.95 ┆ -1.35 ┆ false │
│ 6.0  ┆ 44.97 ┆ true  │
│ 1.0  ┆ -0.34 ┆ false │
└──────┴───────┴───────┘
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import polars as pl

from obsbench._typing import IntoExpr
from obsbench.metrics._common import (
    InvalidParameter,
    ensure_choice,
    ensure_positive,
    ensure_window,
    metric,
    to_expr,
)
from obsbench.metrics.sla import (
    check_columns,
    duration_seconds,
    ensure_duration,
    error_rate,
    latency_percentile,
)

__all__ = [
    "MAD_CONSTANT",
    "DetectionScore",
    "anomaly_flag",
    "detect_anomalies",
    "error_rate_anomalies",
    "ewma_score",
    "latency_anomalies",
    "regular_grid",
    "robust_score",
    "score_detections",
]

Direction = Literal["up", "down", "both"]
Method = Literal["robust", "ewma"]
Frame = pl.DataFrame | pl.LazyFrame

MAD_CONSTANT = 0.6745
"""``Phi^-1(0.75)``: makes ``MAD / 0.6745`` a consistent estimate of sigma for normal data."""


def _ensure_min_scale(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        msg = f"invalid min_scale={value!r}: must be a number >= 0"
        raise InvalidParameter(msg, hint="use e.g. min_scale=0.01 for error rates.")
    return float(value)


# --------------------------------------------------------------------------- scores


def _trailing_median(x: pl.Expr, window: int, need: int) -> pl.Expr:
    """Median of the last ``window`` *present* values up to each row (nulls skipped).

    Counting present values, not rows, keeps a traffic-gated series (nights blanked) scored
    from its own recent points instead of going blind after every quiet spell.
    """
    present = x.is_not_null().cum_sum()
    return x.rolling_median_by(present, f"{window}i", min_samples=need)


@metric(data=("value",), output="series")
def robust_score(
    value: IntoExpr = "value",
    *,
    window: int = 60,
    season: int | None = None,
    seasons: int = 7,
    min_scale: float = 0.0,
    min_samples: int | None = None,
) -> pl.Expr:
    """Robust (median/MAD) z-score of each point against its past, optionally seasonal.

    Parameters
    ----------
    value
        The series (error rate, p99 latency), one row per bucket, in time order, missing
        buckets null.
    window
        Present (non-null) points in the trailing window of the scale (and of the
        baseline when not seasonal): 60 one-minute points is one hour of traffic.
    season
        Points per season (1440 one-minute points per day) for a seasonal baseline, or
        ``None`` for a trailing-median baseline.
    seasons
        Number of past seasons whose same-position values form the seasonal baseline.
    min_scale
        Lower bound of the MAD, in the value's unit.
    min_samples
        Past points needed before scoring (default ``window // 2``).

    Returns
    -------
    pl.Expr
        Named ``score`` (float; null during warm-up and at null points).

    Notes
    -----
    ``score_t = 0.6745 (x_t - b_t) / max(MAD_t, min_scale)`` with

    - seasonal: ``b_t = median(x_{t - k season}, k = 1..seasons)`` (nulls skipped; null,
      so no score, until one past season exists: the warm-up is one season);
    - not seasonal: ``b_t`` = the median of the last ``window`` present points before
      ``t``;
    - ``MAD_t`` = the median absolute residual ``|x_s - b_s|`` of the last ``window``
      present points before ``t`` (each against its own baseline).

    Null points (gated buckets) are skipped, not counted: the windows reach back over
    them to the last ``window`` present points.

    Both exclude ``x_t``, so an incident does not mask itself until it has lasted about
    ``window / 2`` points. Flag with ``|score| > 3.5`` (Iglewicz and Hoaglin) via
    :func:`anomaly_flag`.

    References
    ----------
    Iglewicz, B. and Hoaglin, D. (1993), *How to Detect and Handle Outliers*; Grafana's
    ``promql-anomaly-detection`` robust rules (24h median, MAD band, 1d/1w offsets).

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series([1.0, 2.0, 1.0, 2.0, 9.0])
    >>> robust_score(s, window=4, min_samples=2).round(4).to_list()
    [None, None, None, None, 6.745]
    """
    window = ensure_window(window)
    seasons = ensure_window(seasons, param_name="seasons")
    min_scale = _ensure_min_scale(min_scale)
    need = ensure_window(
        min_samples if min_samples is not None else max(window // 2, 1), param_name="min_samples"
    )
    x = to_expr(value, param_name="value").cast(pl.Float64).fill_nan(None)
    if season is not None:
        season = ensure_window(season, param_name="season")
        past = [x.shift(k * season) for k in range(1, seasons + 1)]
        baseline = pl.concat_list(past).list.median()
    else:
        baseline = _trailing_median(x.shift(1), window, need)
    residual = x - baseline
    mad = _trailing_median(residual.abs().shift(1), window, need)
    scale = mad.clip(lower_bound=min_scale) if min_scale > 0 else mad
    return (MAD_CONSTANT * residual / scale).alias("score")


@metric(data=("value",), output="series")
def ewma_score(
    value: IntoExpr = "value",
    *,
    span: float = 60.0,
    min_scale: float = 0.0,
    min_samples: int = 30,
) -> pl.Expr:
    """EWMA control-chart score: distance of each point from the past EWMA, in EW sigmas.

    Parameters
    ----------
    value
        The series, one row per bucket, in time order, missing buckets null.
    span
        EWMA span ``N``: smoothing ``alpha = 2 / (N + 1)`` (60 one-minute points ~ an
        hour's memory).
    min_scale
        Lower bound of the EW standard deviation, in the value's unit.
    min_samples
        Past points needed before scoring.

    Returns
    -------
    pl.Expr
        Named ``score``.

    Notes
    -----
    ``score_t = (x_t - m_{t-1}) / max(s_{t-1}, min_scale)`` where ``m`` and ``s`` are
    polars' ``ewm_mean`` / ``ewm_std`` (``adjust=False``, bias-corrected std, nulls
    skipped) of the points up to ``t - 1``; the last state carries over null points.
    Flag with ``score > L``, ``L`` about 3 (a Shewhart-style band on the EWMA). Reacts
    faster than the median detector to a level shift, but an incident inflates ``s``
    afterwards.

    References
    ----------
    Roberts, S. W. (1959), "Control chart tests based on geometric moving averages";
    pandas ``ewm(span=..., adjust=False)``.

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series([1.0, 2.0, 1.0, 2.0, 9.0])
    >>> ewma_score(s, span=3, min_samples=3).round(4).to_list()
    [None, None, None, 1.3693, 12.3407]
    """
    span = ensure_positive(span, param_name="span")
    if span < 1:
        msg = f"invalid span={span!r}: must be >= 1"
        raise InvalidParameter(msg, hint="use e.g. span=60 (points).")
    min_scale = _ensure_min_scale(min_scale)
    need = ensure_window(min_samples, param_name="min_samples")
    x = to_expr(value, param_name="value").cast(pl.Float64).fill_nan(None)
    opts = {"span": span, "adjust": False, "ignore_nulls": True, "min_samples": need}
    mean = x.ewm_mean(**opts).forward_fill().shift(1)
    std = x.ewm_std(**opts).forward_fill().shift(1)
    scale = std.clip(lower_bound=min_scale) if min_scale > 0 else std
    return ((x - mean) / scale).alias("score")


@metric(data=("score",), output="series")
def anomaly_flag(
    score: IntoExpr = "score", *, threshold: float = 3.5, direction: Direction = "up"
) -> pl.Expr:
    """Flag points whose score crosses ``threshold`` (never a null or NaN score).

    Parameters
    ----------
    score
        A score from :func:`robust_score` or :func:`ewma_score`.
    threshold
        Score threshold (> 0): 3.5 for the robust score, about 3 for EWMA.
    direction
        ``"up"`` (error rates, latencies: only increases matter), ``"down"`` or ``"both"``.

    Returns
    -------
    pl.Expr
        Named ``flag`` (bool, never null).

    Examples
    --------
    >>> import polars as pl
    >>> anomaly_flag(pl.Series([None, 1.0, 4.0, -5.0]), direction="both").to_list()
    [False, False, True, True]
    """
    threshold = ensure_positive(threshold, param_name="threshold")
    ensure_choice(direction, ("up", "down", "both"), param_name="direction")
    s = to_expr(score, param_name="score").cast(pl.Float64).fill_nan(None)
    if direction == "up":
        hit = s > threshold
    elif direction == "down":
        hit = s < -threshold
    else:
        hit = s.abs() > threshold
    return hit.fill_null(False).alias("flag")


# --------------------------------------------------------------------------- frames


def _norm_by(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def regular_grid(
    series: Frame, *, ts: str = "ts", by: str | Sequence[str] = ("service",), every: str = "1m"
) -> Frame:
    """Insert the missing buckets of each group (other columns null), sorted by group, ts.

    Each group's grid runs from its first to its last bucket, ``every`` apart; ``ts`` must
    already be bucket starts (e.g. from :func:`obsbench.metrics.service_buckets`).
    """
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    check_columns(series, [*by_cols, ts], temporal=[ts])
    grid = (
        series.group_by(by_cols)
        .agg(pl.datetime_range(pl.col(ts).min(), pl.col(ts).max(), every).alias(ts))
        .explode(ts)
    )
    return grid.join(series, on=[*by_cols, ts], how="left").sort([*by_cols, ts])


def detect_anomalies(
    series: Frame,
    *,
    value: str,
    ts: str = "ts",
    by: str | Sequence[str] = ("service",),
    every: str = "1m",
    method: Method = "robust",
    threshold: float | None = None,
    direction: Direction = "up",
    window: int = 60,
    seasonal: bool = True,
    seasons: int = 7,
    span: float = 60.0,
    min_scale: float = 0.0,
    min_samples: int | None = None,
) -> Frame:
    """Score and flag every point of a bucketed series, per group.

    Parameters
    ----------
    series
        One row per group and bucket (``ts`` = bucket start), e.g. from
        :func:`obsbench.metrics.service_buckets`. Missing buckets are inserted as null.
    value
        The column to score.
    ts, by, every
        Bucket column, group columns and bucket length.
    method
        ``"robust"`` (:func:`robust_score`) or ``"ewma"`` (:func:`ewma_score`).
    threshold
        Flag threshold; default 3.5 (robust) or 3.0 (EWMA).
    direction
        See :func:`anomaly_flag`.
    window, seasonal, seasons
        Robust detector: trailing window (points) of the scale, and a seasonal baseline
        by time of day (``season`` = the number of buckets per day) over ``seasons`` days.
    span
        EWMA span (points).
    min_scale, min_samples
        Scale floor and warm-up, as in the detectors.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``ts``, the ``value`` column, ``score`` and ``flag``, on the regular grid,
        sorted by ``*by, ts``.
    """
    ensure_choice(method, ("robust", "ewma"), param_name="method")
    every = ensure_duration(every, param_name="every")
    by_cols = _norm_by(by)
    check_columns(series, [*by_cols, ts, value], temporal=[ts], numeric=[value])
    if method == "robust":
        per_day = duration_seconds("1d") / duration_seconds(every)
        if seasonal and per_day != int(per_day):
            msg = f"every={every!r} does not divide a day, so there is no time-of-day season"
            raise InvalidParameter(msg, hint='use every="1m", "5m", "15m" or "1h".')
        score = robust_score(
            value,
            window=window,
            season=int(per_day) if seasonal else None,
            seasons=seasons,
            min_scale=min_scale,
            min_samples=min_samples,
        )
        limit = 3.5 if threshold is None else threshold
    else:
        score = ewma_score(
            value,
            span=span,
            min_scale=min_scale,
            min_samples=min_samples if min_samples is not None else 30,
        )
        limit = 3.0 if threshold is None else threshold
    grid = regular_grid(series.select([*by_cols, ts, value]), ts=ts, by=by_cols, every=every)
    scored = grid.with_columns(score.over(by_cols) if by_cols else score)
    return scored.with_columns(anomaly_flag("score", threshold=limit, direction=direction))


def error_rate_anomalies(
    requests: Frame,
    *,
    ok: IntoExpr | None = None,
    every: str = "5m",
    by: str | Sequence[str] = ("service",),
    min_requests: int = 20,
    min_errors: int = 3,
    method: Method = "robust",
    window: int = 24,
    min_scale: float = 0.0075,
    **params: object,
) -> Frame:
    """Anomalies of the per-bucket error rate of each service (traffic-gated).

    Parameters
    ----------
    requests
        A ``requests`` frame.
    ok
        What counts as success. Default ``status_code < 500``: server errors only, since
        throttling (429) is a quota signal (:mod:`obsbench.metrics.quotas`) and client
        errors (4xx) are the callers' business. Pass ``"ok"`` for the loader's verdict.
    every, by
        Bucket length and group columns.
    min_requests
        Buckets with fewer requests get a null error rate (not scored, not flagged).
    min_errors
        A bucket is flagged only with at least this many errors: at low traffic a single
        error is a large *rate* but no evidence (one failed health check in 30 is 3.3%).
    method
        ``"robust"`` or ``"ewma"``.
    window
        Points in the trailing scale window (24 five-minute buckets: two hours).
    min_scale
        Scale floor in error-rate units (0.0075: with threshold 3.5 only an error-rate
        rise of about 3.9 points above the seasonal baseline can flag).
    **params
        Further :func:`detect_anomalies` parameters (``threshold``, ``window``,
        ``seasonal``, ``span`` ...).

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``ts``, ``requests``, ``errors``, ``error_rate``, ``score``, ``flag``.

    Notes
    -----
    The default 5-minute buckets give the detector enough requests per point on
    low-traffic services; incidents shorter than a bucket are still caught when their
    errors concentrate in it. Measured on a seeded 30-day simulator history, see
    ``docs/metrics/service.md``.
    """
    min_requests = ensure_window(min_requests, param_name="min_requests")
    by_cols = _norm_by(by)
    ok_cols = ["status_code"] if ok is None else to_expr(ok, param_name="ok").meta.root_names()
    check_columns(requests, [*by_cols, "ts", *ok_cols], temporal=["ts"])
    min_errors = ensure_window(min_errors, param_name="min_errors")
    good = pl.col("status_code") < 500 if ok is None else to_expr(ok, param_name="ok")
    buckets = requests.group_by([*by_cols, pl.col("ts").dt.truncate(every)]).agg(
        pl.len().alias("requests"), (~good).sum().alias("errors"), error_rate(good)
    )
    gated = buckets.select(
        *by_cols,
        "ts",
        "requests",
        "errors",
        pl.when(pl.col("requests") >= min_requests).then(pl.col("error_rate")).alias("error_rate"),
    )
    scored = detect_anomalies(
        gated,
        value="error_rate",
        by=by_cols,
        every=every,
        method=method,
        window=window,
        min_scale=min_scale,
        **params,  # type: ignore[arg-type]
    )
    counts = gated.select(*by_cols, "ts", "requests", "errors")
    return (
        scored.join(counts, on=[*by_cols, "ts"], how="left")
        .with_columns(flag=pl.col("flag") & (pl.col("errors").fill_null(0) >= min_errors))
        .select(*by_cols, "ts", "requests", "errors", "error_rate", "score", "flag")
        .sort([*by_cols, "ts"])
    )


def latency_anomalies(
    requests: Frame,
    *,
    q: float = 0.5,
    every: str = "5m",
    by: str | Sequence[str] = ("service", "endpoint"),
    min_requests: int = 20,
    method: Method = "robust",
    log: bool = True,
    window: int = 24,
    min_scale: float = 0.125,
    **params: object,
) -> Frame:
    """Anomalies of a per-bucket latency percentile of each service.

    Parameters
    ----------
    requests
        A ``requests`` frame.
    q
        The percentile scored (0.5: the median), exact as
        :func:`obsbench.metrics.latency_percentile`. A p99 of the 20-odd requests a quiet
        endpoint serves in a bucket is its maximum, too noisy to alert on; the median
        moves with the whole distribution and has the least noise.
    every, min_requests, method
        As in :func:`error_rate_anomalies`.
    by
        Group columns. Per endpoint by default: a service's endpoints have different
        latencies (a 80 ms login next to an 8 ms token refresh), so a service-wide
        percentile jumps with the traffic mix, not with the service's health.
    log
        Score ``ln(percentile)`` instead of the raw milliseconds, so that a 3x slowdown
        scores alike on a 2 ms and a 200 ms service (latencies are multiplicative).
    window
        Points in the trailing scale window.
    min_scale
        Scale floor in the scored unit (0.125 in log units: with threshold 3.5 only a
        slowdown of about 1.9x or more can flag).
    **params
        Further :func:`detect_anomalies` parameters.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``*by``, ``ts``, ``latency`` (the scored value), ``score``, ``flag``.
    """
    min_requests = ensure_window(min_requests, param_name="min_requests")
    by_cols = _norm_by(by)
    check_columns(requests, [*by_cols, "ts", "latency_ms"], temporal=["ts"])
    buckets = requests.group_by([*by_cols, pl.col("ts").dt.truncate(every)]).agg(
        pl.len().alias("requests"), latency_percentile("latency_ms", q=q).alias("p")
    )
    p = pl.col("p").clip(lower_bound=1e-3).log() if log else pl.col("p")
    gated = buckets.select(
        *by_cols, "ts", pl.when(pl.col("requests") >= min_requests).then(p).alias("latency")
    )
    return detect_anomalies(
        gated,
        value="latency",
        by=by_cols,
        every=every,
        method=method,
        window=window,
        min_scale=min_scale,
        **params,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class DetectionScore:
    """Precision and recall of flags against ground-truth incidents.

    Attributes
    ----------
    precision
        Flagged points inside an incident window of their target / flagged points
        (NaN without flags).
    event_precision
        The same for alarm events (runs of consecutive flagged buckets of one target).
    recall
        Incidents with at least one flagged point of their target inside their window /
        incidents (NaN without incidents).
    flagged, true_flags, alarms, true_alarms, incidents, detected
        The counts behind the ratios.
    per_incident
        ``incident_id``, ``kind``, ``target``, ``start``, ``end``, ``detected``,
        ``first_flag`` (time to detection = ``first_flag - start``).
    """

    precision: float
    event_precision: float
    recall: float
    flagged: int
    true_flags: int
    alarms: int
    true_alarms: int
    incidents: int
    detected: int
    per_incident: pl.DataFrame


def score_detections(
    flags: Frame,
    incidents: Frame,
    *,
    target: str = "service",
    ts: str = "ts",
    flag: str = "flag",
    every: str = "1m",
    kinds: Sequence[str] | None = None,
    tolerance: str | timedelta = "0m",
    start: datetime | None = None,
) -> DetectionScore:
    """Event-level recall and point/event precision of anomaly flags.

    Parameters
    ----------
    flags
        Output of :func:`detect_anomalies` (a ``target`` column, ``ts`` bucket starts and a
        boolean ``flag``).
    incidents
        The ``incidents`` dataset (``incident_id``, ``kind``, ``target``, ``start``,
        ``end``), e.g. the simulator's ground truth.
    target
        The column of ``flags`` matched against ``incidents.target``.
    ts, flag, every
        Bucket column, flag column and bucket length of ``flags``.
    kinds
        Incident kinds to score against (``["error_burst"]``); default all. Only
        incidents whose target appears in ``flags`` count.
    tolerance
        Extends every incident window past its end (detection lag allowed).
    start
        Score only from here on: flags before ``start`` and incidents that start before it
        are ignored (exclude the detectors' warm-up, one day for the seasonal baseline).

    Returns
    -------
    DetectionScore

    Notes
    -----
    A bucket ``[t, t + every)`` is inside an incident ``[start, end)`` when they overlap:
    ``t < end + tolerance`` and ``t + every > start``.
    """
    every = ensure_duration(every, param_name="every")
    tol = timedelta(seconds=duration_seconds(tolerance)) if tolerance not in ("0m", "0s") else None
    check_columns(flags, [target, ts, flag], dataset="anomaly flags", temporal=[ts])
    check_columns(incidents, ["incident_id", "kind", "target", "start", "end"], dataset="incidents")
    f = flags.lazy().select(pl.col(target).alias("_target"), pl.col(ts).alias("_ts"), flag)
    inc = incidents.lazy()
    if start is not None:
        f = f.filter(pl.col("_ts") >= start)
        inc = inc.filter(pl.col("start") >= start)
    if kinds is not None:
        inc = inc.filter(pl.col("kind").is_in(list(kinds)))
    targets = f.select(pl.col("_target").unique())
    inc = inc.join(targets, left_on="target", right_on="_target", how="semi")
    inc = inc.select("incident_id", "kind", "target", "start", "end")
    if tol is not None:
        inc = inc.with_columns(pl.col("end") + tol)
    flagged = f.filter(pl.col(flag)).with_columns(_row=pl.int_range(pl.len()))
    hits = flagged.join(inc, left_on="_target", right_on="target", how="inner").filter(
        (pl.col("_ts") < pl.col("end")) & (pl.col("_ts").dt.offset_by(every) > pl.col("start"))
    )
    true_rows = hits.select("_row").unique()
    # Alarm events: runs of consecutive flagged buckets per target.
    step = pl.col("_ts").diff().over("_target") != pl.duration(
        microseconds=int(duration_seconds(every) * 1e6)
    )
    events = flagged.sort("_target", "_ts").with_columns(
        _event=step.fill_null(True).cast(pl.Int64).cum_sum()
    )
    true_events = events.join(true_rows, on="_row", how="semi").select("_event").unique()
    per_incident = (
        inc.join(
            hits.group_by("incident_id").agg(pl.col("_ts").min().alias("first_flag")),
            on="incident_id",
            how="left",
        )
        .with_columns(detected=pl.col("first_flag").is_not_null())
        .sort("start", "incident_id")
    )
    counts = pl.collect_all(
        [
            flagged.select(pl.len()),
            true_rows.select(pl.len()),
            events.select(pl.col("_event").n_unique()),
            true_events.select(pl.len()),
            per_incident,
        ]
    )
    n_flag, n_true, n_alarm, n_true_alarm = (int(c.item()) for c in counts[:4])
    table = counts[4]
    n_inc, n_det = table.height, int(table["detected"].sum())
    nan = float("nan")
    return DetectionScore(
        precision=n_true / n_flag if n_flag else nan,
        event_precision=n_true_alarm / n_alarm if n_alarm else nan,
        recall=n_det / n_inc if n_inc else nan,
        flagged=n_flag,
        true_flags=n_true,
        alarms=n_alarm,
        true_alarms=n_true_alarm,
        incidents=n_inc,
        detected=n_det,
        per_incident=table,
    )
