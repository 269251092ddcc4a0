from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from obsbench.errors import ColumnNotFound, ConfigError
from obsbench.slo import (
    SLI,
    SLO,
    SRE_WORKBOOK_WINDOWS,
    BurnRateWindow,
    burn_rate_alerts,
    burn_rate_over,
    burn_rate_series,
    error_budget,
    load_slos,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _slo(objective: float = 0.999, window: str = "30d", **sli) -> SLO:
    return SLO(
        name="api",
        service="a",
        objective=objective,
        window=window,
        sli=SLI(good=sli.get("good", "ok"), total=sli.get("total")),
    )


def _minutes(
    bad_by_minute: dict[int, int], *, minutes: int, per_minute: int = 100, service: str = "a"
) -> pl.DataFrame:
    """``per_minute`` requests in each minute; ``bad_by_minute[m]`` of them fail."""
    ts, ok = [], []
    for m in range(minutes):
        bad = bad_by_minute.get(m, 0)
        for i in range(per_minute):
            ts.append(T0 + timedelta(minutes=m, seconds=(i + 0.5) * 60 / per_minute))
            ok.append(i >= bad)
    return pl.DataFrame(
        {"ts": ts, "service": service, "endpoint": "POST /orders", "latency_ms": 5.0, "ok": ok}
    )


# --------------------------------------------------------------------------- SRE table

# The SRE Workbook, ch. 5 table 5-8 (30-day SLO): severity, long, short, burn rate, budget.
WORKBOOK = [
    ("critical", "1h", "5m", 14.4, 0.02),
    ("critical", "6h", "30m", 6.0, 0.05),
    ("warning", "1d", "2h", 3.0, 0.10),
    ("warning", "3d", "6h", 1.0, 0.10),
]


def test_burn_rate_alerts_match_sre_workbook_table() -> None:
    slo = _slo(objective=0.999)
    rules = burn_rate_alerts(slo)
    got = [(r.severity, r.long_window, r.short_window, r.factor) for r in rules]
    assert got == [row[:4] for row in WORKBOOK]
    for rule, (*_, factor, budget) in zip(rules, WORKBOOK, strict=True):
        assert rule.threshold == pytest.approx(factor * 0.001)
        # budget consumed over the long window at that burn rate = factor * W / 30d
        long_h = {"1h": 1, "6h": 6, "1d": 24, "3d": 72}[rule.long_window]
        assert factor * long_h / 720 == pytest.approx(budget)
        assert rule.labels["severity"] == rule.severity
        assert rule.labels["slo"] == "api"
        assert "{{ $value }}" in rule.annotations["description"]
    # short window = 1/12 of the long window, as the workbook recommends
    for w in SRE_WORKBOOK_WINDOWS:
        assert BurnRateWindow("critical", w.long_window, w.short_window, 0.1).factor("30d") > 0


@pytest.mark.parametrize(
    ("window", "factors"),
    [
        pytest.param("30d", [14.4, 6.0, 3.0, 1.0], id="30d_workbook"),
        pytest.param("28d", [13.44, 5.6, 2.8, 0.933333333], id="28d_scaled"),
        pytest.param("7d", [3.36, 1.4, 0.7, 0.233333333], id="7d_scaled"),
    ],
)
def test_factor_scales_with_slo_window(window: str, factors: list[float]) -> None:
    rules = burn_rate_alerts(_slo(window=window))
    assert [r.factor for r in rules] == pytest.approx(factors)


# --------------------------------------------------------------------------- budget, burn


def test_error_budget_hand_computed() -> None:
    # 60 minutes x 100 requests = 6000 events, 9 bad; objective 99.9% -> budget 6 events
    df = _minutes({10: 4, 20: 5}, minutes=60)
    b = error_budget(_slo(objective=0.999), df)
    assert (b.total, b.good, b.bad, b.consumed) == (6000, 5991, 9, 9)
    assert b.budget == pytest.approx(6.0)
    assert b.remaining == pytest.approx(-3.0)
    assert b.remaining_fraction == pytest.approx(-0.5)
    assert b.burn_rate == pytest.approx(1.5)
    assert b.attainment == pytest.approx(5991 / 6000)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # (t - 5m, t] holds minutes 55..59: 500 events, the 20 bad ones of minute 59
        pytest.param("5m", (20 / 500) / 0.001, id="5m"),
        pytest.param("1h", (20 + 6) / 6000 / 0.001, id="1h"),
    ],
)
def test_burn_rate_over_windows(window: str, expected: float) -> None:
    df = _minutes({0: 6, 59: 20}, minutes=60)
    at = T0 + timedelta(minutes=59, seconds=59.7)  # the last event
    assert burn_rate_over(_slo(), df, window=window, at=at) == pytest.approx(expected)


def test_burn_rate_series_counts_right_closed_windows() -> None:
    df = _minutes({0: 6, 59: 20}, minutes=60)
    s = burn_rate_series(_slo(), df, windows=["5m", "1h"], every="1m")
    last = s.row(-1, named=True)
    assert last["ts"] == T0 + timedelta(hours=1)
    assert last["burn_rate_5m"] == pytest.approx(40.0)
    assert last["burn_rate_1h"] == pytest.approx(26 / 6000 / 0.001)
    assert burn_rate_over(_slo(), df, window="1h", at=T0 + timedelta(hours=1)) == pytest.approx(
        last["burn_rate_1h"]
    )


def test_sli_filters_restrict_events() -> None:
    df = _minutes({}, minutes=2).with_columns(
        latency_ms=pl.when(pl.int_range(pl.len()) % 4 == 0).then(500.0).otherwise(5.0)
    )
    other = _minutes({0: 100}, minutes=2, service="b")  # another service: never counted
    slo = _slo(objective=0.9, good="ok AND latency_ms <= 250")
    b = error_budget(slo, pl.concat([df, other]))
    assert (b.total, b.bad) == (200, 50)
    health = _slo(objective=0.9, total="endpoint <> 'POST /orders'")
    assert error_budget(health, df).total == 0
    assert math.isnan(error_budget(health, df).burn_rate)


# --------------------------------------------------------------------------- rules


def test_page_rule_fires_on_fast_burn_and_resolves_with_short_window() -> None:
    # 2 h of traffic: a 20 % error burst in minutes 60..69, then clean again.
    df = _minutes(dict.fromkeys(range(60, 70), 20), minutes=120)
    fast = burn_rate_alerts(_slo(objective=0.999))[0]
    assert (fast.long_window, fast.short_window, fast.factor) == ("1h", "5m", 14.4)
    during = fast.evaluate(df, at=T0 + timedelta(minutes=70))
    assert during.firing
    assert during.short_burn_rate == pytest.approx(200.0)  # 100 bad / 500 / 0.001
    # 20 minutes after the burst the 1h window still burns, the 5m window does not
    after = fast.evaluate(df, at=T0 + timedelta(minutes=90))
    assert after.long_burn_rate > 14.4
    assert after.short_burn_rate == 0.0
    assert not after.firing
    bt = fast.backtest(df)
    firing = bt.filter(pl.col("firing"))["ts"]
    # the 1h window needs > 14.4 * 0.001 * 6000 = 86.4 bad events: 5 burst minutes
    assert firing.min() == T0 + timedelta(minutes=65)
    assert firing.max() == T0 + timedelta(minutes=74)  # 5m window empties after minute 74


def test_rules_are_plain_frozen_data() -> None:
    rule = burn_rate_alerts(_slo())[0]
    with pytest.raises(AttributeError):
        rule.factor = 1.0  # type: ignore[misc]
    assert hash(rule) == hash(burn_rate_alerts(_slo())[0])


# --------------------------------------------------------------------------- YAML


def test_example_slo_files_load() -> None:
    slos = load_slos(REPO / "slo")
    assert {s.name for s in slos} >= {"order-router-availability", "order-router-latency"}
    latency = next(s for s in slos if s.name == "order-router-latency")
    assert latency.objective == pytest.approx(0.995)
    assert latency.labels["team"] == "execution"
    assert len(burn_rate_alerts(latency)) == 4


def test_load_from_text_and_path(tmp_path: Path) -> None:
    text = "name: x\nservice: a\nobjective: 0.99\nsli: {good: ok}\n"
    (slo,) = load_slos(text)
    assert slo.window == "30d"
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert load_slos(path) == [slo]
    assert load_slos(str(path)) == [slo]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "name: x\nservice: a\nobjective: 1.5\nsli: {good: ok}",
            r"objective: Input should be less than 1",
            id="objective_above_one",
        ),
        pytest.param(
            "slos:\n- {name: x, service: a, objective: 0.9, sli: {good: ok}}\n"
            "- {name: y, service: a, objective: 0.9, window: 1 month, sli: {good: ok}}",
            r"slos\[1\]\.window: .*not a fixed duration",
            id="bad_window_second",
        ),
        pytest.param(
            "name: x\nservice: a\nobjective: 0.9\nsli: {good: 'okk'}",
            r"sli: .*good filter 'okk' is not valid",
            id="unknown_column",
        ),
        pytest.param(
            "name: x\nservice: a\nobjective: 0.9\nsli: {good: latency_ms}",
            r"not a boolean",
            id="non_boolean_filter",
        ),
        pytest.param(
            "name: x\nservice: a\nobjective: 0.9\nsli: {good: ok, dataset: nope}",
            r"sli\.dataset: .*unknown dataset",
            id="unknown_dataset",
        ),
        pytest.param(
            "name: x\nservice: a\nobjective: 0.9", r"sli: Field required", id="missing_sli"
        ),
        pytest.param(
            "name: x\nservice: a\nobjective: 0.9\nsli: {good: ok}\ncolour: red",
            r"colour: Extra inputs",
            id="unknown_field",
        ),
        pytest.param("name: [x\n", r"invalid YAML", id="yaml_syntax"),
        pytest.param(
            "- {name: x, service: a, objective: 0.9, sli: {good: ok}}\n"
            "- {name: x, service: b, objective: 0.9, sli: {good: ok}}",
            r"duplicate SLO name\(s\) \['x'\]",
            id="duplicate_names",
        ),
    ],
)
def test_invalid_yaml_names_file_and_field(text: str, match: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_slos(path)
    assert str(path) in str(info.value)
    assert "Hint:" in str(info.value)


def test_missing_file_and_missing_column() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_slos("nope/missing.yaml")
    with pytest.raises(ColumnNotFound, match="latency_ms"):
        error_budget(
            _slo(good="ok AND latency_ms < 5"),
            pl.DataFrame({"ts": [T0], "service": ["a"], "ok": [True]}),
        )
