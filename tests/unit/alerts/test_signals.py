"""Named signals are obsbench.metrics functions over the window; history == instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from obsbench.alerts import parse_rules
from obsbench.alerts.rules import MetricSignal
from obsbench.alerts.signals import (
    SIGNALS,
    evaluate_metric,
    get,
    metric_history,
    series_key,
    with_series_key,
)
from obsbench.errors import UnknownName
from obsbench.metrics import execution, quotas, returns, sla

from .conftest import minute, requests_frame

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> dict[str, pl.DataFrame]:
    from obsbench.sim import SimConfig, simulate

    res = simulate(SimConfig.small(days=1))
    fills = res["fills"].join(
        res["orders"].select("order_id", "strategy", "arrival_px"), on="order_id"
    )
    return {"requests": res["requests"], "fills": fills, "api_usage": res["api_usage"]}


def sig(**kw: object) -> MetricSignal:
    return MetricSignal.model_validate(kw)


def window(frame: pl.DataFrame, at: datetime, w: timedelta) -> pl.DataFrame:
    return frame.filter((pl.col("ts") > at - w) & (pl.col("ts") <= at))


CASES = [
    pytest.param("error_rate", "requests", "service", lambda: sla.error_rate(), id="error_rate"),
    pytest.param(
        "p99_latency", "requests", "service", lambda: sla.latency_percentile(q=0.99), id="p99"
    ),
    pytest.param(
        "slippage",
        "fills",
        "strategy",
        lambda: execution.weighted_mean(execution.slippage_bps(), "qty"),
        id="slippage",
    ),
    pytest.param(
        "quota_utilisation", "api_usage", "provider", lambda: quotas.peak_utilisation(), id="quota"
    ),
]


@pytest.mark.parametrize(("metric", "dataset", "by", "expr"), CASES)
def test_named_signal_is_the_metric_function(
    sim: dict, metric: str, dataset: str, by: str, expr
) -> None:
    frame = sim[dataset]
    s = sig(metric=metric, by=[by], window="10m")
    at = frame["ts"].sort()[frame.height // 2]
    got = evaluate_metric(s, at, frame=frame).sort(by)
    want = (
        window(frame, at, timedelta(minutes=10))
        .group_by(by)
        .agg(expr().alias("value"))
        .sort(by)
        .filter(pl.col("value").is_not_null())
    )
    assert got[by].to_list() == want[by].to_list()
    assert got["value"].to_list() == pytest.approx(want["value"].to_list(), rel=1e-12)


@pytest.mark.parametrize(("metric", "dataset", "by", "expr"), CASES)
def test_history_equals_instant_at_every_step(
    sim: dict, metric: str, dataset: str, by: str, expr
) -> None:
    frame = sim[dataset]
    s = sig(metric=metric, by=[by], window="5m")
    start = frame["ts"].min()
    start = start.replace(hour=14, minute=10, second=0, microsecond=0)  # in the session
    hist = metric_history(
        s, start, start + timedelta(minutes=20), timedelta(minutes=1), frame=frame
    )
    assert hist.height > 0
    for at in hist["ts"].unique().sort().to_list()[::4]:
        one = evaluate_metric(s, at, frame=frame).sort(by)
        h = hist.filter(pl.col("ts") == at).sort(by)
        assert one[by].to_list() == h[by].to_list()
        assert one["value"].to_list() == pytest.approx(h["value"].to_list(), rel=1e-9)


def test_drawdown_signal_uses_metrics_drawdown() -> None:
    ts = [T0 + timedelta(days=i) for i in range(5)]
    frame = pl.DataFrame(
        {"strategy": "a", "ts": ts, "ret": [0.1, -0.2, 0.05, -0.1, 0.02]}
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    s = sig(metric="drawdown", by=["strategy"], window="30d")
    got = evaluate_metric(s, ts[-1], frame=frame)["value"].item()
    assert got == pytest.approx(returns.drawdown(frame["ret"])[-1])


def test_where_and_and_window() -> None:
    frame = requests_frame({"a": [0, 0.5, 0.5, 0.1], "b": [0, 0.9, 0.9, 0.9]})
    s = sig(metric="error_rate", by=["service"], window="1m", where={"service": "a"})
    assert evaluate_metric(s, minute(2), frame=frame).select("service", "value").rows() == [
        ("a", 0.5)
    ]
    both = sig(metric="error_rate", by=["service"], window="3m", params={"and_window": "1m"})
    # 3m window at minute 3: a = (5+5+1)/30, 1m window: 0.1 -> the smaller is 0.1
    got = dict(evaluate_metric(both, minute(3), frame=frame).select("service", "value").rows())
    assert got == pytest.approx({"a": 0.1, "b": 0.9})


def test_no_rows_in_window_is_no_data() -> None:
    frame = requests_frame({"a": [0, 0.5]})
    s = sig(metric="error_rate", by=["service"], window="1m")
    assert evaluate_metric(s, minute(30), frame=frame).height == 0


def test_registry() -> None:
    assert {"error_rate", "p99_latency", "slippage", "drawdown", "quota_utilisation"} <= set(
        SIGNALS
    )
    assert get("burn_rate").dataset == "requests"
    with pytest.raises(UnknownName, match="unknown signal 'nope'"):
        get("nope")


def test_series_key_matches_vectorised_key() -> None:
    frame = pl.DataFrame({"b": ['x"y', "é", None], "a": ["1", None, None], "value": [1.0] * 3})
    keys = with_series_key(frame)["series"].to_list()
    assert keys == [
        series_key({"a": "1", "b": 'x"y'}),
        series_key({"b": "é"}),
        series_key({}),
    ]


def test_burn_rate_rule_signal_matches_slo_module() -> None:
    from pathlib import Path

    from obsbench import slo as slo_mod
    from obsbench.alerts.rules import rules_from_slo

    root = Path(__file__).resolve().parents[3]
    rule = rules_from_slo(root / "slo" / "order_router.yaml")[0]
    (s,) = [
        x
        for x in slo_mod.load_slos(root / "slo" / "order_router.yaml")
        if x.name == rule.labels["slo"]
    ]
    rates = [0.0] + [0.05] * 70
    frame = requests_frame({"order-router": rates})
    at = minute(70)
    got = evaluate_metric(rule.signal, at, frame=frame)["value"].item()
    br = slo_mod.burn_rate_alerts(s)[0].evaluate(frame, at=at)
    assert got == pytest.approx(min(br.long_burn_rate, br.short_burn_rate))
    assert (got > rule.thresholds.critical) == br.firing


def test_rule_signal_from_yaml_runs() -> None:
    rule = parse_rules(
        "rules:\n  - name: E\n    signal: {metric: error_rate, by: [service], window: 1m}\n"
        "    thresholds: {warning: 0.2}\n"
    )[0]
    frame = requests_frame({"a": [0, 0.3]})
    assert evaluate_metric(rule.signal, minute(1), frame=frame)["value"].item() == 0.3
