from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.metrics import InvalidParameter
from obsbench.sim import Incident, SimConfig, simulate

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _robust_reference(
    x: np.ndarray, window: int, need: int, season: int | None, seasons: int, min_scale: float
) -> list[float | None]:
    """Loop implementation of the documented formula (None = null, NaN = missing point)."""
    n = len(x)
    present = [None if np.isnan(v) else float(v) for v in x]
    base: list[float | None] = [None] * n
    for t in range(n):
        if season is None:
            past = [v for v in present[:t] if v is not None][-window:]
            base[t] = float(np.median(past)) if len(past) >= need else None
        else:
            lags = [t - k * season for k in range(1, seasons + 1) if t - k * season >= 0]
            past = [present[i] for i in lags if present[i] is not None]
            base[t] = float(np.median(past)) if past else None
    resid = [None if b is None or v is None else v - b for v, b in zip(present, base, strict=True)]
    out: list[float | None] = [None] * n
    for t in range(n):
        past = [abs(r) for r in resid[:t] if r is not None][-window:]
        if resid[t] is None or len(past) < need:
            continue
        mad = max(float(np.median(past)), min_scale)
        out[t] = 0.6745 * resid[t] / mad if mad > 0 else None
    return out


@pytest.mark.parametrize(
    ("window", "season", "seasons", "min_scale"),
    [
        pytest.param(10, None, 1, 0.0, id="trailing_median"),
        pytest.param(7, None, 1, 0.5, id="trailing_with_floor"),
        pytest.param(12, 24, 3, 0.0, id="seasonal_3_days"),
        pytest.param(5, 24, 1, 0.1, id="seasonal_1_day_floor"),
    ],
)
def test_robust_score_matches_loop_reference(window, season, seasons, min_scale) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(10, 2, 120) + np.tile(np.linspace(0, 5, 24), 5)
    x[[7, 8, 9, 40, 77]] = np.nan  # gated (missing) points are skipped, not counted
    got = obm.robust_score(
        pl.Series(x),
        window=window,
        season=season,
        seasons=seasons,
        min_scale=min_scale,
        min_samples=3,
    ).to_list()
    ref = _robust_reference(x, window, 3, season, seasons, min_scale)
    assert [g is None for g in got] == [r is None for r in ref]
    np.testing.assert_allclose(
        [g for g in got if g is not None], [r for r in ref if r is not None], rtol=1e-12
    )


@pytest.mark.parametrize("span", [pytest.param(5.0, id="span5"), pytest.param(30.0, id="span30")])
def test_ewma_score_matches_pandas(span: float) -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(0, 1, 200)
    s = pd.Series(x)
    mean = s.ewm(span=span, adjust=False).mean().shift(1)
    std = s.ewm(span=span, adjust=False).std().shift(1)
    expected = ((s - mean) / std).to_numpy()
    got = obm.ewma_score(pl.Series(x), span=span, min_samples=10).to_numpy()
    np.testing.assert_allclose(got[10:], expected[10:], rtol=1e-9)
    assert np.isnan(got[:10]).all()  # warm-up


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        pytest.param("up", [False, False, True, False, False], id="up"),
        pytest.param("down", [False, False, False, True, False], id="down"),
        pytest.param("both", [False, False, True, True, False], id="both"),
    ],
)
def test_anomaly_flag_directions(direction: str, expected: list[bool]) -> None:
    scores = pl.Series([None, 1.0, 4.0, -4.0, float("nan")])
    assert obm.anomaly_flag(scores, threshold=3.5, direction=direction).to_list() == expected


def _daily_series(days: int, spikes: dict[int, float], service: str = "a") -> pl.DataFrame:
    """Hourly values with a strong time-of-day profile (busy 13-20h) plus spikes."""
    rng = np.random.default_rng(1)
    n = days * 24
    hour = np.arange(n) % 24
    value = np.where((hour >= 13) & (hour < 20), 50.0, 5.0) + rng.normal(0, 0.5, n)
    for i, bump in spikes.items():
        value[i] += bump
    return pl.DataFrame(
        {"service": service, "ts": [T0 + timedelta(hours=i) for i in range(n)], "value": value}
    )


def test_seasonal_baseline_ignores_daily_profile_and_catches_spike() -> None:
    spike = 5 * 24 + 3  # 03:00 on day 5: busy-hours level at night
    df = _daily_series(7, {spike: 45.0})
    seasonal = obm.detect_anomalies(df, value="value", every="1h", window=12)
    flagged = seasonal.filter("flag")["ts"].to_list()
    assert flagged == [T0 + timedelta(hours=spike)]
    # without the seasonal baseline every session open looks like an incident
    plain = obm.detect_anomalies(df, value="value", every="1h", window=12, seasonal=False)
    assert plain["flag"].sum() > 3


def test_detection_is_per_group_and_fills_missing_buckets() -> None:
    a = _daily_series(4, {3 * 24 + 2: 40.0}, "a")
    b = _daily_series(4, {}, "b").filter(pl.int_range(pl.len()) != 30)  # one bucket missing
    out = obm.detect_anomalies(pl.concat([b, a]), value="value", every="1h", window=12)
    assert out.group_by("service").len().sort("service")["len"].to_list() == [96, 96]
    assert out.filter("flag")["service"].to_list() == ["a"]
    gap = out.filter((pl.col("service") == "b") & (pl.col("ts") == T0 + timedelta(hours=30)))
    assert gap["value"].is_null().all()
    assert not gap["flag"].item()
    alone = obm.detect_anomalies(a, value="value", every="1h", window=12)
    assert alone["score"].equals(out.filter(pl.col("service") == "a")["score"])


def test_score_detections_hand_computed() -> None:
    # incident on "a" [00:10, 00:30); flags at 00:05 (FP), 00:10, 00:15 (TP run), 01:00 (FP);
    # incident on "b" never flagged; "c" has no flags and is not scored.
    flags = pl.DataFrame(
        {
            "service": ["a"] * 5 + ["b"],
            "ts": [T0 + timedelta(minutes=m) for m in (0, 5, 10, 15, 60)] + [T0],
            "flag": [False, True, True, True, True, False],
        }
    )
    incidents = pl.DataFrame(
        {
            "incident_id": ["i1", "i2", "i3"],
            "kind": ["error_burst"] * 3,
            "target": ["a", "b", "c"],
            "start": [T0 + timedelta(minutes=10), T0, T0],
            "end": [T0 + timedelta(minutes=30), T0 + timedelta(minutes=5), T0 + timedelta(hours=1)],
        }
    )
    s = obm.score_detections(flags, incidents, every="5m")
    assert (s.flagged, s.true_flags, s.alarms, s.true_alarms) == (4, 2, 2, 1)
    assert (s.incidents, s.detected) == (2, 1)
    assert (s.precision, s.event_precision, s.recall) == (0.5, 0.5, 0.5)
    assert s.per_incident.filter(pl.col("incident_id") == "i1")["first_flag"].item() == (
        T0 + timedelta(minutes=10)
    )
    late = obm.score_detections(flags, incidents, every="5m", tolerance="35m")
    assert late.precision == 0.75  # the 01:00 flag is within end + 35 min


# --------------------------------------------------------------------------- simulator

_BASE = SimConfig.small(days=4, seed=11)


def _at(day: int, hour: int, minute: int) -> datetime:
    return datetime.combine(
        _BASE.start + timedelta(days=day), datetime.min.time(), tzinfo=UTC
    ).replace(hour=hour, minute=minute)


INCIDENTS = (
    Incident("error_burst", "order-router", _at(2, 14, 20), _at(2, 14, 40), 300.0),
    Incident("error_burst", "market-data", _at(3, 14, 5), _at(3, 14, 25), 200.0),
    # risk-check's own time x8 is only ~1.7x its end-to-end latency (callees dominate)
    Incident("latency_spike", "risk-check", _at(3, 14, 30), _at(3, 14, 50), 8.0),
    Incident("latency_spike", "broker-gateway", _at(2, 14, 45), _at(2, 14, 58), 8.0),
)
WARMUP_END = _at(1, 0, 0)  # the seasonal baseline needs one past day


@pytest.fixture(scope="module")
def seeded() -> dict[str, pl.DataFrame]:
    return simulate(_BASE.with_incidents(*INCIDENTS))


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    return simulate(_BASE)


def test_error_rate_detector_flags_every_error_burst_recall_1_precision_1(seeded) -> None:
    flags = obm.error_rate_anomalies(seeded["requests"])
    s = obm.score_detections(
        flags, seeded["incidents"], kinds=["error_burst"], every="5m", start=WARMUP_END
    )
    assert s.incidents == 2
    assert s.recall == 1.0
    assert s.precision == 1.0  # measured: 8 flagged buckets, all inside the bursts
    assert s.per_incident["detected"].all()


def test_latency_detector_flags_every_latency_spike_recall_1_precision_0_875(seeded) -> None:
    flags = obm.latency_anomalies(seeded["requests"])
    s = obm.score_detections(
        flags, seeded["incidents"], kinds=["latency_spike"], every="5m", start=WARMUP_END
    )
    assert s.incidents == 2
    assert s.recall == 1.0
    # measured: 8 flagged (endpoint, bucket) points, 7 on the spiking services; the 8th is
    # `signal`, the caller of the spiking risk-check, whose end-to-end latency includes it
    assert (s.flagged, s.true_flags) == (8, 7)
    assert s.precision == 0.875


def test_ewma_detector_also_catches_the_error_bursts(seeded) -> None:
    # a 1-hour session gives 12 scored buckets a day: a shorter warm-up than the default 30
    flags = obm.error_rate_anomalies(seeded["requests"], method="ewma", min_samples=10)
    s = obm.score_detections(
        flags, seeded["incidents"], kinds=["error_burst"], every="5m", start=WARMUP_END
    )
    assert s.recall == 1.0


def test_detectors_stay_quiet_on_a_clean_history(clean) -> None:
    assert clean["incidents"].is_empty()
    for flags in (
        obm.error_rate_anomalies(clean["requests"]),
        obm.latency_anomalies(clean["requests"]),
    ):
        assert flags.filter(pl.col("flag") & (pl.col("ts") >= WARMUP_END)).is_empty()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: obm.robust_score("x", window=0), "window", id="window_zero"),
        pytest.param(lambda: obm.robust_score("x", min_scale=-1), "min_scale", id="neg_scale"),
        pytest.param(lambda: obm.ewma_score("x", span=0.5), "span", id="span_below_one"),
        pytest.param(
            lambda: obm.anomaly_flag("s", direction="sideways"), "direction", id="bad_direction"
        ),
        pytest.param(lambda: obm.anomaly_flag("s", threshold=0), "threshold", id="threshold_0"),
        pytest.param(
            lambda: obm.detect_anomalies(_daily_series(1, {}), value="value", method="magic"),
            "method",
            id="bad_method",
        ),
        pytest.param(
            lambda: obm.detect_anomalies(_daily_series(1, {}), value="value", every="7m"),
            "divide a day",
            id="no_season",
        ),
    ],
)
def test_bad_parameters_raise_with_hint(call, match: str) -> None:
    with pytest.raises(InvalidParameter, match=match) as info:
        call()
    assert "Hint:" in str(info.value)


def test_empty_scores_give_nan_ratios() -> None:
    flags = pl.DataFrame({"service": ["a"], "ts": [T0], "flag": [False]})
    incidents = pl.DataFrame(
        schema={
            "incident_id": pl.String,
            "kind": pl.String,
            "target": pl.String,
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
        }
    )
    s = obm.score_detections(flags, incidents)
    assert math.isnan(s.precision)
    assert math.isnan(s.recall)
