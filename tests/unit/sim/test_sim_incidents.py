from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from obsbench.sim import INCIDENT_KINDS, Incident, SimConfig, simulate


def _inside(col: str, window: tuple) -> pl.Expr:
    return pl.col(col).is_between(*window, closed="left")


def test_ground_truth_records_every_explicit_incident(with_incidents, incident_config):
    truth = with_incidents["incidents"].sort("incident_id")
    assert truth["kind"].to_list() == [i.kind for i in incident_config.incidents]
    assert truth["incident_id"].to_list() == [f"INC-X{i:03d}" for i in range(1, 6)]
    assert truth["magnitude"].to_list() == [
        i.effective_magnitude for i in incident_config.incidents
    ]
    assert set(truth["kind"]) == set(INCIDENT_KINDS)


def _latency(r, window):
    req = r["requests"].filter(pl.col("service") == "risk-check")
    return (
        req.filter(_inside("ts", window))["latency_ms"].mean(),
        req.filter(~_inside("ts", window))["latency_ms"].mean(),
    )


def _errors(r, window):
    req = r["requests"].filter(pl.col("service") == "signal")
    rate = (pl.col("status_code") >= 500).mean()
    logs = r["logs"].filter((pl.col("service") == "signal") & (pl.col("level") == "ERROR"))
    assert logs.filter(_inside("ts", window)).height > logs.filter(~_inside("ts", window)).height
    return (
        req.filter(_inside("ts", window)).select(rate).item(),
        req.filter(~_inside("ts", window)).select(rate).item(),
    )


def _throttling(r, window):
    req = r["requests"].filter(pl.col("endpoint").str.contains("/brokers/ibkr/"))
    rate = (pl.col("status_code") == 429).mean()
    usage = r["api_usage"].filter(pl.col("provider") == "ibkr")
    over = (
        usage.filter(_inside("ts", window)).select((pl.col("used") > pl.col("limit")).mean()).item()
    )
    assert over > 0.1
    return (
        req.filter(_inside("ts", window)).select(rate).item(),
        req.filter(~_inside("ts", window)).select(rate).item(),
    )


def _drawdown(r, window):
    ret = r["returns_intraday"].filter(pl.col("strategy") == "meanrev-02")
    bars = pl.col("ts").is_between(*window, closed="right")  # bars ending in the window
    assert ret.filter(bars)["ret"].sum() < -0.01  # more than 1 % of capital lost
    # returns down: compare the loss with the same length of normal trading before it
    before = pl.col("ts") <= window[0]
    return (-ret.filter(bars)["ret"].sum(), abs(ret.filter(before)["ret"].sum()))


def _costs(r, window):
    costs = r["costs"].filter(pl.col("Tags").struct.field("service") == "reporting")
    return (
        costs.filter(_inside("ChargePeriodStart", window))["BilledCost"].mean(),
        costs.filter(~_inside("ChargePeriodStart", window))["BilledCost"].mean(),
    )


VISIBLE = {
    "latency_spike": (_latency, 3.0),
    "error_burst": (_errors, 10.0),
    "broker_throttling": (_throttling, 10.0),
    "strategy_drawdown": (_drawdown, 2.0),
    "cost_spike": (_costs, 3.0),
}


@pytest.mark.parametrize(("measure", "ratio"), VISIBLE.values(), ids=VISIBLE.keys())
def test_incident_is_visible_inside_its_window(with_incidents, incident_window, measure, ratio):
    inside, outside = measure(with_incidents, incident_window)
    assert inside > ratio * max(outside, 1e-4)


def test_broker_throttling_rejects_orders_with_429(with_incidents, incident_window):
    rejected = with_incidents["audit"].filter(pl.col("action") == "order.reject")
    codes = rejected["details"].str.json_path_match("$.status_code").cast(pl.Int32)
    assert (codes == 429).sum() > 0
    orders = with_incidents["orders"].filter(pl.col("broker") == "ibkr")
    rate = (pl.col("status") == "rejected").mean()
    inside = orders.filter(_inside("ts", incident_window)).select(rate).item()
    outside = orders.filter(~_inside("ts", incident_window)).select(rate).item()
    assert inside > 0.1
    assert inside > 10 * outside


def test_no_incident_no_effect(small):
    assert small["incidents"].height == 0
    assert small["requests"].filter(pl.col("status_code") == 429).height == 0


def test_random_incidents_change_the_data_of_their_day():
    cfg = SimConfig.small(days=6, incident_rate=1.5, session_open=SimConfig().session_open)
    r = simulate(cfg)
    truth = r["incidents"]
    assert truth.height > 0
    assert truth["incident_id"].str.starts_with("INC-2024").all()
    assert (truth["end"] > truth["start"]).all()
    assert (truth["start"].dt.date() == truth["end"].dt.date()).all()  # within a day
    for inc in truth.filter(pl.col("kind") == "latency_spike").iter_rows(named=True):
        health = r["requests"].filter(
            (pl.col("service") == inc["target"]) & (pl.col("endpoint") == "GET /healthz")
        )
        inside = health.filter(pl.col("ts").is_between(inc["start"], inc["end"], closed="left"))
        assert inside["latency_ms"].median() > 2 * health["latency_ms"].median()


def test_explicit_incident_spanning_midnight_affects_both_days_recorded_once():
    cfg = SimConfig.small(days=2)
    inc = Incident(
        "latency_spike",
        "portal",
        cfg.day_start(1) - timedelta(hours=2),
        cfg.day_start(1) + timedelta(hours=2),
        magnitude=20.0,
    )
    r = simulate(cfg.with_incidents(inc))
    assert r["incidents"].height == 1
    health = r["requests"].filter(
        (pl.col("service") == "portal") & (pl.col("endpoint") == "GET /healthz")
    )
    inside = health.filter(pl.col("ts").is_between(inc.start, inc.end, closed="left"))
    assert inside["ts"].dt.date().n_unique() == 2
    assert inside["latency_ms"].median() > 10 * health["latency_ms"].median() / 2
