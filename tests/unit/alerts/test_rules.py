"""Rule files: parsing, validation errors with line and field, durations, templates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from obsbench.alerts import RuleError, load_rules, parse_duration, parse_rules
from obsbench.alerts.durations import format_duration
from obsbench.alerts.rules import MetricSignal, PromQLSignal, rules_from_slo
from obsbench.alerts.templates import render
from obsbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
rules:
  - name: ApiLatencyHigh
    signal: {promql: 'api_latency_p99_seconds{job="api"}'}
    op: ">"
    thresholds: {warning: 0.5, critical: 1.0, emergency: 2.0}
    for: 5m
    keep_firing_for: 0s
    labels: {team: trading-ops}
    annotations: {summary: "p99 latency high on {{ labels.service }}: {{ value }}"}
    runbook_url: https://runbooks.example/api-latency
  - name: Errors
    signal: {metric: error_rate, dataset: requests, by: [service], window: 5m}
    thresholds: {critical: 0.1}
"""


def test_the_issue_example_parses() -> None:
    a, b = parse_rules(GOOD)
    assert isinstance(a.signal, PromQLSignal)
    assert a.signal.promql == 'api_latency_p99_seconds{job="api"}'
    assert a.for_ == timedelta(minutes=5)
    assert a.thresholds.items() == [("warning", 0.5), ("critical", 1.0), ("emergency", 2.0)]
    assert a.labels == {"team": "trading-ops"}
    assert a.runbook_url == "https://runbooks.example/api-latency"
    assert isinstance(b.signal, MetricSignal)
    assert b.signal.by == ("service",)
    assert b.op == ">"
    assert b.no_data == "nodata"


def _bad(line: int, text: str) -> str:
    lines = GOOD.splitlines()
    lines[line - 1] = text
    return "\n".join(lines)


ERRORS = [
    pytest.param(_bad(4, '    op: "=>"'), 4, "rules[0].op", "Input should be", id="bad_op"),
    pytest.param(_bad(6, "    for: 5 minutes"), 6, "rules[0].for", "not a duration", id="bad_for"),
    pytest.param(
        _bad(5, "    thresholds: {warning: 2.0, critical: 1.0}"),
        5,
        "rules[0].thresholds",
        "must not decrease",
        id="thresholds_out_of_order",
    ),
    pytest.param(
        _bad(5, "    thresholds: {}"), 5, "rules[0].thresholds", "at least one", id="no_threshold"
    ),
    pytest.param(
        _bad(5, "    thresholds: {warning: high}"),
        5,
        "rules[0].thresholds.warning",
        "valid number",
        id="threshold_not_a_number",
    ),
    pytest.param(
        _bad(9, '    annotations: {summary: "{{ labels.x | shout }}"}'),
        9,
        "rules[0].annotations",
        "unknown template filter",
        id="bad_template",
    ),
    pytest.param(
        _bad(8, "    labels: {severity: page}"),
        8,
        "rules[0].labels",
        "set by obsbench",
        id="reserved_label",
    ),
    pytest.param(
        _bad(12, "    signal: {metric: nonsense, window: 5m}"),
        12,
        "rules[1].signal.metric",
        "unknown signal 'nonsense'",
        id="unknown_signal",
    ),
    pytest.param(
        _bad(12, "    signal: {metric: error_rate, dataset: fills}"),
        12,
        "rules[1].signal",
        "reads dataset 'requests'",
        id="wrong_dataset",
    ),
    pytest.param(_bad(11, "  - name: ApiLatencyHigh"), 11, "rules[1].name", "duplicate", id="dup"),
    pytest.param(_bad(10, "    runbook: x"), 10, "rules[0].runbook", "Extra inputs", id="typo_key"),
    pytest.param("rules: [\n  {name: x", 2, None, "invalid YAML", id="yaml_syntax"),
    pytest.param("- just a list\n", 1, None, "'rules' list", id="not_a_mapping"),
    pytest.param("rules: []\nalerts: []\n", 2, "alerts", "unknown top-level key", id="top_key"),
]


@pytest.mark.parametrize(("text", "line", "field", "match"), ERRORS)
def test_errors_name_line_and_field(text: str, line: int, field: str | None, match: str) -> None:
    with pytest.raises(RuleError, match=match) as info:
        parse_rules(text)
    assert info.value.line == line
    assert info.value.field == field
    assert f"<rules>:{line}:" in str(info.value)


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_bad(4, '    op: "=>"'))
    with pytest.raises(RuleError, match=r"bad\.yaml:4: rules\[0\]\.op"):
        parse_rules(path)


DURATIONS = [
    pytest.param("0s", 0, id="zero"),
    pytest.param("0", 0, id="bare_zero"),
    pytest.param("90s", 90, id="seconds"),
    pytest.param("5m", 300, id="minutes"),
    pytest.param("1h30m", 5400, id="compound"),
    pytest.param("1d", 86400, id="day"),
    pytest.param("1w", 604800, id="week"),
    pytest.param("250ms", 0.25, id="millis"),
    pytest.param(45, 45, id="number_is_seconds"),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["5 m", "m5", "1.5h", "-1m", "", "5M"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match=r"not a duration|negative"):
        parse_duration(text if text != "-1m" else -60)


def test_format_duration_round_trips() -> None:
    for text in ("1d5m", "1h30m", "90ms", "0s"):
        assert format_duration(parse_duration(text)) == text


TEMPLATES = [
    pytest.param("{{ labels.service }}", {"service": "api"}, 1.0, "api", id="label"),
    pytest.param("{{ $labels.service }}", {"service": "api"}, 1.0, "api", id="go_style"),
    pytest.param("{{ labels.missing }}!", {}, 1.0, "!", id="missing_label_empty"),
    pytest.param("{{ value }}", {}, 0.75, "0.75", id="value"),
    pytest.param("{{ value }}", {}, 3.0, "3", id="integral_value"),
    pytest.param("{{ value | humanize }}", {}, 1234567.0, "1.235M", id="humanize"),
    pytest.param("{{ value | humanize }}", {}, 0.0025, "2.5m", id="humanize_small"),
    pytest.param("{{ value | humanize_percentage }}", {}, 0.05, "5%", id="percentage"),
    pytest.param("{{ value | humanize_duration }}", {}, 3725.0, "1h 2m 5s", id="duration"),
    pytest.param("{{ value | round(1) }}", {}, 2.345, "2.3", id="round"),
    pytest.param("{{ value }}", {}, None, "", id="no_value"),
]


@pytest.mark.parametrize(("template", "labels", "value", "expected"), TEMPLATES)
def test_templates(template: str, labels: dict, value: float | None, expected: str) -> None:
    assert render(template, labels, value) == expected


def test_with_returns_a_validated_copy() -> None:
    rule = parse_rules(GOOD)[0]
    other = rule.with_(for_="10m", keep_firing_for="1m")
    assert other.for_ == timedelta(minutes=10)
    assert rule.for_ == timedelta(minutes=5)  # the original is unchanged
    with pytest.raises(ValueError, match="op"):
        rule.with_(op="~")


def test_shipped_rules_parse() -> None:
    rules = load_rules(ROOT / "rules")
    names = {r.name for r in rules}
    assert {"ApiErrorRateHigh", "ApiLatencyP99High", "SlippageHigh", "StrategyDrawdown"} <= names
    assert "BrokerQuotaHigh" in names
    assert any(n.endswith(":burn-rate:1h-5m") for n in names)


def test_slo_burn_rate_rules() -> None:
    rules = rules_from_slo(ROOT / "slo" / "order_router.yaml")
    fast = next(r for r in rules if r.name == "order-router-availability:burn-rate:1h-5m")
    assert fast.thresholds.items() == [("critical", 14.4)]
    assert fast.signal.metric == "burn_rate"
    assert fast.signal.window == timedelta(hours=1)
    assert fast.signal.params["and_window"] == "5m"
    assert fast.labels["service"] == "order-router"
    slow = [r.thresholds.items() for r in rules if r.name.startswith("order-router-availability")]
    assert slow == [
        [("critical", 14.4)],
        [("critical", 6.0)],
        [("warning", 3.0)],
        [("warning", 1.0)],
    ]
