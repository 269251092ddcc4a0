"""Backtest numbers on a hand-worked history, and the evaluator's no-data/error states."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from obsbench.alerts import parse_rules
from obsbench.alerts.backtest import backtest
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import NotifyConfig

from .conftest import minute, requests_frame, run_minutes

RULE = """
rules:
  - name: R
    signal: {metric: error_rate, by: [service], window: 1m}
    thresholds: {warning: 0.5}
    for: 1m
    detects: [error_burst]
"""


def values() -> pl.DataFrame:
    on = {"a": [*range(5, 10), 12, 13], "b": list(range(20, 31))}
    rows = [
        {"ts": minute(m), "service": s, "value": 1.0 if m in on[s] else 0.0}
        for s in on
        for m in range(31)
    ]
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def incidents() -> pl.DataFrame:
    rows = [
        ("I1", "error_burst", "a", 4, 8),
        ("I2", "error_burst", "b", 22, 25),
        ("I3", "error_burst", "c", 1, 2),
        ("I4", "latency_spike", "a", 5, 9),
        ("I5", "error_burst", "b", 1, 2),
    ]
    return pl.DataFrame(
        [
            {
                "incident_id": i,
                "kind": k,
                "target": t,
                "start": minute(s),
                "end": minute(e),
                "magnitude": 1.0,
            }
            for i, k, t, s, e in rows
        ]
    ).with_columns(pl.col("start", "end").cast(pl.Datetime("us", "UTC")))


def test_backtest_hand_worked() -> None:
    rule = parse_rules(RULE)[0]
    res = backtest(
        [rule],
        minute(0),
        minute(30),
        step=timedelta(minutes=1),
        values={"R": values()},
        incidents=incidents(),
        grace=timedelta(minutes=1),
    )
    row = res.summary.row(0, named=True)
    assert row["evaluations"] == 31
    assert row["alerts"] == 3  # a: fired 6 and 13; b: fired 21
    assert row["firing_seconds"] == 240 + 60 + 540  # b still firing at the end counts to it
    assert row["flaps"] == 1  # a re-activated 2m after resolving
    # I3 targets a service the rule does not watch; I4 is not this rule's kind
    assert row["incidents"] == 3
    assert row["detected"] == 2
    assert row["detection_rate"] == pytest.approx(2 / 3)
    assert row["mean_ttd_s"] == 60.0  # a: 6 - 4 = 2m; b: already firing at 22 -> 0
    assert row["median_ttd_s"] == 60.0
    assert row["unmatched_alerts"] == 1  # a's second episode (13-14)
    eps = res.episodes.sort("fired_at")
    assert eps["fired_at"].to_list() == [minute(6), minute(13), minute(21)]
    assert eps["resolved_at"].to_list() == [minute(10), minute(14), None]


def test_backtest_from_sources_matches_values_path() -> None:
    rule = parse_rules(RULE)[0]
    frame = requests_frame({"a": [0, 0, 0.6, 0.6, 0.6, 0, 0]})
    res = backtest(
        [rule],
        minute(0),
        minute(6),
        step=timedelta(minutes=1),
        sources={"requests": frame},
        incidents=incidents().clear(),
    )
    row = res.summary.row(0, named=True)
    assert (row["alerts"], row["firing_seconds"], row["incidents"]) == (1, 120.0, 0)
    assert res.timelines["R"].filter(pl.col("state") == "firing")["ts"].to_list() == [
        minute(3),
        minute(4),
    ]


def test_backtest_with_no_alerts() -> None:
    rule = parse_rules(RULE)[0]
    res = backtest(
        [rule],
        minute(0),
        minute(5),
        values={"R": values().filter(pl.col("value") == 0)},
        incidents=incidents(),
    )
    assert res.summary.select("alerts", "detected", "unmatched_alerts").row(0) == (0, 0, 0)


# -- live no-data and error states ---------------------------------------------------------


def test_evaluator_nodata_and_error_states(db_url: str, sent: dict) -> None:
    from sqlalchemy import select

    from obsbench.alerts.db import active_alerts, alert_rule_health

    frame = requests_frame({"a": [0, 0.6, 0.6, 0.6]})  # no requests after minute 3
    broken = {"fail": False}

    def source(now):
        if broken["fail"]:
            raise ConnectionError("store unreachable")
        return frame

    rules = parse_rules(
        RULE.replace("    detects: [error_burst]\n", "    no_data: nodata\n    on_error: error\n")
    )
    cfg = NotifyConfig.model_validate(
        {
            "group_wait": "0s",
            "group_interval": "0s",
            "routes": [{"channels": ["pager"]}],
            "channels": {"pager": {"kind": "capture"}},
        }
    )
    ev = Evaluator(rules, database=db_url, sources={"requests": source}, notify=cfg)
    run_minutes(ev, 0, 4)
    assert ev.state.select("state").to_series().to_list() == ["firing"]
    broken["fail"] = True
    report = ev.evaluate(minute(4))
    assert report.health == {"R": "error"}
    assert ev.state.select("state").to_series().to_list() == ["firing"]  # kept, as Prometheus
    frame_now, _ = active_alerts(ev.engine)
    assert sorted(frame_now["state"].to_list()) == ["error", "firing"]
    with ev.engine.connect() as conn:
        err = conn.execute(select(alert_rule_health.c.error)).scalar_one()
    assert "store unreachable" in err
    broken["fail"] = False
    report = ev.evaluate(minute(5))  # the source is back but has no rows: no data
    assert report.health == {"R": "nodata"}
    assert ev.state.height == 0  # the series is gone: resolved
    frame_now, _ = active_alerts(ev.engine)
    assert frame_now["state"].to_list() == ["nodata"]
    summaries = [a["annotations"].get("summary", "") for m in sent["pager"] for a in m["alerts"]]
    assert any("evaluation failed: ConnectionError: store unreachable" in s for s in summaries)
    assert any("returned no data" in s for s in summaries)


def test_evaluator_nodata_alerting_and_keep_last(db_url: str, sent: dict) -> None:
    frame = requests_frame({"a": [0, 0.6, 0.6]})
    base = RULE.replace("    detects: [error_burst]\n", "")
    rules = parse_rules(
        base.replace("name: R", "name: Keep")
        + "    no_data: keep_last\n"
        + base.split("rules:\n")[1].replace("name: R", "name: Page")
        + "    no_data: alerting\n"
        + "    no_data_severity: critical\n"
    )
    ev = Evaluator(rules, database=db_url, sources={"requests": frame}, notify=NotifyConfig())
    run_minutes(ev, 0, 6)
    got = {(r["rule"], r["series"], r["severity"], r["state"]) for r in ev.state.to_dicts()}
    # Keep: fired at 2 and keeps firing through the no-data minutes 3-5;
    # Page: its series resolved at 3; the rule-level alert is pending at 3, firing from 4
    assert got == {
        ("Keep", '{"service":"a"}', "warning", "firing"),
        ("Page", "{}", "critical", "firing"),
    }


def test_rules_sharing_a_signal_by_where(db_url: str, sent: dict) -> None:
    """Rules that differ in ``where`` share one computation and still see only their rows."""
    base = (
        "    signal: {{metric: error_rate, by: [service], window: 1m, where: {{service: {w}}}}}\n"
    )
    text = "rules:\n" + "".join(
        f"  - name: {name}\n" + base.format(w=w) + "    thresholds: {warning: 0.2}\n"
        for name, w in [("A", "a"), ("AB", "[a, b]"), ("C", "c")]
    )
    frame = requests_frame({"a": [0, 0.5, 0.5], "b": [0, 0.5, 0.0], "c": [0, 0, 0]})
    ev = Evaluator(parse_rules(text), database=db_url, sources={"requests": frame})
    run_minutes(ev, 0, 2)
    got = sorted((r["rule"], r["series"]) for r in ev.state.to_dicts())
    assert got == [("A", '{"service":"a"}'), ("AB", '{"service":"a"}'), ("AB", '{"service":"b"}')]
    report = ev.evaluate(minute(2))
    assert report.health == {"A": "ok", "AB": "ok", "C": "ok"}
    got = sorted((r["rule"], r["series"]) for r in ev.state.to_dicts())
    assert got == [("A", '{"service":"a"}'), ("AB", '{"service":"a"}')]
    late = requests_frame({"a": [0, 0.5]})
    ev2 = Evaluator(
        parse_rules(text), database=db_url.replace(".db", "2.db"), sources={"requests": late}
    )
    assert ev2.evaluate(minute(1)).health == {"A": "ok", "AB": "ok", "C": "nodata"}
