from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from obsbench.errors import ConfigError, UnknownName
from obsbench.reports.delivery import DeliveryContext, deliver, deliver_all
from obsbench.reports.history import History, collect_manifests, write_index


def ctx(tmp_path: Path, status: str = "ok") -> DeliveryContext:
    pdf = tmp_path / "sla.pdf"
    pdf.write_bytes(b"%PDF-1.7 test")
    return DeliveryContext(
        report="sla", schedule_id="sla-monthly", status=status, run_id="r1",
        slot=datetime(2024, 2, 2, 7, tzinfo=UTC),
        parameters={"start": "2024-01-01", "end": "2024-01-31"},
        pdf=pdf if status == "ok" else None, pages=7, error="" if status == "ok" else "boom",
    )  # fmt: skip


@pytest.mark.parametrize(
    "url", [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]
)
def test_history_records_runs_and_slots(tmp_path: Path, url: str, request) -> None:
    if url == "postgres":
        url = request.getfixturevalue("pg_schema")
    else:
        url = f"sqlite:///{tmp_path / 'h.db'}"
    h = History(url)
    request.addfinalizer(h.close)
    h.start(run_id="a", report="sla", parameters={"start": "2024-01-01"})
    h.finish("a", status="failed", error="ZeroDivisionError: x")
    h.start(run_id="b", report="risk", schedule_id="r", trigger="catchup")
    h.finish("b", status="ok", pdf="/x.pdf")
    runs = h.runs()
    assert [r["run_id"] for r in runs] == ["b", "a"]
    assert runs[1]["status"] == "failed"
    assert runs[1]["parameters"] == {"start": "2024-01-01"}
    assert runs[0]["duration_s"] >= 0
    assert [r["run_id"] for r in h.runs(schedule_id="r")] == ["b"]
    slot = datetime(2024, 1, 1, 7, tzinfo=UTC)
    h.set_last_slot("r", slot)
    h.set_last_slot("r", slot - timedelta(days=1))  # never moves backwards
    assert h.last_slot("r") == slot
    assert h.acquire("k", ttl=timedelta(minutes=5))
    assert not h.acquire("k", ttl=timedelta(minutes=5))
    h.release("k")
    assert h.acquire("k", ttl=timedelta(minutes=5))


def test_index_lists_complete_runs_only(tmp_path: Path) -> None:
    for name, doc in {
        "sla/r1": {"report": "sla", "run_id": "r1", "status": "ok", "started_at": "2024-01-02",
                   "outputs": {"pdf": "sla.pdf"}, "timings_s": {"total": 3.25}},
        "sla/r0.failed": {"report": "sla", "run_id": "r0", "status": "failed",
                          "started_at": "2024-01-01", "error": {"message": "cell 3 raised"}},
        "sla/.r2.partial": {"report": "sla", "run_id": "r2", "status": "running"},
    }.items():  # fmt: skip
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "manifest.json").write_text(json.dumps(doc))
    assert [d["run_id"] for d in collect_manifests(tmp_path)] == ["r1", "r0"]
    page = write_index(tmp_path).read_text()
    assert 'href="sla/r1/sla.pdf"' in page
    assert "cell 3 raised" in page
    assert "r2" not in page
    assert "3.2 s" in page


def test_folder_delivery_copies_the_pdf_under_a_templated_name(tmp_path: Path) -> None:
    done = deliver({"type": "folder", "path": str(tmp_path / "out")}, ctx(tmp_path))
    target = tmp_path / "out" / "sla_2024-01-01_2024-01-31.pdf"
    assert done == f"folder: {target}"
    assert target.read_bytes() == b"%PDF-1.7 test"
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left
    notice = deliver({"type": "folder", "path": str(tmp_path / "out")}, ctx(tmp_path, "failed"))
    assert json.loads(Path(notice.split(": ", 1)[1]).read_text())["error"] == "boom"


def test_email_delivery_attaches_the_pdf(tmp_path: Path, smtp_server) -> None:
    spec = {"type": "email", "to": ["a@example.com", "b@example.com"],
            "host": smtp_server.host, "port": smtp_server.port,
            "subject": "SLA {{ period_start }}"}  # fmt: skip
    assert deliver(spec, ctx(tmp_path)) == "email: a@example.com, b@example.com"
    [mail] = smtp_server.messages
    assert mail["Subject"] == "SLA 2024-01-01"
    parts = {p.get_filename(): p for p in mail.walk() if p.get_filename()}
    assert parts["sla.pdf"].get_payload(decode=True) == b"%PDF-1.7 test"
    assert parts["sla.pdf"].get_content_type() == "application/pdf"


def test_failure_email_has_no_attachment(tmp_path: Path, smtp_server) -> None:
    spec = {"type": "email", "to": "oncall@example.com", "host": smtp_server.host,
            "port": smtp_server.port}  # fmt: skip
    deliver(spec, ctx(tmp_path, "failed"))
    [mail] = smtp_server.messages
    assert mail["Subject"].startswith("[obsbench] FAILED: sla")
    assert not [p for p in mail.walk() if p.get_filename()]
    assert "boom" in mail.get_payload()


def test_webhook_delivery_posts_the_run_document(tmp_path: Path, webhook_server) -> None:
    deliver({"type": "webhook", "url": webhook_server.url}, ctx(tmp_path))
    [doc] = webhook_server.received
    assert doc["text"] == "Report sla for 2024-01-01 – 2024-01-31 is ready (7 pages, run r1)."
    assert doc["pages"] == 7


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param({"type": "pigeon"}, UnknownName, id="unknown_type"),
        pytest.param({"path": "x"}, ConfigError, id="no_type"),
        pytest.param({"type": "webhook", "url": "ftp://x"}, ConfigError, id="non_http_url"),
        pytest.param({"type": "email", "to": []}, ConfigError, id="no_recipient"),
    ],
)
def test_bad_delivery_specs(tmp_path: Path, spec: dict, error: type) -> None:
    with pytest.raises(error):
        deliver(spec, ctx(tmp_path))


def test_unreachable_targets_are_reported_not_raised(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    done = deliver_all(
        [{"type": "email", "to": ["x@example.com"], "host": "127.0.0.1", "port": port},
         {"type": "webhook", "url": f"http://127.0.0.1:{port}/h", "timeout_s": 2}],
        ctx(tmp_path),
    )  # fmt: skip
    assert [d.split(":")[0] for d in done] == ["failed", "failed"]
    assert "cannot send e-mail" in done[0]


def test_failed_run_reaches_dashboard_sessions_through_the_alert_bus(tmp_path: Path) -> None:
    from obsbench.alerts.bus import bus

    got: list[dict] = []
    sid = bus.subscribe(got.append)
    try:
        done = deliver({"type": "alert_channel", "channel": "bus"}, ctx(tmp_path, "failed"))
    finally:
        bus.unsubscribe(sid)
    assert done == "alert_channel:bus"
    [notification] = got
    [alert] = notification["alerts"]
    assert notification["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "ReportFailed",
        "severity": "critical",
        "report": "sla",
        "schedule": "sla-monthly",
    }
    assert alert["annotations"]["summary"] == "report sla failed: boom"


def test_failed_run_posts_a_slack_shaped_alert(tmp_path: Path, webhook_server) -> None:
    spec = {"type": "alert_channel", "channel": "webhook", "url": webhook_server.url}
    deliver(spec, ctx(tmp_path, "failed"))
    [doc] = webhook_server.received
    assert "ReportFailed" in json.dumps(doc)
    assert "report sla failed: boom" in json.dumps(doc)
