"""Notifications end to end through the evaluator: grouping timers, repeats, inhibition,
silences, acknowledgements, escalation, de-duplication (SQLite, capture channels)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from obsbench.alerts import parse_rules
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import (
    Matcher,
    NotifyConfig,
    acknowledge,
    add_silence,
    expire_silence,
    load_notify_config,
)
from obsbench.errors import ConfigError, UnknownName

from .conftest import minute, requests_frame, run_minutes

RULES = """
rules:
  - name: ApiErrors
    signal: {metric: error_rate, dataset: requests, by: [service], window: 1m}
    thresholds: {warning: 0.2, critical: 0.5, emergency: 0.8}
    for: 1m
    labels: {team: ops}
    annotations: {summary: "{{ labels.service }} errors {{ value | humanize_percentage }}"}
    runbook_url: https://runbooks.example/api-errors
"""


def notify(**over: object) -> NotifyConfig:
    base = {
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "1h",
        "routes": [{"channels": ["pager"]}],
        "channels": {"pager": {"kind": "capture"}, "boss": {"kind": "capture"}},
    }
    base.update(over)
    return NotifyConfig.model_validate(base)


def evaluator(db_url: str, rates: dict, cfg: NotifyConfig, rules: str = RULES) -> Evaluator:
    return Evaluator(
        parse_rules(rules),
        database=db_url,
        sources={"requests": requests_frame(rates)},
        notify=cfg,
    )


def statuses(msgs: list[dict]) -> list[list[tuple[str, str, str]]]:
    return [
        sorted((a["status"], a["labels"]["service"], a["labels"]["severity"]) for a in m["alerts"])
        for m in msgs
    ]


def test_firing_then_resolved_once_each(db_url: str, sent: dict) -> None:
    ev = evaluator(db_url, {"a": [0, 0.3, 0.3, 0.3, 0, 0, 0]}, notify())
    run_minutes(ev, 0, 7)
    assert statuses(sent["pager"]) == [[("firing", "a", "warning")], [("resolved", "a", "warning")]]
    msg = sent["pager"][0]
    assert msg["version"] == "4"
    assert msg["alerts"][0]["annotations"]["summary"] == "a errors 30%"
    assert msg["alerts"][0]["runbook_url"] == "https://runbooks.example/api-errors"
    assert msg["alerts"][0]["labels"]["team"] == "ops"


def test_group_wait_batches_alerts(db_url: str, sent: dict) -> None:
    cfg = notify(group_wait="2m", group_interval="5m")
    ev = evaluator(db_url, {"a": [0, 0.3, 0.3, 0.3, 0.3], "b": [0, 0, 0.3, 0.3, 0.3]}, cfg)
    run_minutes(ev, 0, 5)
    # a fires at 2, b at 3; the group waits 2m from 2 and sends both at 4
    assert statuses(sent["pager"]) == [[("firing", "a", "warning"), ("firing", "b", "warning")]]


def test_group_interval_then_repeat_interval(db_url: str, sent: dict) -> None:
    cfg = notify(group_interval="3m", repeat_interval="6m")
    rates = {"a": [0] + [0.3] * 20, "b": [0] * 3 + [0.3] * 18}
    times: list[int] = []
    ev = evaluator(db_url, rates, cfg)
    n = 0

    def seen(m: int, _r: object) -> None:
        nonlocal n
        if len(sent.get("pager", [])) > n:
            times.append(m)
            n = len(sent["pager"])

    run_minutes(ev, 0, 21, seen)
    # first at 2 (a fires); b fires at 4 but waits for the next flush (2+3=5); repeats
    # every 6m unchanged, checked at flushes: 11, 17
    assert times == [2, 5, 11, 17]
    assert len(sent["pager"][1]["alerts"]) == 2


def test_escalation_and_de_escalation_with_inhibition(db_url: str, sent: dict) -> None:
    rates = {"a": [0, 0.3, 0.3, 0.6, 0.6, 0.6, 0.3, 0.3, 0.3, 0, 0, 0]}
    ev = evaluator(db_url, rates, notify(group_by=["alertname", "severity"]))
    run_minutes(ev, 0, 12)
    got = statuses(sent["pager"])
    # warning fires at 2; critical fires at 4 and mutes warning; critical resolves at 6
    # (de-escalation) while warning keeps firing and is shown again; all resolved at 9
    assert got[0] == [("firing", "a", "warning")]
    assert [("firing", "a", "critical")] in got
    assert [("resolved", "a", "critical")] in got
    assert got[-1] == [("resolved", "a", "warning")]
    assert sum(m == [("firing", "a", "warning")] for m in got) == 1  # no duplicate warning


def test_inhibit_rule_across_rules(db_url: str, sent: dict) -> None:
    rules = (
        RULES
        + """
  - name: ApiSlow
    signal: {metric: error_rate, dataset: requests, by: [service], window: 1m}
    thresholds: {warning: 0.1}
"""
    )
    cfg = notify(
        group_by=["alertname", "service", "severity"],
        inhibit_rules=[
            {
                "source_matchers": ['severity="emergency"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["service"],
            }
        ],
    )
    ev = evaluator(db_url, {"a": [0, 0.9, 0.9, 0.9]}, cfg, rules)
    run_minutes(ev, 0, 4)
    names = [
        (a["labels"]["alertname"], a["labels"]["severity"])
        for m in sent["pager"]
        for a in m["alerts"]
    ]
    # ApiSlow warning fires at 1 (before the emergency) and is muted once the emergency fires
    assert ("ApiErrors", "emergency") in names
    assert names.count(("ApiSlow", "warning")) == 1
    assert ("ApiErrors", "warning") not in names


def test_silence_mutes_until_it_ends(db_url: str, sent: dict) -> None:
    ev = evaluator(db_url, {"a": [0] + [0.3] * 9, "b": [0] + [0.3] * 9}, notify())
    sid = add_silence(
        ev.engine, ['service="a"'], starts_at=minute(0), ends_at=minute(5), created_by="me"
    )
    run_minutes(ev, 0, 4)
    assert statuses(sent["pager"]) == [[("firing", "b", "warning")]]
    run_minutes(ev, 4, 6)
    assert statuses(sent["pager"])[-1] == [("firing", "a", "warning"), ("firing", "b", "warning")]
    expire_silence(ev.engine, sid)
    with pytest.raises(UnknownName):
        expire_silence(ev.engine, "nope")


def test_ack_stops_repeats_and_escalation(db_url: str, sent: dict) -> None:
    cfg = notify(
        repeat_interval="2m",
        routes=[{"channels": ["pager"], "escalate": [{"after": "3m", "channels": ["boss"]}]}],
    )
    rates = {"a": [0] + [0.6] * 12, "b": [0] + [0.6] * 12}
    ev = evaluator(db_url, rates, cfg)
    run_minutes(ev, 0, 3)  # critical a and b firing at 2
    fps = [r["fingerprint"] for r in ev.engine.connect().execute(_active_critical("a")).mappings()]
    acknowledge(ev.engine, fps[0][:8], by="alice")
    n_before = len(sent["pager"])
    run_minutes(ev, 3, 13)
    # escalation: b only (a is acknowledged), once
    esc = sent["boss"]
    assert len(esc) == 1
    assert esc[0]["escalation"]["step"] == 1
    assert esc[0]["alerts"][0]["labels"]["service"] == "b"
    # repeats continue for the group (b unacknowledged), and show a as acknowledged
    assert len(sent["pager"]) > n_before
    acked = {a["labels"]["service"]: a["acked"] for a in sent["pager"][-1]["alerts"]}
    assert acked == {"a": "alice", "b": None}


def _active_critical(service: str):
    from sqlalchemy import select

    from obsbench.alerts.db import alert_state

    return select(alert_state.c.fingerprint).where(
        alert_state.c.severity == "critical", alert_state.c.series.contains(f'"{service}"')
    )


def test_ack_unknown_fingerprint(db_url: str, sent: dict) -> None:
    ev = evaluator(db_url, {"a": [0]}, notify())
    with pytest.raises(UnknownName, match="unknown active alert"):
        acknowledge(ev.engine, "deadbeef")


def test_restart_keeps_group_state(db_url: str, sent: dict) -> None:
    rates = {"a": [0] + [0.3] * 8 + [0] * 3}
    run_minutes(evaluator(db_url, rates, notify()), 0, 4)
    run_minutes(evaluator(db_url, rates, notify()), 4, 12)  # a new process on the same DB
    assert statuses(sent["pager"]) == [[("firing", "a", "warning")], [("resolved", "a", "warning")]]


MATCHERS = [
    pytest.param('severity="critical"', {"severity": "critical"}, True, id="eq"),
    pytest.param('severity!="critical"', {"severity": "critical"}, False, id="ne"),
    pytest.param('job=~"api|web"', {"job": "web"}, True, id="regex"),
    pytest.param('job=~"api"', {"job": "api2"}, False, id="regex_is_anchored"),
    pytest.param('job!~"api.*"', {"job": "web"}, True, id="not_regex"),
    pytest.param('missing=""', {}, True, id="absent_is_empty"),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHERS)
def test_matchers(text: str, labels: dict, expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


def test_config_errors() -> None:
    with pytest.raises(UnknownName, match="unknown channel 'nope'"):
        NotifyConfig.model_validate({"routes": [{"channels": ["nope"]}]})
    with pytest.raises(ConfigError, match="invalid matcher"):
        Matcher.parse("???")
    cfg = load_notify_config("notify:\n  group_wait: 10s\n")
    assert cfg.group_wait == timedelta(seconds=10)


def test_history_is_the_canonical_alerts_dataset(db_url: str, sent: dict) -> None:
    from obsbench import schemas
    from obsbench.alerts.db import history_frame

    ev = evaluator(db_url, {"a": [0, 0.3, 0.3, 0.6, 0.6, 0.6, 0, 0], "b": [0, 0.3, 0]}, notify())
    run_minutes(ev, 0, 8)
    hist = schemas.validate(history_frame(ev.engine), "alerts")
    rows = {
        (r["labels"], r["severity"], r["state"], r["fired_at"], r["resolved_at"])
        for r in hist.to_dicts()
    }
    assert rows == {
        ('{"service":"a"}', "warning", "resolved", minute(2), minute(6)),
        ('{"service":"a"}', "critical", "resolved", minute(4), minute(6)),
        ('{"service":"b"}', "warning", "inactive", None, minute(2)),  # pending, then dropped
    }
