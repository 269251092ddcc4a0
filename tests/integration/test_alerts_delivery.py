"""Real deliveries on 127.0.0.1: webhooks (Slack, Teams, Alertmanager JSON) to a local HTTP
receiver, email to a local aiosmtpd server, a receiver that is down, and an evaluator that
is killed mid-alert and restarted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from obsbench.alerts import parse_rules
from obsbench.alerts.db import alert_history, alert_outbox
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import NotifyConfig

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

RULES = """
rules:
  - name: ApiErrors
    signal: {metric: error_rate, dataset: requests, by: [service], window: 1m}
    thresholds: {warning: 0.2, critical: 0.5}
    for: 2m
    annotations: {summary: "{{ labels.service }} errors at {{ value | humanize_percentage }}"}
    runbook_url: https://runbooks.example/api-errors
"""


def minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def requests_frame(rates: dict[str, list[float]]) -> pl.DataFrame:
    rows = [
        {
            "ts": minute(m - 1) + timedelta(seconds=6 * k + 3),
            "service": svc,
            "endpoint": "/orders",
            "latency_ms": 5.0,
            "status_code": 200 if k >= round(rate * 10) else 500,
            "ok": k >= round(rate * 10),
            "trace_id": None,
        }
        for svc, per_minute in rates.items()
        for m, rate in enumerate(per_minute)
        for k in range(10)
    ]
    return pl.DataFrame(rows).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")),
        pl.col("status_code").cast(pl.Int32),
        pl.col("trace_id").cast(pl.String),
    )


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records JSON posts; ``status`` sets the answer."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.status == 200:
                    outer.posts.append((self.path, json.loads(body), dict(self.headers)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b, _ in self.posts if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def config(receiver: Receiver, **extra_channels: dict) -> NotifyConfig:
    channels = {
        "slack": {"kind": "webhook", "url": f"{receiver.url}/slack", "format": "slack"},
        "teams": {"kind": "webhook", "url": f"{receiver.url}/teams", "format": "teams"},
        "am": {"kind": "webhook", "url": f"{receiver.url}/am", "format": "alertmanager"},
        **extra_channels,
    }
    return NotifyConfig.model_validate(
        {
            "group_by": ["alertname", "severity"],
            "group_wait": "0s",
            "group_interval": "1m",
            "repeat_interval": "4h",
            "routes": [{"channels": list(channels)}],
            "channels": channels,
        }
    )


def test_webhooks_slack_teams_alertmanager(tmp_path: Path, receiver: Receiver) -> None:
    rates = {"api": [0, 0.3, 0.3, 0.3, 0.3, 0, 0]}
    ev = Evaluator(
        parse_rules(RULES),
        database=f"sqlite:///{tmp_path / 'a.db'}",
        sources={"requests": requests_frame(rates)},
        notify=config(receiver),
    )
    for m in range(7):
        ev.evaluate(minute(m))
    slack, teams, am = (receiver.bodies(p) for p in ("/slack", "/teams", "/am"))
    assert len(slack) == len(teams) == len(am) == 2  # firing, then resolved
    first = slack[0]["attachments"][0]
    assert slack[0]["text"].startswith("[FIRING:1]")
    assert first["title"] == "[FIRING] ApiErrors"
    assert first["text"] == "api errors at 30%"
    assert first["title_link"] == "https://runbooks.example/api-errors"
    assert first["color"] == "warning"
    assert slack[1]["attachments"][0]["color"] == "good"
    assert teams[0]["@type"] == "MessageCard"
    assert teams[0]["potentialAction"][0]["targets"][0]["uri"].endswith("/api-errors")
    assert {f["name"]: f["value"] for f in teams[0]["sections"][0]["facts"]}["service"] == "api"
    assert am[0]["version"] == "4"
    assert am[0]["status"] == "firing"
    assert am[1]["status"] == "resolved"
    assert am[0]["alerts"][0]["labels"] == {
        "alertname": "ApiErrors",
        "service": "api",
        "severity": "warning",
    }
    assert am[0]["alerts"][0]["startsAt"] == "2026-03-02T09:03:00Z"
    keys = [h["Idempotency-Key"] for p, _, h in receiver.posts if p == "/am"]
    assert len(set(keys)) == 2


class SMTPSink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_email_to_local_smtp(tmp_path: Path, receiver: Receiver) -> None:
    from aiosmtpd.controller import Controller

    sink = SMTPSink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mail = {
            "kind": "email",
            "host": "127.0.0.1",
            "port": port,
            "sender": "obsbench@example.com",
            "to": ["oncall@example.com"],
        }
        cfg = NotifyConfig.model_validate(
            {
                "group_wait": "0s",
                "group_interval": "1m",
                "routes": [{"channels": ["mail"]}],
                "channels": {"mail": mail},
            }
        )
        ev = Evaluator(
            parse_rules(RULES),
            database=f"sqlite:///{tmp_path / 'a.db'}",
            sources={"requests": requests_frame({"api": [0, 0.6, 0.6, 0.6, 0.6]})},
            notify=cfg,
        )
        for m in range(5):
            ev.evaluate(minute(m))
    finally:
        controller.stop()
    # warning and critical both fire at 3; critical inhibits warning: one email, critical
    assert len(sink.messages) == 1
    env = sink.messages[0]
    assert env.mail_from == "obsbench@example.com"
    assert env.rcpt_tos == ["oncall@example.com"]
    text = env.content.decode()
    assert "Subject: [FIRING:1] alertname=ApiErrors" in text
    assert "api errors at 60%" in text
    assert "- [firing] critical" in text
    assert "- [firing] warning" not in text
    assert "runbook: https://runbooks.example/api-errors" in text


def test_channel_down_queues_and_delivers_once_back(tmp_path: Path, receiver: Receiver) -> None:
    other = Receiver()
    try:
        channels = {
            "flaky": {"kind": "webhook", "url": f"{receiver.url}/flaky"},
            "steady": {"kind": "webhook", "url": f"{other.url}/steady"},
        }
        cfg = NotifyConfig.model_validate(
            {
                "group_by": ["alertname", "service"],
                "group_wait": "0s",
                "group_interval": "1m",
                "routes": [{"channels": ["flaky", "steady"]}],
                "channels": channels,
            }
        )
        rates = {"api": [0, 0.3, 0.3, 0.3, 0, 0, 0, 0], "web": [0, 0, 0.3, 0.3, 0.3, 0, 0, 0]}
        ev = Evaluator(
            parse_rules(RULES.replace("for: 2m", "for: 0s")),
            database=f"sqlite:///{tmp_path / 'a.db'}",
            sources={"requests": requests_frame(rates)},
            notify=cfg,
        )
        ev.outbox.base_delay = 0.0  # retry at every cycle in this test
        receiver.status = 503
        for m in range(8):
            ev.evaluate(minute(m))
        expected = [
            ("firing", "api"),
            ("firing", "web"),
            ("resolved", "api"),
            ("resolved", "web"),
        ]
        got = [(b["status"], b["alerts"][0]["labels"]["service"]) for b in other.bodies("/steady")]
        assert got == expected  # the healthy channel is not held up
        assert receiver.bodies("/flaky") == []
        assert ev.outbox.pending("flaky") == 4
        with ev.engine.connect() as conn:
            row = conn.execute(
                select(alert_outbox).where(alert_outbox.c.channel == "flaky").limit(1)
            ).one()
        assert row.attempts >= 1
        assert "503" in row.last_error
        receiver.status = 200  # back up: everything arrives, in order, once
        report = ev.outbox.deliver(minute(9))
        assert report.delivered == {"flaky": 4}
        got = [
            (b["status"], b["alerts"][0]["labels"]["service"]) for b in receiver.bodies("/flaky")
        ]
        assert got == expected
        assert ev.outbox.deliver(minute(10)).total_delivered == 0
        assert ev.outbox.pending() == 0
    finally:
        other.close()


def test_backoff_grows_and_caps(tmp_path: Path) -> None:
    from obsbench.alerts.outbox import Outbox
    from obsbench.store import engine

    box = Outbox(engine(f"sqlite:///{tmp_path / 'o.db'}"), {}, base_delay=2, max_delay=30)
    assert [box.backoff(n).total_seconds() for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


CHILD = r"""
import sys, time, polars as pl
from datetime import UTC, datetime, timedelta
from obsbench.alerts import parse_rules
from obsbench.alerts.evaluator import Evaluator
from obsbench.alerts.notify import NotifyConfig
url, data, rules, hook, stop = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
cfg = NotifyConfig.model_validate({"group_by": ["alertname", "severity"], "group_wait": "0s",
    "group_interval": "1m", "repeat_interval": "4h", "routes": [{"channels": ["hook"]}],
    "channels": {"hook": {"kind": "webhook", "url": hook}}})
ev = Evaluator(parse_rules(open(rules).read()), database=url,
               sources={"requests": pl.read_parquet(data)}, notify=cfg)
for m in range(stop):
    ev.evaluate(T0 + timedelta(minutes=m))
    print("cycle", m, flush=True)
time.sleep(120)  # killed here, mid-alert
"""


def run_killed_then_restarted(url: str, tmp_path: Path, receiver: Receiver) -> Evaluator:
    """Minutes 0-4 in a child process that is then SIGKILLed; 5-12 in this process."""
    rates = {"api": [0, 0.3, 0.3, 0.6, 0.6, 0.6, 0.6, 0.6, 0.3, 0, 0, 0, 0]}
    data = tmp_path / "requests.parquet"
    requests_frame(rates).write_parquet(data)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(data), str(rules), f"{receiver.url}/hook", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        for line in child.stdout:  # type: ignore[union-attr]
            if line.strip() == "cycle 4" or time.monotonic() > deadline:
                break
        assert child.poll() is None, child.stderr.read()  # type: ignore[union-attr]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    # at the kill: warning firing since 3 (active 1), critical pending since 3
    cfg = NotifyConfig.model_validate(
        {
            "group_by": ["alertname", "severity"],
            "group_wait": "0s",
            "group_interval": "1m",
            "repeat_interval": "4h",
            "routes": [{"channels": ["hook"]}],
            "channels": {"hook": {"kind": "webhook", "url": f"{receiver.url}/hook"}},
        }
    )
    ev = Evaluator(
        parse_rules(RULES),
        database=url,
        sources={"requests": pl.read_parquet(data)},
        notify=cfg,
    )
    restored = ev.state.sort("severity").select("severity", "state", "active_at").rows()
    assert restored == [("critical", "pending", minute(3)), ("warning", "firing", minute(1))]
    for m in range(5, 13):
        ev.evaluate(minute(m))
    return ev


def check_restart(ev: Evaluator, receiver: Receiver) -> None:
    got = [
        (b["status"], b["alerts"][0]["labels"]["severity"], b["alerts"][0]["startsAt"])
        for b in receiver.bodies("/hook")
    ]
    # warning fired at 3 (before the kill), critical at 5 (its for clock kept active_at 3);
    # no notification was repeated by the restart; both resolve once
    assert got == [
        ("firing", "warning", "2026-03-02T09:03:00Z"),
        ("firing", "critical", "2026-03-02T09:05:00Z"),
        ("resolved", "critical", "2026-03-02T09:05:00Z"),
        ("resolved", "warning", "2026-03-02T09:03:00Z"),
    ]
    with ev.engine.connect() as conn:
        hist = conn.execute(
            select(alert_history.c.severity, alert_history.c.to_state).order_by(alert_history.c.id)
        ).all()
    assert [tuple(h) for h in hist] == [
        ("warning", "pending"),
        ("warning", "firing"),
        ("critical", "pending"),
        ("critical", "firing"),
        ("critical", "inactive"),
        ("warning", "inactive"),
    ]


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_evaluator_killed_mid_alert_resumes_without_duplicates(
    database: str, tmp_path: Path, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'a.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_schema")
    )
    ev = run_killed_then_restarted(url, tmp_path, receiver)
    check_restart(ev, receiver)
    ev.close()
