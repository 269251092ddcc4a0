from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.errors import ColumnNotFound
from obsbench.metrics import InvalidParameter

T0 = datetime(2024, 1, 1, 13, 30, tzinfo=UTC)


def _usage(
    used: list[int],
    *,
    limit: int = 10,
    provider: str = "ibkr",
    step_s: float = 1.0,
    endpoint: str = "orders",
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=i * step_s) for i in range(len(used))],
            "provider": provider,
            "endpoint": endpoint,
            "used": used,
            "limit": limit,
            "window_s": 1,
        },
        schema_overrides={"used": pl.Int64, "limit": pl.Int64, "window_s": pl.Int64},
    )


@pytest.mark.parametrize(
    ("used", "limit", "peak", "throttled", "windows"),
    [
        pytest.param([4, 10, 12], 10, 1.2, 2, 1, id="one_window_over"),
        pytest.param([0, 0, 0], 5, 0.0, 0, 0, id="idle"),
        pytest.param([5, 5], 5, 1.0, 0, 0, id="at_limit_not_throttled"),
        pytest.param([7, 9, 3, 11], 3, 11 / 3, 18, 3, id="hand_sum_of_excess"),
    ],
)
def test_utilisation_peak_and_throttling(used, limit, peak, throttled, windows) -> None:
    u, lim = pl.Series(used), pl.Series([limit] * len(used))
    assert obm.peak_utilisation(u, lim) == pytest.approx(peak)
    assert obm.throttled_requests(u, lim) == throttled
    assert obm.throttled_windows(u, lim) == windows
    assert obm.api_utilisation(u, lim).to_list() == pytest.approx([x / limit for x in used])


def test_empty_and_zero_limit() -> None:
    empty = pl.Series([], dtype=pl.Int64)
    assert math.isnan(obm.peak_utilisation(empty, empty))
    assert obm.throttled_requests(empty, empty) == 0
    assert math.isnan(obm.api_utilisation(pl.Series([3]), pl.Series([0]))[0])


@pytest.mark.parametrize(
    ("step_s", "slope_per_s", "lookback"),
    [
        pytest.param(1.0, 0.25, 10, id="1s_samples_quarter_per_s"),
        pytest.param(5.0, 0.2, 4, id="5s_samples_one_per_sample"),
        pytest.param(60.0, 0.5, 30, id="minute_samples_long_lookback"),
    ],
)
def test_forecast_on_a_synthetic_linear_ramp(step_s, slope_per_s, lookback) -> None:
    # used(t) = 2 + slope * t reaches the limit at t* = (limit - 2) / slope, 20 samples on
    n = 50
    t = np.arange(n) * step_s
    used = 2.0 + slope_per_s * t
    limit = 2.0 + slope_per_s * step_s * (n + 20)
    df = pl.DataFrame(
        {"ts": [T0 + timedelta(seconds=float(s)) for s in t], "used": used, "limit": limit}
    )
    out = df.select(obm.usage_trend(lookback=lookback), obm.time_to_exhaustion(lookback=lookback))
    assert out["usage_trend"][: lookback - 1].is_null().all()
    np.testing.assert_allclose(
        out["usage_trend"][lookback - 1 :].to_numpy(), slope_per_s, rtol=1e-9
    )
    t_star = (limit - 2.0) / slope_per_s
    expected = t_star - t[lookback - 1 :]
    np.testing.assert_allclose(
        out["time_to_exhaustion_s"][lookback - 1 :].to_numpy(), expected, rtol=1e-9
    )


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        pytest.param([5, 5, 5, 5], math.inf, id="flat_never"),
        pytest.param([8, 6, 4, 2], math.inf, id="falling_never"),
        pytest.param([9, 10, 11, 12], 0.0, id="already_over_limit"),
    ],
)
def test_forecast_degenerate_cases(used: list[int], expected: float) -> None:
    df = _usage(used, limit=10)
    got = df.select(obm.time_to_exhaustion(lookback=4))["time_to_exhaustion_s"][-1]
    assert got == expected


def test_forecast_is_per_group_with_over() -> None:
    a = _usage([1, 2, 3, 4, 5], limit=10, provider="a")
    b = _usage([1, 3, 5, 7, 9], limit=10, provider="b")
    out = pl.concat([a, b]).with_columns(obm.time_to_exhaustion(lookback=3).over("provider"))
    last = out.group_by("provider").agg(pl.col("time_to_exhaustion_s").last()).sort("provider")
    assert last["time_to_exhaustion_s"].to_list() == pytest.approx([5.0, 0.5])


def test_quota_utilisation_buckets_and_summary() -> None:
    df = pl.concat(
        [
            _usage([2, 5, 7, 3] * 30, limit=5, provider="ibkr"),  # 2 minutes of 1-s windows
            _usage([1] * 120, limit=10, provider="alpaca"),
        ]
    )
    buckets = obm.quota_utilisation(df, every="1m")
    ibkr = buckets.filter(pl.col("provider") == "ibkr")
    assert ibkr["windows"].to_list() == [60, 60]
    assert ibkr["throttled_requests"].to_list() == [30, 30]  # 15 windows x 2 per minute
    assert ibkr["peak_utilisation"].to_list() == [1.4, 1.4]
    assert ibkr["mean_utilisation"][0] == pytest.approx((2 + 5 + 7 + 3) / 4 / 5)
    summary = obm.quota_summary(df, lookback=8)
    row = summary.filter(pl.col("provider") == "ibkr").row(0, named=True)
    assert row["throttled_requests"] == 60
    assert row["throttled_windows"] == 30
    assert row["peak_at"] == T0 + timedelta(seconds=2)  # first window at 7 / 5
    assert row["last_utilisation"] == pytest.approx(0.6)
    flat = summary.filter(pl.col("provider") == "alpaca").row(0, named=True)
    assert flat["time_to_exhaustion_s"] == math.inf
    assert flat["usage_trend"] == 0.0
    # group-local: the summary of one provider alone is the same row
    alone = obm.quota_summary(df.filter(pl.col("provider") == "alpaca"), lookback=8)
    assert alone.row(0, named=True) == flat


def test_errors() -> None:
    with pytest.raises(ColumnNotFound, match="used"):
        obm.quota_summary(pl.DataFrame({"ts": [T0], "provider": ["a"], "endpoint": ["x"]}))
    with pytest.raises(InvalidParameter, match="lookback"):
        obm.usage_trend(lookback=0)


@pytest.mark.parametrize(
    ("name", "lookback", "rows"),
    [
        ("more rows than the fit", 8, 40),
        ("exactly the fit", 8, 8),
        ("fewer rows than the fit: null", 8, 5),
        ("two-point fit", 2, 30),
    ],
)
def test_summary_forecast_is_the_series_forecast_at_the_last_row(
    name: str, lookback: int, rows: int
) -> None:
    """The summary's one-pass fit equals the rolling forecast's value at each group's end."""
    rng = np.random.default_rng(rows)
    df = pl.concat(
        [
            _usage(list(rng.integers(0, 9, rows)), limit=9, provider=p, step_s=step)
            for p, step in (("ibkr", 1.0), ("alpaca", 2.5))
        ]
    ).sample(fraction=1.0, seed=1)  # unsorted input
    summary = obm.quota_summary(df, lookback=lookback).sort("provider")
    series = (
        df.sort("provider", "ts")
        .with_columns(
            obm.usage_trend(lookback=lookback).over("provider"),
            obm.time_to_exhaustion(lookback=lookback).over("provider"),
        )
        .group_by("provider")
        .agg(pl.col("usage_trend", "time_to_exhaustion_s").last())
        .sort("provider")
    )
    for col in ("usage_trend", "time_to_exhaustion_s"):
        got, want = summary[col].to_list(), series[col].to_list()
        assert [g is None for g in got] == [w is None for w in want], name
        assert [g for g in got if g is not None] == pytest.approx(
            [w for w in want if w is not None], rel=1e-9, abs=1e-12
        ), name
