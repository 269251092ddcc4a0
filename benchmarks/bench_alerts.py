"""Alert evaluator benchmarks (targets from issue #6).

1. One evaluation cycle of 1,000 rules over 10,000 series (local signals): a ``requests``
   frame with 1,000 services x 10 endpoints; each rule watches one service's error rate per
   endpoint (``where: {service: ...}``, ``by: [service, endpoint]``), so the cycle reads
   the window once, groups once, and advances 10,000 series x 2 severities. Persistence to
   SQLite and notification (grouping, outbox) are included. Target: < 1 s.
2. A backtest of 100 rules over 30 days at 15 s resolution (172,800 evaluations per series):
   10 signals of 10 series each (precomputed signal frames: bursts on a noisy baseline),
   each watched by 10 rules with different thresholds / for / keep_firing_for, scored
   against 200 incidents. Target: < 30 s.

Run: ``.venv/bin/python benchmarks/bench_alerts.py``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from obsbench.alerts import parse_rules
from obsbench.alerts.backtest import backtest
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import NotifyConfig

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def cycle_benchmark() -> dict[str, float]:
    rng = np.random.default_rng(7)
    n_svc, n_ep, per_series = 1000, 10, 6  # 6 requests per series per minute
    n = n_svc * n_ep * per_series * 3  # three minutes of traffic
    svc = np.repeat(np.arange(n_svc), n_ep * per_series * 3)
    ep = np.tile(np.repeat(np.arange(n_ep), per_series * 3), n_svc)
    offs = rng.uniform(0, 180, n)  # seconds before T0 + 3m
    bad_svc = rng.random(n_svc) < 0.05  # 5% of services failing
    ok = ~((rng.random(n) < 0.5) & bad_svc[svc])
    frame = pl.DataFrame(
        {
            "ts": pl.Series(
                [T0 + timedelta(minutes=3) - timedelta(seconds=float(o)) for o in offs]
            ).cast(pl.Datetime("us", "UTC")),
            "service": pl.Series([f"svc-{i:04d}" for i in svc]),
            "endpoint": pl.Series([f"/ep{j}" for j in ep]),
            "latency_ms": rng.gamma(2.0, 10.0, n),
            "status_code": np.where(ok, 200, 500).astype(np.int32),
            "ok": ok,
            "trace_id": pl.Series([None] * n, dtype=pl.String),
        }
    ).sort("ts")
    rules_yaml = "rules:\n" + "".join(
        f"""  - name: Errors{i:04d}
    signal:
      {{metric: error_rate, by: [service, endpoint], window: 1m, where: {{service: svc-{i:04d}}}}}
    thresholds: {{warning: 0.1, critical: 0.3}}
    for: 1m
    annotations: {{summary: "{{{{ labels.service }}}}{{{{ labels.endpoint }}}} {{{{ value }}}}"}}
"""
        for i in range(n_svc)
    )
    rules = parse_rules(rules_yaml)
    cfg = NotifyConfig.model_validate(
        {
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1m",
            "routes": [{"channels": ["log"]}],
            "channels": {"log": {"kind": "log", "level": "DEBUG"}},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        ev = Evaluator(
            rules,
            database=f"sqlite:///{tmp}/bench.db",
            sources={"requests": frame},
            notify=cfg,
            deliver=True,
        )
        results = {}
        for k, m in enumerate((1, 2, 3)):  # pending, firing, steady
            t0 = time.perf_counter()
            report = ev.evaluate(T0 + timedelta(minutes=m))
            wall = time.perf_counter() - t0
            results[f"cycle{k + 1}"] = wall
            results[f"cycle{k + 1}_parts"] = report.seconds  # type: ignore[assignment]
            results[f"cycle{k + 1}_alerts"] = (report.firing, report.pending)  # type: ignore[assignment]
        series = ev.state.height
        ev.close()
    results["series_evaluated"] = n_svc * n_ep
    results["active_alerts"] = series
    return results


def backtest_benchmark() -> tuple[float, dict[str, float], pl.DataFrame]:
    rng = np.random.default_rng(11)
    step = timedelta(seconds=15)
    n = 30 * 24 * 240  # 30 days at 15 s
    ts = pl.datetime_range(T0, T0 + step * (n - 1), step, eager=True, time_zone="UTC").cast(
        pl.Datetime("us", "UTC")
    )
    incidents = []
    frames = []
    for k in range(10):  # 10 signals x 10 series
        parts = []
        for s in range(10):
            base = rng.normal(0.2, 0.04, n)
            for _ in range(2):  # two incidents per series over the month
                i = int(rng.integers(0, n - 400))
                length = int(rng.integers(40, 400))
                base[i : i + length] += rng.uniform(0.4, 1.2)
                incidents.append(
                    {
                        "incident_id": f"I{k}-{s}-{i}",
                        "kind": "error_burst",
                        "target": f"s{k}-{s}",
                        "start": T0 + step * i,
                        "end": T0 + step * (i + length),
                        "magnitude": 1.0,
                    }
                )
            parts.append(pl.DataFrame({"ts": ts, "service": f"s{k}-{s}", "value": base}))
        frames.append(pl.concat(parts))
    inc = pl.DataFrame(incidents).with_columns(
        pl.col("start", "end").cast(pl.Datetime("us", "UTC"))
    )
    fors = ["0s", "1m", "2m", "5m", "10m"]
    text = "rules:\n" + "".join(
        f"""  - name: R{k}_{j}
    signal: {{promql: signal_{k}}}
    thresholds: {{warning: {0.35 + 0.02 * j}, critical: {0.6 + 0.03 * j}, emergency: 1.2}}
    for: {fors[j % 5]}
    keep_firing_for: {"1m" if j % 2 else "0s"}
    detects: [error_burst]
"""
        for k in range(10)
        for j in range(10)
    )
    rules = parse_rules(text)
    values = {r.name: frames[int(r.name[1 : r.name.index("_")])] for r in rules}
    t0 = time.perf_counter()
    res = backtest(rules, T0, T0 + step * (n - 1), step=step, values=values, incidents=inc)
    return time.perf_counter() - t0, res.seconds, res.summary


def main() -> None:
    print("== alerts: one evaluation cycle, 1,000 rules over 10,000 series (target < 1 s)")
    c = cycle_benchmark()
    for k in (1, 2, 3):
        parts = ", ".join(f"{n} {v:.3f}s" for n, v in c[f"cycle{k}_parts"].items())
        firing, pending = c[f"cycle{k}_alerts"]
        print(f"cycle {k}: {c[f'cycle{k}']:.3f} s  ({parts}; firing {firing}, pending {pending})")
    worst = max(c["cycle1"], c["cycle2"], c["cycle3"])
    print(f"series per cycle: {c['series_evaluated']:,}; worst cycle {worst:.3f} s "
          f"-> {'OK' if worst < 1 else 'SLOW'}")  # fmt: skip

    print("== alerts: backtest, 100 rules x 30 days at 15 s (target < 30 s)")
    wall, parts, summary = backtest_benchmark()
    evals = int(summary["evaluations"].sum())
    print(
        f"backtest: {wall:.2f} s for {evals:,} rule evaluations x 10 series "
        f"({', '.join(f'{k} {v:.2f}s' for k, v in parts.items())}) -> "
        f"{'OK' if wall < 30 else 'SLOW'}"
    )
    print(
        f"alerts {int(summary['alerts'].sum()):,}, flaps {int(summary['flaps'].sum()):,}, "
        f"mean detection rate {summary['detection_rate'].mean():.2f}, "
        f"median TTD {summary['median_ttd_s'].median():.0f} s"
    )


if __name__ == "__main__":
    main()
