"""obsbench's replay() against a real Prometheus (Debian's 2.42 package).

1. The same rules run in ``promtool test rules`` and in :func:`obsbench.alerts.replay`: the
   expected ``ALERTS`` (state) and ``ALERTS_FOR_STATE`` (active_at) samples at *every*
   evaluation are generated from replay's timeline, and promtool checks them against its own
   rule engine. Scenarios: the hand-worked cases plus seeded random flapping series with
   gaps (staleness markers), several ``for`` / ``keep_firing_for`` and two severities.
2. A Prometheus server on 127.0.0.1 with backfilled history answers the PromQL signal of a
   rule, and a backtest of that rule finds the injected incident.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from obsbench.alerts import parse_rules, replay

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
N_EVALS = 40


def _need(binary: str | None, name: str) -> str:
    if binary is None:
        pytest.fail(
            f"{name} is missing: run scripts/test-services.sh (installs Debian's prometheus)"
        )
    return binary


# Each scenario: for, keep_firing_for, thresholds, per-series values (None = stale marker).
def _random_series(rng: random.Random, n: int) -> list[float | None]:
    out: list[float | None] = []
    level = rng.choice([0.2, 0.8, 1.5])
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            out.append(None)
            continue
        if r < 0.35:
            level = rng.choice([0.2, 0.8, 1.5])
        out.append(level)
    return out


def scenarios() -> list[dict]:
    out = [
        {"for": "0s", "kff": "0s", "series": {"a": [0, 1, 1, 0] + [0] * 4}},
        {"for": "2m", "kff": "0s", "series": {"a": [1, 1, 0, 1, 1, 1, 1, 0]}},
        {"for": "0s", "kff": "2m", "series": {"a": [1, 0, 1, 0, 0, 0, 0, 0]}},
        {"for": "1m", "kff": "2m", "series": {"a": [1, 1, None, None, None, None, 1, 1]}},
        {"for": "90s", "kff": "0s", "series": {"a": [1, 1, 1, 1, 0, 0, 0, 0]}},
    ]
    rng = random.Random(20261125)
    out.extend(
        {
            "for": rng.choice(["0s", "1m", "2m", "3m"]),
            "kff": rng.choice(["0s", "1m", "2m", "5m"]),
            "series": {f"s{j}": _random_series(rng, N_EVALS) for j in range(3)},
        }
        for _ in range(10)
    )
    return out


def _input_values(vals: list[float | None]) -> str:
    return " ".join("stale" if v is None else repr(float(v)) for v in vals)


def _labels(d: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"


def build(tmp: Path) -> tuple[Path, int]:
    groups, tests, n_checks = [], [], 0
    for k, sc in enumerate(scenarios()):
        name, metric = f"R{k}", f"x{k}"
        thresholds = {"warning": 0.5, "critical": 1.0}
        rule = parse_rules(
            yaml.safe_dump(
                {
                    "rules": [
                        {
                            "name": name,
                            "signal": {"promql": metric},
                            "op": ">",
                            "thresholds": thresholds,
                            "for": sc["for"],
                            "keep_firing_for": sc["kff"],
                            "no_data": "ok",
                        }
                    ]
                }
            )
        )[0]
        groups.append(
            {
                "name": f"g{k}",
                "interval": "1m",
                "rules": [
                    {
                        "alert": name,
                        "expr": f"{metric} > {thr}",
                        "for": sc["for"],
                        "keep_firing_for": sc["kff"],
                        "labels": {"severity": sev},
                    }
                    for sev, thr in thresholds.items()
                ],
            }
        )
        n = len(next(iter(sc["series"].values())))
        rows = [
            {"ts": EPOCH + timedelta(minutes=i), "svc": s, "value": float(v)}
            for s, vals in sc["series"].items()
            for i, v in enumerate(vals)
            if v is not None
        ]
        values = pl.DataFrame(
            rows, schema={"ts": pl.Datetime("us", "UTC"), "svc": pl.String, "value": pl.Float64}
        )
        eval_times = [EPOCH + timedelta(minutes=i) for i in range(n)]
        tl = replay(rule, values, eval_times).filter(pl.col("state").is_in(["pending", "firing"]))
        exprs = []
        for i in range(n):
            now = tl.filter(pl.col("ts") == eval_times[i])
            alerts = [
                {
                    "labels": "ALERTS"
                    + _labels({"alertname": name, "alertstate": st, "severity": sev, "svc": svc}),
                    "value": 1,
                }
                for svc, sev, st in now.select("svc", "severity", "state").iter_rows()
            ]
            for_state = [
                {
                    "labels": "ALERTS_FOR_STATE"
                    + _labels({"alertname": name, "severity": sev, "svc": svc}),
                    "value": int((act - EPOCH).total_seconds()),
                }
                for svc, sev, act in now.select("svc", "severity", "active_at").iter_rows()
            ]
            exprs.append(
                {
                    "expr": f'ALERTS{{alertname="{name}"}}',
                    "eval_time": f"{i}m",
                    "exp_samples": alerts,
                }
            )
            exprs.append(
                {
                    "expr": f'ALERTS_FOR_STATE{{alertname="{name}"}}',
                    "eval_time": f"{i}m",
                    "exp_samples": for_state,
                }
            )
            n_checks += 2
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'{metric}{{svc="{s}"}}', "values": _input_values(vals)}
                    for s, vals in sc["series"].items()
                ],
                "promql_expr_test": exprs,
            }
        )
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    test_file = tmp / "test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    return test_file, n_checks


def test_replay_matches_promtool_at_every_evaluation(tmp_path: Path) -> None:
    promtool = _need(PROMTOOL, "promtool")
    test_file, n_checks = build(tmp_path)
    out = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "SUCCESS" in out.stdout
    assert n_checks > 700  # every evaluation of every scenario was compared


def test_a_wrong_expectation_fails_in_promtool(tmp_path: Path) -> None:
    """The oracle is live: flipping one expected state makes promtool fail."""
    promtool = _need(PROMTOOL, "promtool")
    test_file, _ = build(tmp_path)
    doc = yaml.safe_load(test_file.read_text())
    first = doc["tests"][0]["promql_expr_test"]
    target = next(e for e in first if e["exp_samples"] and e["expr"].startswith("ALERTS{"))
    target["exp_samples"][0]["labels"] = target["exp_samples"][0]["labels"].replace(
        "firing", "pending"
    )
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode != 0


# -- a real server on 127.0.0.1 --------------------------------------------------------

START = 1709251200  # 2024-03-01T00:00:00Z


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _need(PROMETHEUS, "prometheus")
    promtool = _need(PROMTOOL, "promtool")
    d = tmp_path_factory.mktemp("prom")
    lines = ["# TYPE api_latency_p99_seconds gauge"]
    for i in range(361):  # 6 h at 60 s; incident minutes 100-129 on "api"
        for job, base in (("api", 0.2), ("web", 0.1)):
            v = 1.6 if job == "api" and 100 <= i < 130 else base
            lines.append(f'api_latency_p99_seconds{{job="{job}"}} {v} {START + 60 * i}')
    lines.append("# EOF")
    (d / "hist.om").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(d / "hist.om"),
            str(d / "data"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (d / "prometheus.yml").write_text("global: {evaluation_interval: 15s}\nscrape_configs: []\n")
    port = _free_port()
    log = (d / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(d / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


RULE = """
rules:
  - name: ApiLatencyHigh
    signal: {promql: 'api_latency_p99_seconds{job="api"}'}
    op: ">"
    thresholds: {warning: 0.5, critical: 1.0, emergency: 2.0}
    for: 5m
    labels: {team: trading-ops}
    annotations: {summary: "p99 latency high on {{ labels.job }}: {{ value }}"}
"""


def test_promql_signal_instant_and_range(prometheus: str) -> None:
    from obsbench.alerts.signals import evaluate_signal, signal_history

    rule = parse_rules(RULE)[0]
    at = datetime.fromtimestamp(START + 60 * 110, UTC)
    now = evaluate_signal(rule.signal, at, prometheus_url=prometheus)
    assert now.select("job", "value").rows() == [("api", 1.6)]
    hist = signal_history(
        rule.signal,
        datetime.fromtimestamp(START, UTC),
        datetime.fromtimestamp(START + 3600 * 6, UTC),
        timedelta(minutes=1),
        prometheus_url=prometheus,
    )
    assert hist.height == 361
    assert hist.filter(pl.col("value") > 1).height == 30


def test_promql_rule_replay_over_server_history(prometheus: str) -> None:
    from obsbench.alerts.signals import signal_history

    rule = parse_rules(RULE)[0]
    start = datetime.fromtimestamp(START, UTC)
    hist = signal_history(
        rule.signal,
        start,
        start + timedelta(hours=6),
        timedelta(minutes=1),
        prometheus_url=prometheus,
    )
    tl = replay(rule, hist)
    firing = tl.filter(pl.col("state") == "firing")
    # pending at minute 100, firing from minute 105 (for: 5m) until the incident ends at 130
    assert firing["ts"].min() == start + timedelta(minutes=105)
    assert firing["ts"].max() == start + timedelta(minutes=129)
    assert set(firing["severity"]) == {"warning", "critical"}


def test_unreachable_prometheus_is_source_unavailable() -> None:
    from obsbench.alerts.signals import evaluate_signal
    from obsbench.errors import SourceUnavailable

    rule = parse_rules(RULE)[0]
    with pytest.raises(SourceUnavailable, match="cannot query Prometheus"):
        evaluate_signal(
            rule.signal, datetime.now(UTC), prometheus_url=f"http://127.0.0.1:{_free_port()}"
        )


def test_bad_promql_is_reported(prometheus: str) -> None:
    from obsbench.alerts.signals import prometheus_instant
    from obsbench.errors import SourceUnavailable

    with pytest.raises(SourceUnavailable, match="rejected"):
        prometheus_instant(prometheus, "sum(", datetime.fromtimestamp(START, UTC))


def test_live_evaluator_on_promql_and_source_errors(prometheus: str, tmp_path: Path) -> None:
    """The evaluator's PromQL path: instant queries per cycle; a dead server is an error."""
    from obsbench.alerts.evaluator import Evaluator

    rule = parse_rules(RULE.replace("    for: 5m\n", "    for: 5m\n    on_error: error\n"))[0]
    start = datetime.fromtimestamp(START, UTC)
    ev = Evaluator([rule], database=f"sqlite:///{tmp_path / 'a.db'}", prometheus_url=prometheus)
    states = {}
    for m in range(99, 108):
        ev.evaluate(start + timedelta(minutes=m))
        states[m] = sorted(ev.state.select("severity", "state").rows())
    assert states[99] == []
    assert states[100] == [("critical", "pending"), ("warning", "pending")]
    assert states[105] == [("critical", "firing"), ("warning", "firing")]
    ev.prometheus_url = f"http://127.0.0.1:{_free_port()}"  # the server goes away
    report = ev.evaluate(start + timedelta(minutes=108))
    assert report.health == {"ApiLatencyHigh": "error"}
    assert sorted(ev.state.select("severity", "state").rows()) == states[105]  # kept
    ev.close()
