from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from obsbench.alerts.bus import AlertBus
from obsbench.dashboards import alerts_feed


def _message(status: str, fingerprint: str = "fp1", severity: str = "critical") -> dict:
    return {
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "ErrorsHigh", "severity": severity, "service": "auth"},
                "annotations": {"summary": "auth failing"},
                "startsAt": "2026-11-25T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fingerprint,
                "value": 0.4,
            }
        ],
    }


def test_rows_flatten_a_notification():
    (row,) = alerts_feed.rows(_message("firing"), received=datetime(2026, 1, 1, tzinfo=UTC))
    assert list(row) == list(alerts_feed.COLUMNS)
    assert row["rule"] == "ErrorsHigh"
    assert row["labels"] == "service=auth"
    assert row["value"] == pytest.approx(0.4)
    assert row["received"] == "00:00:00.000"
    assert row["starts_at"] == "2026-11-25 10:00:00Z"


def test_a_single_alert_message_is_one_row():
    (row,) = alerts_feed.rows({"alertname": "X", "status": "firing", "severity": "warning"})
    assert (row["rule"], row["severity"], row["status"]) == ("X", "warning", "firing")


def test_book_tracks_active_alerts_and_history():
    book = alerts_feed.AlertBook()
    bus = AlertBus()
    book.attach(bus)
    bus.publish(_message("firing", "a"))
    bus.publish(_message("firing", "b", severity="warning"))
    recent, active = book.snapshot()
    assert [r["fingerprint"] for r in active] == ["a", "b"]  # most severe first
    bus.publish(
        {
            "status": "acknowledged",
            "alerts": [
                {
                    **_message("x")["alerts"][0],
                    "status": "acknowledged",
                    "fingerprint": "a",
                    "acked": "olga",
                }
            ],
        }
    )
    _, active = book.snapshot()
    assert active[0]["acked_by"] == "olga"
    bus.publish(_message("resolved", "a"))
    recent, active = book.snapshot()
    assert [r["fingerprint"] for r in active] == ["b"]
    assert len(recent) == 4
    history = [r["status"] for r in book.rule_history("ErrorsHigh")]
    assert history[:2] == ["resolved", "acknowledged"]


def test_attach_replays_the_bus_history_once():
    bus = AlertBus()
    bus.publish(_message("firing", "a"))
    book = alerts_feed.AlertBook().attach(bus)
    book.attach(bus)
    assert book.received == 1
    assert bus.subscribers == 1


def _fire(home) -> dict:
    from obsbench.alerts.evaluator import Evaluator
    from obsbench.alerts.rules import parse_rules

    rules = parse_rules(
        """
rules:
  - name: UnitTestErrors
    signal: {metric: error_rate, dataset: requests, by: [service], window: 1m}
    op: ">"
    thresholds: {critical: 0.5}
    for: 0s
"""
    )
    now = datetime.now(UTC).replace(microsecond=0)
    failing = pl.DataFrame(
        {
            "ts": [now],
            "service": ["auth"],
            "endpoint": ["GET /x"],
            "latency_ms": [1.0],
            "status_code": [500],
            "ok": [False],
            "trace_id": [None],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "status_code": pl.Int32},
    )
    bus = AlertBus()
    got: list[dict] = []
    from obsbench.alerts import bus as bus_module

    original = bus_module.bus
    bus_module.bus = bus
    bus.subscribe(got.append)
    try:
        ev = Evaluator(rules, sources={"requests": failing})
        ev.evaluate(now)
        ev.close()
    finally:
        bus_module.bus = original
    (row,) = [r for m in got for r in alerts_feed.rows(m) if r["status"] == "firing"]
    return row


def test_acknowledge_stores_logs_audits_and_announces(home):
    from sqlalchemy import select

    from obsbench import audit
    from obsbench.alerts.db import alert_acks
    from obsbench.store import engine

    row = _fire(home)
    bus = AlertBus()
    heard: list[dict] = []
    bus.subscribe(heard.append)
    message = alerts_feed.acknowledge(row, "olga", "looking", alert_bus=bus)
    assert heard == [message]
    assert alerts_feed.rows(message)[0]["acked_by"] == "olga"
    with engine().connect() as conn:
        acks = conn.execute(select(alert_acks.c.acked_by, alert_acks.c.comment)).all()
    assert [tuple(a) for a in acks] == [("olga", "looking")]
    events = audit.search(action="alert_ack")
    assert events["actor"].to_list() == ["olga"]


def test_acknowledging_a_resolved_alert_fails_clearly(home):
    from obsbench.errors import UnknownName

    row = {"fingerprint": "0000000000000000", "rule": "Gone", "id": "x"}
    with pytest.raises(UnknownName):
        alerts_feed.acknowledge(row, "olga", alert_bus=AlertBus())


def test_silence_is_stored_and_audited(home):
    from datetime import timedelta

    from sqlalchemy import select

    from obsbench import audit
    from obsbench.alerts.db import alert_silences
    from obsbench.store import engine

    sid = alerts_feed.silence({"alertname": "X"}, "rick", duration=timedelta(minutes=15))
    with engine().connect() as conn:
        row = conn.execute(select(alert_silences).where(alert_silences.c.id == sid)).one()
    assert row.created_by == "rick"
    assert '"alertname=\\"X\\""' in row.matchers or 'alertname="X"' in row.matchers
    assert audit.search(actor="rick")["resource"].to_list() == [f"alert_silence/{sid}"]


def test_book_stamps_when_a_message_reached_the_process():
    import time

    message = _message("firing")
    before = time.time() * 1000
    alerts_feed.AlertBook().add(message)
    assert before <= message["_received_ms"] <= time.time() * 1000
    stamped = message["_received_ms"]
    alerts_feed.AlertBook().add(message)  # a second book keeps the first stamp
    assert message["_received_ms"] == stamped


def test_sessions_share_the_rows_the_book_converted():
    message = _message("firing")
    stored = alerts_feed.AlertBook().add(message)
    assert alerts_feed.message_rows(message) is stored  # no per-session conversion
    fresh = _message("resolved")  # a message no book has seen is converted on the spot
    assert [r["status"] for r in alerts_feed.message_rows(fresh)] == ["resolved"]
