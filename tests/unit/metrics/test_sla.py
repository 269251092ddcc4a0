from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.errors import ColumnNotFound, SchemaError
from obsbench.metrics import InvalidParameter
from obsbench.metrics.sla import duration_seconds, quantile_name

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _requests(rows: list[tuple[str, int, float, bool]], trace: list[str | None] | None = None):
    """(service, second offset, latency_ms, ok) rows as a canonical requests frame."""
    df = pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=s) for _, s, _, _ in rows],
            "service": [r[0] for r in rows],
            "endpoint": "GET /x",
            "latency_ms": [r[2] for r in rows],
            "status_code": [200 if r[3] else 503 for r in rows],
            "ok": [r[3] for r in rows],
            "trace_id": trace if trace is not None else [None] * len(rows),
        },
        schema_overrides={
            "ts": pl.Datetime("us", "UTC"),
            "status_code": pl.Int32,
            "trace_id": pl.String,
        },
    )
    return df


# --------------------------------------------------------------------------- percentiles

LATENCIES = {
    "five": [1.0, 2.0, 3.0, 4.0, 10.0],
    "single": [42.0],
    "two": [10.0, 20.0],
    "ties": [5.0, 5.0, 5.0, 7.0],
    "skewed": [0.5, 1.0, 1.5, 2.0, 250.0, 3000.0, 3.0],
}


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("name", list(LATENCIES))
def test_percentile_matches_numpy_linear(name: str, q: float) -> None:
    xs = LATENCIES[name]
    got = obm.latency_percentile(pl.Series(xs), q=q)
    assert got == pytest.approx(float(np.quantile(xs, q)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("xs", "q", "expected"),
    [
        # h = (n-1) q = 3.6 -> x(3) + 0.6 (x(4) - x(3)) = 4 + 0.6 * 6
        pytest.param([1.0, 2.0, 3.0, 4.0, 10.0], 0.9, 7.6, id="hand_p90_interpolated"),
        pytest.param([10.0, 20.0], 0.5, 15.0, id="hand_median_of_two"),
        pytest.param([3.0, 1.0, 2.0], 0.5, 2.0, id="unsorted_input"),
        pytest.param([1.0, None, 3.0, float("nan")], 0.5, 2.0, id="missing_skipped"),
    ],
)
def test_percentile_hand_computed(xs: list, q: float, expected: float) -> None:
    assert obm.latency_percentile(pl.Series(xs, dtype=pl.Float64), q=q) == pytest.approx(expected)


@pytest.mark.parametrize(
    "xs",
    [pytest.param([], id="empty"), pytest.param([None, None], id="all_missing")],
)
def test_percentile_undefined_is_nan(xs: list) -> None:
    assert math.isnan(obm.latency_percentile(pl.Series(xs, dtype=pl.Float64), q=0.5))


def test_latency_percentiles_per_service_minute_equal_group_by_dynamic_and_numpy() -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    df = pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 600, n))],
            "service": rng.choice(["a", "b"], n),
            "latency_ms": rng.lognormal(3, 1, n),
        }
    )
    got = obm.latency_percentiles(df, every="1m", qs=(0.5, 0.95, 0.99))
    dyn = (
        df.sort("ts")
        .group_by_dynamic("ts", every="1m", group_by="service", closed="left", label="left")
        .agg(
            *(
                pl.col("latency_ms").quantile(q, interpolation="linear").alias(quantile_name(q))
                for q in (0.5, 0.95, 0.99)
            )
        )
        .sort("service", "ts")
    )
    assert got.select("service", "ts", "p50", "p95", "p99").equals(dyn)
    first = df.filter((pl.col("service") == "a") & (pl.col("ts") < T0 + timedelta(minutes=1)))
    row = got.row(0, named=True)
    assert row["requests"] == first.height
    assert row["p99"] == pytest.approx(np.quantile(first["latency_ms"].to_numpy(), 0.99))
    assert isinstance(obm.latency_percentiles(df.lazy()), pl.LazyFrame)


@pytest.mark.parametrize(
    ("q", "name"),
    [(0.5, "p50"), (0.95, "p95"), (0.999, "p99_9"), (0.0, "p0"), (1.0, "p100"), (0.995, "p99_5")],
)
def test_quantile_names(q: float, name: str) -> None:
    assert quantile_name(q) == name


# --------------------------------------------------------------------------- error rate, SLA


@pytest.mark.parametrize(
    ("ok", "latency", "threshold", "error_rate", "attainment"),
    [
        pytest.param([True, True, True, True], [1.0, 2, 3, 4], 10.0, 0.0, 1.0, id="all_ok_fast"),
        pytest.param([True, False, True, True], [1.0, 2, 3, 4], 10.0, 0.25, 0.75, id="one_error"),
        # slow-but-ok (300 > 250) and fast-but-failed both miss; threshold inclusive (250)
        pytest.param(
            [True, True, False, True],
            [100.0, 300, 50, 250],
            250.0,
            0.25,
            0.5,
            id="hand_mixed_inclusive_threshold",
        ),
        pytest.param([False, False], [1.0, 1.0], 10.0, 1.0, 0.0, id="all_failed"),
        pytest.param([True], [5.0], 5.0, 0.0, 1.0, id="single_row_on_threshold"),
        pytest.param([True, True], [None, 1.0], 10.0, 0.0, 0.5, id="missing_latency_misses"),
    ],
)
def test_error_rate_and_attainment(ok, latency, threshold, error_rate, attainment) -> None:
    s_ok, s_lat = pl.Series(ok), pl.Series(latency, dtype=pl.Float64)
    assert obm.error_rate(s_ok) == pytest.approx(error_rate)
    assert obm.sla_attainment(s_ok, s_lat, threshold_ms=threshold) == pytest.approx(attainment)


def test_empty_ratios_are_nan() -> None:
    empty_b, empty_f = pl.Series([], dtype=pl.Boolean), pl.Series([], dtype=pl.Float64)
    assert math.isnan(obm.error_rate(empty_b))
    assert math.isnan(obm.sla_attainment(empty_b, empty_f, threshold_ms=1.0))


def test_attainment_with_infinite_threshold_is_one_minus_error_rate() -> None:
    ok = pl.Series([True, False, True, True, False])
    lat = pl.Series([1.0, 2e6, 3.0, 1e9, 5.0])
    assert obm.sla_attainment(ok, lat, threshold_ms=math.inf) == pytest.approx(
        1 - obm.error_rate(ok)
    )


# --------------------------------------------------------------------------- availability


def test_availability_and_uptime_hand_computed() -> None:
    # minute 0: 2/2 ok (good); minute 1: 1/2 ok (bad); minute 3: 1/1 ok; minutes 2, 4 empty.
    df = _requests(
        [
            ("a", 0, 1, True),
            ("a", 30, 1, True),
            ("a", 60, 1, True),
            ("a", 90, 1, False),
            ("a", 180, 1, True),
        ]
    )
    got = df.select(
        obm.availability("ok", "ts", min_success=0.99),
        obm.uptime("ok", "ts", min_success=0.99),
        obm.uptime("ok", "ts", min_success=0.99, start=T0, end=T0 + timedelta(minutes=10)).alias(
            "uptime_10m"
        ),
        obm.availability("ok", "ts", min_success=0.5).alias("availability_50"),
    ).row(0, named=True)
    assert got["availability"] == pytest.approx(2 / 3)  # 2 good of 3 minutes with traffic
    assert got["uptime"] == pytest.approx(1 - 1 / 4)  # 1 down of minutes 0..3
    assert got["uptime_10m"] == pytest.approx(1 - 1 / 10)
    assert got["availability_50"] == 1.0  # 50 % success is good enough at min_success=0.5


def test_availability_per_service_in_group_by() -> None:
    df = _requests([("a", 0, 1, False), ("a", 60, 1, True), ("b", 0, 1, True)])
    out = df.group_by("service").agg(obm.availability()).sort("service")
    assert out["availability"].to_list() == [0.5, 1.0]


# --------------------------------------------------------------------------- burn rate


@pytest.mark.parametrize(
    ("good", "bad", "objective", "burn", "remaining"),
    [
        pytest.param(999, 1, 0.999, 1.0, 0.0, id="exactly_on_budget"),
        pytest.param(9_856, 144, 0.999, 14.4, -13.4, id="page_fast_burn_14_4"),
        pytest.param(100, 0, 0.99, 0.0, 1.0, id="no_errors"),
        pytest.param(95, 5, 0.9, 0.5, 0.5, id="half_budget"),
    ],
)
def test_burn_rate_and_budget_hand_computed(good, bad, objective, burn, remaining) -> None:
    s = pl.Series([True] * good + [False] * bad)
    assert obm.burn_rate(s, objective=objective) == pytest.approx(burn)
    assert obm.error_budget_remaining(s, objective=objective) == pytest.approx(remaining)


# --------------------------------------------------------------------------- frames


def test_service_buckets_and_summary_are_compositions() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    df = pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 1800, n)],
            "service": rng.choice(["a", "b", "c"], n),
            "latency_ms": rng.lognormal(4, 1, n),
            "ok": rng.random(n) > 0.05,
        }
    )
    buckets = obm.service_buckets(df, every="5m", threshold_ms=100.0)
    summary = obm.service_summary(df, threshold_ms=100.0)
    for svc in ("a", "b", "c"):
        sub = df.filter(pl.col("service") == svc)
        row = summary.filter(pl.col("service") == svc).row(0, named=True)
        assert row["requests"] == sub.height
        assert row["error_rate"] == pytest.approx(obm.error_rate(sub["ok"]))
        assert row["p95"] == pytest.approx(np.quantile(sub["latency_ms"].to_numpy(), 0.95))
        assert row["sla_attainment"] == pytest.approx(
            obm.sla_attainment(sub["ok"], sub["latency_ms"], threshold_ms=100.0)
        )
        assert row["availability"] == pytest.approx(obm.availability(sub["ok"], sub["ts"]))
        # every output row depends only on its group's rows (DESIGN §9)
        alone = obm.service_summary(sub, threshold_ms=100.0)
        assert alone.row(0, named=True) == row
    assert buckets["requests"].sum() == n
    assert buckets["errors"].sum() == df.filter(~pl.col("ok")).height


def test_error_propagation_attributes_to_first_completed_failure() -> None:
    # trace t1: broker fails first (completes at 10 ms), router and gateway fail after it.
    # trace t2: router fails on its own; the broker call succeeded.
    rows = [
        ("gateway", 0, 30.0, False),
        ("router", 0, 20.0, False),
        ("broker", 0, 10.0, False),
        ("gateway", 5, 30.0, False),
        ("router", 5, 25.0, False),
        ("broker", 5, 10.0, True),
        ("portal", 9, 5.0, False),
    ]
    df = _requests(rows, trace=["t1", "t1", "t1", "t2", "t2", "t2", None])
    origins = obm.error_origins(df)
    assert origins["origin_service"].to_list() == [
        "broker",
        "broker",
        "broker",
        "router",
        "router",
        "portal",
    ]
    assert origins["propagated"].to_list() == [True, True, False, True, False, False]
    prop = obm.error_propagation(df)
    gateway = prop.filter(pl.col("service") == "gateway")
    assert dict(zip(gateway["origin_service"], gateway["errors"], strict=True)) == {
        "broker": 1,
        "router": 1,
    }


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda: obm.latency_percentile("x", q=1.5),
            InvalidParameter,
            "quantile must lie in",
            id="q_above_one",
        ),
        pytest.param(
            lambda: obm.latency_percentile("x", q=-0.1),
            InvalidParameter,
            "quantile",
            id="q_negative",
        ),
        pytest.param(
            lambda: obm.burn_rate("good", objective=1.0),
            InvalidParameter,
            "strictly between 0 and 1",
            id="objective_one",
        ),
        pytest.param(
            lambda: obm.burn_rate("good", objective=0),
            InvalidParameter,
            "objective",
            id="objective_zero",
        ),
        pytest.param(
            lambda: obm.sla_attainment(threshold_ms=-1),
            InvalidParameter,
            "threshold_ms",
            id="negative_threshold",
        ),
        pytest.param(
            lambda: obm.availability(every="1x"), InvalidParameter, "every", id="bad_duration"
        ),
        pytest.param(
            lambda: obm.latency_percentiles(pl.DataFrame({"ts": [T0]})),
            ColumnNotFound,
            r"lacks column\(s\) \['service', 'latency_ms'\]",
            id="missing_columns",
        ),
        pytest.param(
            lambda: obm.service_summary(
                pl.DataFrame({"service": ["a"], "ts": ["2024"], "ok": [True], "latency_ms": [1.0]})
            ),
            SchemaError,
            "expected a Datetime",
            id="ts_not_temporal",
        ),
    ],
)
def test_errors_have_hints(call, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert "Hint:" in str(info.value)


def test_duration_seconds() -> None:
    assert duration_seconds("1h30m") == 5400.0
    with pytest.raises(InvalidParameter, match="fixed length"):
        duration_seconds("1mo")


def test_collect_by_time_equals_one_query_on_a_parquet_scan(tmp_path) -> None:
    rng = np.random.default_rng(11)
    n = 5_000
    df = pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 3 * 86_400, n))],
            "service": rng.choice(["a", "b"], n),
            "latency_ms": rng.lognormal(3, 1, n),
            "ok": rng.random(n) > 0.1,
        }
    )
    df.write_parquet(tmp_path / "r.parquet", row_group_size=500)
    scan = pl.scan_parquet(tmp_path / "r.parquet")

    def query(lf: pl.LazyFrame) -> pl.LazyFrame:
        return obm.service_buckets(lf, every="5m")

    sliced = obm.collect_by_time(scan, query, slice="1d")
    # slice-major order: the same rows as one query, which sorts by service then ts
    assert sliced.sort("service", "ts").equals(query(scan).collect())
    assert obm.collect_by_time(scan.head(0), query).is_empty()
