"""The alert state machine as pure functions: :func:`replay` and :func:`advance`.

:func:`replay` computes a whole timeline (backtests, previews); :func:`advance` one
evaluation (the live evaluator). Both implement the same semantics, and a property test
checks that folding :func:`advance` over the evaluations gives :func:`replay`'s timeline.

Semantics (Prometheus 2.42 ``rules/alerting.go``, checked against ``promtool`` in
``tests/integration/test_alerts_prometheus.py``), per series and severity:

- The condition holds at an evaluation when the series has a value there and
  ``value <op> threshold``. A series with no value at an evaluation does not hold.
- inactive -> **pending** at the first evaluation where the condition holds;
  ``active_at`` is that evaluation's time.
- pending -> **firing** at the first evaluation where it still holds and
  ``ts - active_at >= for`` (at once when ``for`` is 0).
- pending and the condition clears: the alert is dropped (an ``inactive`` row marks it) and
  the ``for`` clock restarts at the next pending.
- firing and the condition clears: it resolves (``inactive`` row) at once, or with
  ``keep_firing_for`` it stays firing while ``ts - first_clear_ts < keep_firing_for`` and
  resolves at the first evaluation where that no longer holds; the condition holding again
  resets the clock. A series that disappears is a condition that clears.
- The value of a firing alert kept by ``keep_firing_for``, and of the resolving row, is the
  last value seen (Prometheus keeps it too).

obsbench additions for a rule's source (Grafana's NoData/Error, which Prometheus lacks):
an evaluation time with no row at all is *no data*, and a time listed in ``errors`` is a
failed evaluation; the rule's ``no_data`` / ``on_error`` policy decides (see
:class:`~obsbench.alerts.rules.Rule`). Rule-level rows (``nodata``, ``error`` states, and the
``alerting`` policy's alert) have null label values.

Severities are independent state machines on inclusive thresholds (see
:mod:`obsbench.alerts.rules`), which is how Prometheus evaluates one rule per severity.

The timeline is sparse: one row per evaluation where a (series, severity) is pending or
firing, plus one ``inactive`` row where it leaves those states; an absent row means inactive.
``dense=True`` adds the inactive rows (every evaluation for every series that was ever
active), which is handy for comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from obsbench.alerts.rules import SEVERITIES, Rule
from obsbench.errors import ObsbenchError, SchemaError

if TYPE_CHECKING:
    from numpy.typing import NDArray

STATES = ("inactive", "pending", "firing", "nodata", "error")
_INACTIVE, _PENDING, _FIRING, _NODATA, _ERROR = range(5)
_US = pl.Datetime("us", "UTC")

_OPS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


class DuplicateSeries(ObsbenchError, ValueError):
    """Two rows of one evaluation have the same label set (Prometheus' duplicate label set)."""


def condition(op: str, values: NDArray[np.float64], threshold: float) -> NDArray[np.bool_]:
    """``values <op> threshold`` with IEEE semantics (NaN compares false, except ``!=``)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(_OPS[op](values, threshold), dtype=bool)


def _to_us(series: pl.Series) -> NDArray[np.int64]:
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        tz = dtype.time_zone
        s = series.dt.cast_time_unit("us")
        if tz is None:
            s = s.dt.replace_time_zone("UTC")
        return s.to_physical().to_numpy().astype(np.int64, copy=False)
    msg = f"column ts has dtype {dtype}, expected a Datetime"
    msg_0 = "alert values"
    raise SchemaError(msg_0, [msg])


def _sorted_unique(a: NDArray[np.int64]) -> NDArray[np.int64]:
    # sort-based: numpy 2's hash-based np.unique is several times slower on 1e6+ ints
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def _grid(values: pl.DataFrame, eval_times: object) -> NDArray[np.int64]:
    if eval_times is None:
        return _sorted_unique(_to_us(values.get_column("ts")))
    times = eval_times if isinstance(eval_times, pl.Series) else pl.Series("ts", eval_times)
    if times.dtype == pl.Object or not isinstance(times.dtype, pl.Datetime):
        times = pl.Series("ts", list(eval_times)).cast(_US)  # type: ignore[call-overload]
    return _sorted_unique(_to_us(times))


def _check(values: pl.DataFrame) -> list[str]:
    problems = [f"missing column {c!r}" for c in ("ts", "value") if c not in values.columns]
    if problems:
        msg = "alert values"
        raise SchemaError(msg, problems, hint="pass a frame of ts, labels..., value.")
    return [c for c in values.columns if c not in ("ts", "value")]


def replay(
    rule: Rule,
    values: pl.DataFrame,
    eval_times: Sequence[datetime] | pl.Series | None = None,
    *,
    errors: Iterable[datetime] | pl.Series | None = None,
    dense: bool = False,
) -> pl.DataFrame:
    """Replay ``rule`` over its signal's values: the alert timeline.

    Parameters
    ----------
    rule
        The rule (op, thresholds, ``for``, ``keep_firing_for``, no-data/error policies).
    values
        The signal at each evaluation time: ``ts``, one column per series label, ``value``.
        A series without a row at an evaluation time has no data there.
    eval_times
        Every evaluation time (default: the distinct ``ts`` of ``values``). Rows at other
        times are ignored.
    errors
        Evaluation times at which the source failed (their rows, if any, are ignored).
    dense
        Also return the inactive rows: every evaluation for every (series, severity) that
        was ever pending or firing.

    Returns
    -------
    pl.DataFrame
        ``ts``, ``alertname``, the label columns, ``severity``, ``state`` (``inactive``,
        ``pending``, ``firing``; ``nodata``/``error`` for rule-level rows), ``value``,
        ``active_at``; sorted by labels, severity and ``ts``.

    Raises
    ------
    DuplicateSeries
        If two rows share a time and a label set.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from obsbench.alerts.rules import parse_rules
    >>> rule = parse_rules('''
    ... rules:
    ...   - name: Hot
    ...     signal: {promql: temperature}
    ...     thresholds: {warning: 30}
    ...     for: 2m
    ... ''')[0]
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> values = pl.DataFrame(
    ...     {
    ...         "ts": [t0 + timedelta(minutes=i) for i in range(5)],
    ...         "value": [20.0, 31.0, 32.0, 33.0, 25.0],
    ...     }
    ... )
    >>> replay(rule, values).select("ts", "state", "value").with_columns(
    ...     pl.col("ts").dt.strftime("%H:%M")
    ... )
    shape: (4, 3)
    ┌───────┬──────────┬───────┐
    │ ts    ┆ state    ┆ value │
    │ ---   ┆ ---      ┆ ---   │
    │ str   ┆ str      ┆ f64   │
    ╞═══════╪══════════╪═══════╡
    │ 00:01 ┆ pending  ┆ 31.0  │
    │ 00:02 ┆ pending  ┆ 32.0  │
    │ 00:03 ┆ firing   ┆ 33.0  │
    │ 00:04 ┆ inactive ┆ 33.0  │
    └───────┴──────────┴───────┘
    """
    return replay_prepared(rule, prepare(values, eval_times, errors=errors), dense=dense)


@dataclass(frozen=True)
class Prepared:
    """A signal frame mapped onto its evaluation grid, reusable by every rule on it."""

    grid: NDArray[np.int64]
    is_error: NDArray[np.bool_]
    is_nodata: NDArray[np.bool_]
    keys: pl.DataFrame
    label_cols: list[str]
    label_schema: dict[str, pl.DataType]
    sid: NDArray[np.int64]
    t_row: NDArray[np.int64]
    val: NDArray[np.float64]


def prepare(
    values: pl.DataFrame,
    eval_times: Sequence[datetime] | pl.Series | None = None,
    *,
    errors: Iterable[datetime] | pl.Series | None = None,
) -> Prepared:
    """Map a signal frame onto its evaluation grid (the rule-independent half of :func:`replay`).

    Backtests prepare each distinct signal once and replay every rule on it with
    :func:`replay_prepared`.
    """
    label_cols = _check(values)
    grid = _grid(values, eval_times)
    n_t = len(grid)
    err_us = _grid(pl.DataFrame({"ts": []}, schema={"ts": _US}), errors) if errors else None
    is_error = np.isin(grid, err_us) if err_us is not None else np.zeros(n_t, dtype=bool)

    # Map rows onto the grid, drop rows off-grid or at failed evaluations.
    vt = _to_us(values.get_column("ts"))
    t_idx = np.searchsorted(grid, vt)
    on_grid = t_idx < n_t
    on_grid[on_grid] &= grid[t_idx[on_grid]] == vt[on_grid]
    on_grid[on_grid] &= ~is_error[t_idx[on_grid]]
    frame = values if on_grid.all() else values.filter(pl.Series(on_grid))
    t_row = t_idx[on_grid].astype(np.int64)

    if label_cols:
        keys = frame.select(label_cols).unique(maintain_order=True).with_row_index("_sid")
        sid = (
            frame.select(label_cols)
            .join(keys, on=label_cols, how="left", nulls_equal=True, maintain_order="left")
            .get_column("_sid")
            .to_numpy()
            .astype(np.int64)
        )
    else:
        keys = pl.DataFrame({"_sid": pl.Series([0] if frame.height else [], dtype=pl.UInt32)})
        sid = np.zeros(frame.height, dtype=np.int64)
    val = frame.get_column("value").cast(pl.Float64).to_numpy()
    key = sid * n_t + t_row
    sorted_input = key.size < 2 or bool((np.diff(key) > 0).all())  # then no sort needed
    if not sorted_input and _sorted_unique(key).size != key.size:
        msg = "two rows of one evaluation have the same labels"
        raise DuplicateSeries(msg, hint="aggregate the signal so each label set has one row.")

    has_rows = np.zeros(n_t, dtype=bool)
    has_rows[t_row] = True
    return Prepared(
        grid=grid,
        is_error=is_error,
        is_nodata=~has_rows & ~is_error,
        keys=keys,
        label_cols=label_cols,
        label_schema={c: values.schema[c] for c in label_cols},
        sid=sid,
        t_row=t_row,
        val=val,
    )


def replay_prepared(rule: Rule, p: Prepared, *, dense: bool = False) -> pl.DataFrame:
    """:func:`replay` on a :class:`Prepared` signal."""
    grid, n_t = p.grid, len(p.grid)
    sid, t_row, val = p.sid, p.t_row, p.val
    is_error, is_nodata = p.is_error, p.is_nodata
    n_series = p.keys.height
    carry = np.zeros(n_t, dtype=bool)
    if rule.no_data == "keep_last":
        carry |= is_nodata
    if rule.on_error in ("error", "alerting", "keep_last"):
        carry |= is_error
    alerting_times = np.zeros(n_t, dtype=bool)
    if rule.no_data == "alerting":
        alerting_times |= is_nodata
    if rule.on_error == "alerting":
        alerting_times |= is_error

    n_sev = len(SEVERITIES)
    cols, ts_list, vals = [], [], []
    for sev, thr in rule.thresholds.items():
        k = SEVERITIES.index(sev)
        mask = condition(rule.op, val, thr)
        cols.append(sid[mask] * n_sev + k)
        ts_list.append(t_row[mask])
        vals.append(val[mask])
    if alerting_times.any():  # the rule-level pseudo series (id n_series)
        at = np.flatnonzero(alerting_times)
        cols.append(np.full(at.size, n_series * n_sev + SEVERITIES.index(rule.no_data_severity)))
        ts_list.append(at)
        vals.append(np.full(at.size, np.nan))
    col = np.concatenate(cols) if cols else np.empty(0, np.int64)
    t = np.concatenate(ts_list) if ts_list else np.empty(0, np.int64)
    v = np.concatenate(vals) if vals else np.empty(0, np.float64)

    if carry.any() and col.size:  # keep_last: a true condition carries over carry times
        col, t, v = _carry(col, t, v, carry)

    out = _scan(col, t, v, grid, rule.for_seconds * 1e6, rule.keep_firing_seconds * 1e6)
    timeline = _frame(rule, out, grid, p.keys, p.label_cols, n_sev, p.label_schema)

    level = []
    if rule.no_data == "nodata":
        level.append((is_nodata, "nodata"))
    if rule.on_error == "error":
        level.append((is_error, "error"))
    for mask, state in level:
        if mask.any():
            timeline = pl.concat(
                [timeline, _level_rows(rule, mask, state, grid, timeline.schema)],
                how="vertical",
            )
    order = [*p.label_cols, "severity", "ts"]
    timeline = timeline.sort(order, nulls_last=True, maintain_order=True)
    if dense:
        timeline = _densify(timeline, grid, p.label_cols)
    return timeline


def _carry(
    col: NDArray[np.int64], t: NDArray[np.int64], v: NDArray[np.float64], carry: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    n_t = carry.size
    # run[t] = number of consecutive carry times starting at t+1
    run = np.zeros(n_t + 1, dtype=np.int64)
    for i in range(n_t - 1, -1, -1):  # O(T) once per rule; cheap next to the scan
        run[i] = run[i + 1] + 1 if carry[i] else 0
    extra = run[np.minimum(t + 1, n_t)]
    extra[t + 1 >= n_t] = 0
    if not extra.any():
        return col, t, v
    rep = np.repeat(np.arange(col.size), extra)
    offs = np.arange(rep.size) - np.repeat(np.cumsum(extra) - extra, extra) + 1
    return (
        np.concatenate([col, col[rep]]),
        np.concatenate([t, t[rep] + offs]),
        np.concatenate([v, v[rep]]),
    )


def _scan(
    col: NDArray[np.int64],
    t: NDArray[np.int64],
    v: NDArray[np.float64],
    grid: NDArray[np.int64],
    for_us: float,
    kff_us: float,
) -> dict[str, NDArray]:
    """The vectorised state machine over the rows where the condition holds.

    Rows are grouped into runs (consecutive evaluations of one column where the condition
    holds). A run is *bridged* into the previous one when that ended firing and the gap
    between them is shorter than ``keep_firing_for``; whether a run ends firing follows the
    recurrence ``E[r] = F[r] or (E[r-1] and S[r])``, solved with two running maxima.
    """
    empty = np.empty(0, np.int64)
    if col.size == 0:
        return {"col": empty, "t": empty, "state": empty, "value": np.empty(0), "active": empty}
    order = np.lexsort((t, col))
    col, t, v = col[order], t[order], v[order]
    n_t = grid.size
    n = col.size
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (col[1:] != col[:-1]) | (t[1:] != t[:-1] + 1)
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:] - 1, n - 1]
    run_id = np.cumsum(new_run) - 1
    r_col, r_ts, r_te = col[starts], t[starts], t[ends]
    n_r = starts.size
    idx = np.arange(n_r)

    fresh_fires = (grid[r_te] - grid[r_ts]) >= for_us
    same_prev = np.r_[False, r_col[1:] == r_col[:-1]]
    g0 = np.r_[0, r_te[:-1] + 1]
    glast = np.maximum(r_ts - 1, 0)
    short_gap = same_prev & (kff_us > 0) & ((grid[glast] - grid[np.minimum(g0, n_t - 1)]) < kff_us)
    last_f = np.maximum.accumulate(np.where(fresh_fires, idx, -1))
    last_not_s = np.maximum.accumulate(np.where(~short_gap, idx, -1))
    ends_firing = last_f >= last_not_s
    bridged = short_gap & np.r_[False, ends_firing[:-1]]
    episode = np.maximum.accumulate(np.where(~bridged, idx, -1))
    active_run = grid[r_ts[episode]]

    # Rows inside runs.
    row_active = active_run[run_id]
    row_state = np.where(
        bridged[run_id] | ((grid[t] - row_active) >= for_us), _FIRING, _PENDING
    ).astype(np.int64)

    # Rows in the gap after each run: kept firing, then one inactive row.
    has_next = np.r_[r_col[1:] == r_col[:-1], False]
    next_start = np.where(has_next, np.r_[r_ts[1:], 0], n_t)
    gap_start = r_te + 1
    gs_clipped = np.minimum(gap_start, n_t - 1)
    if kff_us > 0:
        limit = np.searchsorted(grid, grid[gs_clipped] + kff_us, side="left")
        kept = np.where(ends_firing, np.minimum(limit, next_start) - gap_start, 0)
    else:
        kept = np.zeros(n_r, dtype=np.int64)
    kept = np.maximum(kept, 0)
    end_t = gap_start + kept
    has_end = end_t < next_start
    last_val = v[ends]

    k_rep = np.repeat(idx, kept)
    k_t = np.repeat(gap_start, kept) + (
        np.arange(k_rep.size) - np.repeat(np.cumsum(kept) - kept, kept)
    )
    e_runs = idx[has_end]
    return {
        "col": np.concatenate([col, r_col[k_rep], r_col[e_runs]]),
        "t": np.concatenate([t, k_t, end_t[e_runs]]),
        "state": np.concatenate(
            [row_state, np.full(k_rep.size, _FIRING), np.full(e_runs.size, _INACTIVE)]
        ),
        "value": np.concatenate([v, last_val[k_rep], last_val[e_runs]]),
        "active": np.concatenate([row_active, active_run[k_rep], active_run[e_runs]]),
    }


def _frame(
    rule: Rule,
    out: dict[str, NDArray],
    grid: NDArray[np.int64],
    keys: pl.DataFrame,
    label_cols: list[str],
    n_sev: int,
    label_schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    sid = out["col"] // n_sev
    sev = out["col"] % n_sev
    frame = pl.DataFrame(
        {
            "ts": pl.Series(grid[out["t"]], dtype=pl.Int64).cast(_US),
            "alertname": pl.Series([rule.name] * sid.size, dtype=pl.String),
            "_sid": pl.Series(sid, dtype=pl.Int64),
            "severity": pl.Series(np.array(SEVERITIES, dtype=object)[sev], dtype=pl.String),
            "state": pl.Series(np.array(STATES, dtype=object)[out["state"]], dtype=pl.String),
            "value": pl.Series(out["value"], dtype=pl.Float64),
            "active_at": pl.Series(out["active"], dtype=pl.Int64).cast(_US),
        }
    )
    frame = frame.with_columns(pl.col("value").fill_nan(None))
    if label_cols:
        lab = keys.with_columns(pl.col("_sid").cast(pl.Int64))
        frame = frame.join(lab, on="_sid", how="left")
    frame = frame.drop("_sid")
    return frame.select(
        "ts",
        "alertname",
        *[pl.col(c).cast(label_schema[c]) for c in label_cols],
        "severity",
        "state",
        "value",
        "active_at",
    )


def _level_rows(
    rule: Rule, mask: NDArray[np.bool_], state: str, grid: NDArray[np.int64], schema: pl.Schema
) -> pl.DataFrame:
    on = np.flatnonzero(mask)
    block_start = np.r_[True, on[1:] != on[:-1] + 1]
    active = grid[on[np.maximum.accumulate(np.where(block_start, np.arange(on.size), 0))]]
    block_end = np.r_[on[1:] != on[:-1] + 1, True]
    after = on[block_end] + 1
    after_active = active[block_end]
    keep = after < grid.size
    ts = np.concatenate([grid[on], grid[after[keep]]])
    states = [state] * on.size + ["inactive"] * int(keep.sum())
    act = np.concatenate([active, after_active[keep]])
    frame = pl.DataFrame(
        {
            "ts": pl.Series(ts, dtype=pl.Int64).cast(_US),
            "alertname": [rule.name] * ts.size,
            "severity": [rule.no_data_severity] * ts.size,
            "state": states,
            "value": pl.Series([None] * ts.size, dtype=pl.Float64),
            "active_at": pl.Series(act, dtype=pl.Int64).cast(_US),
        },
    )
    return frame.with_columns(
        [
            pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in schema.items()
            if name not in frame.columns
        ]
    ).select(list(schema))


def _densify(
    timeline: pl.DataFrame, grid: NDArray[np.int64], label_cols: list[str]
) -> pl.DataFrame:
    keys = timeline.select("alertname", *label_cols, "severity").unique(maintain_order=True)
    times = pl.DataFrame({"ts": pl.Series(grid, dtype=pl.Int64).cast(_US)})
    full = keys.join(times, how="cross")
    on = ["ts", "alertname", *label_cols, "severity"]
    out = full.join(timeline, on=on, how="left", nulls_equal=True)
    return (
        out.with_columns(pl.col("state").fill_null("inactive"))
        .select(timeline.columns)
        .sort([*label_cols, "severity", "ts"], nulls_last=True, maintain_order=True)
    )


def current_severity(timeline: pl.DataFrame) -> pl.DataFrame:
    """Per evaluation and series, the one alert a person sees: the highest firing severity.

    Collapses the per-severity rows of :func:`replay` to one row per ``ts`` and series: the
    highest severity that is firing, else the highest that is pending (rows that are only
    ``inactive`` are dropped). This is what the notifier's default inhibition shows.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> tl = pl.DataFrame(
    ...     {
    ...         "ts": [t, t],
    ...         "alertname": ["R", "R"],
    ...         "severity": ["warning", "critical"],
    ...         "state": ["firing", "pending"],
    ...         "value": [1.2, 1.2],
    ...         "active_at": [t, t],
    ...     }
    ... )
    >>> current_severity(tl).select("severity", "state").row(0)
    ('warning', 'firing')
    """
    labels = [
        c
        for c in timeline.columns
        if c not in ("ts", "alertname", "severity", "state", "value", "active_at")
    ]
    rank = pl.col("severity").replace_strict(
        {s: i for i, s in enumerate(SEVERITIES)}, default=-1, return_dtype=pl.Int8
    )
    active = timeline.filter(pl.col("state").is_in(["pending", "firing"]))
    keyed = active.with_columns(_order=(pl.col("state") == "firing").cast(pl.Int8) * 10 + rank)
    return (
        keyed.sort("_order", descending=True)
        .group_by("ts", "alertname", *labels, maintain_order=True)
        .first()
        .drop("_order")
        .sort([*labels, "ts"], nulls_last=True)
        .select(timeline.columns)
    )


# ----------------------------------------------------------------------------------------
# One evaluation at a time (the live evaluator).

STATE_SCHEMA = {
    "rule": pl.String,
    "series": pl.String,
    "severity": pl.String,
    "state": pl.String,
    "active_at": _US,
    "fired_at": _US,
    "keep_since": _US,
    "value": pl.Float64,
}
"""Columns of the live state frame (one row per pending or firing alert)."""

OBS_SCHEMA = {
    "rule": pl.String,
    "series": pl.String,
    "severity": pl.String,
    "cond": pl.Boolean,
    "value": pl.Float64,
    "for_us": pl.Int64,
    "kff_us": pl.Int64,
}
"""Columns of :func:`advance`'s observations (one row per rule, series, severity)."""


def empty_state() -> pl.DataFrame:
    """A state frame with no alerts."""
    return pl.DataFrame(schema=STATE_SCHEMA)


def advance(
    state: pl.DataFrame,
    obs: pl.DataFrame,
    ts: datetime,
    *,
    params: pl.DataFrame | None = None,
    carry_rules: Iterable[str] = (),
    skip_rules: Iterable[str] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Advance every alert by one evaluation at ``ts``: the same semantics as :func:`replay`.

    Parameters
    ----------
    state
        The current alerts (:data:`STATE_SCHEMA`; pending and firing rows).
    obs
        The observations at ``ts`` (:data:`OBS_SCHEMA`): one row per rule, series and
        severity the signal returned, with ``cond`` the threshold test and the rule's
        ``for`` / ``keep_firing_for`` in microseconds.
    params
        ``rule``, ``for_us``, ``kff_us`` for every rule (needed for alerts of rules without
        an observation at ``ts``; default: taken from ``obs``).
    carry_rules
        Rules whose every alert keeps its last condition (``keep_last``/error policies).
    skip_rules
        Rules not evaluated at ``ts`` (not due yet): their alerts are left untouched.

    Returns
    -------
    (new_state, transitions)
        The new state frame, and one row per alert whose state changed, with
        ``from_state`` / ``to_state`` (``inactive`` for a resolved or dropped alert).
    """
    ts_us = int(pl.Series([ts]).cast(_US).to_physical()[0])
    ts_col = pl.lit(ts_us).cast(pl.Int64)
    skip = list(skip_rules)
    carry = list(carry_rules)
    untouched = state.filter(pl.col("rule").is_in(skip))
    live = state.filter(~pl.col("rule").is_in(skip))
    if params is None:
        params = obs.select("rule", "for_us", "kff_us").unique("rule")
    keys = ["rule", "series", "severity"]
    # Carried rules: each alert's last condition and value stand in for an observation.
    carried = live.filter(pl.col("rule").is_in(carry)).select(
        *keys, cond=pl.col("keep_since").is_null(), value=pl.col("value")
    )
    fresh = obs.filter(~pl.col("rule").is_in(skip)).select(*keys, "cond", "value")
    obs = pl.concat([carried, fresh.join(carried, on=keys, how="anti")])
    prev = live.select(
        *keys,
        prev_state="state",
        prev_active=pl.col("active_at").dt.cast_time_unit("us").to_physical(),
        prev_fired=pl.col("fired_at").dt.cast_time_unit("us").to_physical(),
        prev_keep=pl.col("keep_since").dt.cast_time_unit("us").to_physical(),
        prev_value="value",
    )
    j = (
        prev.join(obs.filter(pl.col("cond")), on=keys, how="full", coalesce=True)
        .join(params.select("rule", "for_us", "kff_us"), on="rule", how="left")
        .with_columns(pl.col("cond").fill_null(False), pl.col("kff_us").fill_null(0))
    )
    was = pl.col("prev_state")
    active_now = pl.when(was.is_null()).then(ts_col).otherwise(pl.col("prev_active"))
    keep_since = pl.coalesce(pl.col("prev_keep"), ts_col)
    kept = (was == "firing") & (pl.col("kff_us") > 0) & ((ts_col - keep_since) < pl.col("kff_us"))
    new_state = (
        pl.when(pl.col("cond"))
        .then(
            pl.when((was == "firing") | ((ts_col - active_now) >= pl.col("for_us")))
            .then(pl.lit("firing"))
            .otherwise(pl.lit("pending"))
        )
        .when(kept)
        .then(pl.lit("firing"))
        .otherwise(pl.lit("inactive"))
    )
    j = j.with_columns(
        state=new_state,
        active_at=pl.when(pl.col("cond")).then(active_now).otherwise(pl.col("prev_active")),
        keep_since=pl.when(pl.col("cond")).then(None).when(kept).then(keep_since),
        value=pl.when(pl.col("cond")).then(pl.col("value")).otherwise(pl.col("prev_value")),
    ).with_columns(
        fired_at=pl.when(pl.col("state") != "firing")
        .then(None)
        .when(was == "firing")
        .then(pl.col("prev_fired"))
        .otherwise(ts_col),
    )
    to_dt = [pl.col(c).cast(pl.Int64).cast(_US) for c in ("active_at", "fired_at", "keep_since")]
    j = j.with_columns(to_dt)
    transitions = j.filter(pl.col("state") != pl.coalesce(was, pl.lit("inactive"))).select(
        *keys,
        from_state=pl.coalesce(was, pl.lit("inactive")),
        to_state="state",
        ts=ts_col.cast(_US),
        value="value",
        active_at="active_at",
    )
    new = j.filter(pl.col("state") != "inactive").select(list(STATE_SCHEMA))
    return pl.concat([untouched.select(list(STATE_SCHEMA)), new]), transitions
