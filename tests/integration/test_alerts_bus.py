"""Dashboard push across processes through PostgreSQL LISTEN/NOTIFY (no browser)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from obsbench.alerts import parse_rules
from obsbench.alerts.bus import AlertBus, PostgresBridge
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import NotifyConfig

pytestmark = pytest.mark.postgres

LISTENER = r"""
import json, sys, threading
from obsbench.alerts.bus import AlertBus, PostgresBridge
url, channel, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
local = AlertBus()
done = threading.Event()
got = []
def on(msg):
    got.append(msg)
    print(json.dumps(msg), flush=True)
    if len(got) >= want:
        done.set()
local.subscribe(on)
bridge = PostgresBridge(url, local=local, channel=channel).start()
print("ready", flush=True)
done.wait(30)
bridge.stop()
"""


def start_listener(url: str, channel: str, want: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, url, channel, str(want)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
    return proc


def finish(proc: subprocess.Popen[str]) -> list[dict]:
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_notify_reaches_another_process_not_the_sender(pg_schema: str) -> None:
    channel = f"obsbench_test_{uuid.uuid4().hex[:8]}"
    proc = start_listener(pg_schema, channel, want=2)
    mine = AlertBus()
    heard: list[dict] = []
    mine.subscribe(heard.append)
    sender = PostgresBridge(pg_schema, local=mine, channel=channel).start()
    try:
        sender.notify({"n": 1, "alertname": "A"})
        sender.notify({"n": 2, "alertname": "B", "big": "x" * 10_000})  # over NOTIFY's limit
        got = finish(proc)
    finally:
        sender.stop()
    assert [m["n"] for m in got if "n" in m] == [1]
    assert got[1] == {"alertname": "B", "truncated": True}
    time.sleep(0.2)
    assert heard == []  # a process does not hear its own notifications back


def test_evaluator_on_postgres_pushes_to_other_process_sessions(pg_schema: str) -> None:
    channel = f"obsbench_test_{uuid.uuid4().hex[:8]}"
    proc = start_listener(pg_schema, channel, want=2)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    ts = [t0 + timedelta(seconds=30 * i) for i in range(12)]
    lat = pl.DataFrame(
        {
            "ts": ts,
            "service": "api",
            "endpoint": "/x",
            "latency_ms": [900.0 if 4 <= i < 8 else 10.0 for i in range(12)],
            "status_code": 200,
            "ok": True,
            "trace_id": None,
        }
    ).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")),
        pl.col("status_code").cast(pl.Int32),
        pl.col("trace_id").cast(pl.String),
    )
    rules = parse_rules(
        """
rules:
  - name: ApiLatencyHigh
    signal: {metric: p99_latency, dataset: requests, by: [service], window: 30s}
    thresholds: {critical: 500}
    annotations: {summary: "p99 {{ value }} ms on {{ labels.service }}"}
"""
    )
    cfg = NotifyConfig()  # default: dashboard (bus) at once, log grouped
    ev = Evaluator(
        rules, database=pg_schema, sources={"requests": lat}, notify=cfg, pg_channel=channel
    )
    assert ev.bridge is not None
    try:
        for i in range(12):
            ev.evaluate(ts[i])
        got = finish(proc)
    finally:
        ev.close()
    assert [m["status"] for m in got] == ["firing", "resolved"]
    alert = got[0]["alerts"][0]
    assert alert["labels"]["alertname"] == "ApiLatencyHigh"
    assert alert["annotations"]["summary"] == "p99 900 ms on api"
