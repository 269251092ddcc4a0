"""Schedules: cron, time zone, DST, catch-up once, no concurrent runs (fake clock and runner)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from obsbench.errors import ConfigError, ReportCellError
from obsbench.reports.history import History
from obsbench.reports.runner import RunResult
from obsbench.reports.schedule import Schedule, Scheduler, load_schedule, load_schedules, prune

REPO = Path(__file__).parents[3]


def make(cron: str = "0 7 * * *", tz: str = "Europe/London", **extra: Any) -> Schedule:
    timing = {"cron": cron, "timezone": tz, **extra.pop("timing", {})}
    return Schedule.model_validate({"id": "s", "report": "params", "schedule": timing, **extra})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("timing", "match"),
    [
        pytest.param({"cron": "30 6 * * 1-5"}, "numeric; write names", id="numeric_weekday_range"),
        pytest.param({"cron": "0 7 * * 0"}, "numeric; write names", id="numeric_sunday"),
        pytest.param({"cron": "0 7 * *"}, "must have 5 fields", id="four_fields"),
        pytest.param({"cron": "61 7 * * *"}, "not a valid cron", id="minute_out_of_range"),
        pytest.param({"timezone": "Mars/Olympus"}, "unknown time zone", id="bad_timezone"),
    ],
)
def test_invalid_schedule_files_are_rejected(tmp_path: Path, timing: dict, match: str) -> None:
    import yaml

    doc = {"report": "sla", "schedule": {"cron": "0 7 * * mon-fri", "timezone": "UTC", **timing}}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=match):
        load_schedule(path)


def test_unknown_keys_and_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("report: sla\nschedul: {}\n")
    with pytest.raises(ConfigError, match="schedul"):
        load_schedule(tmp_path / "a.yaml")
    text = "id: same\nreport: sla\nschedule: {cron: '0 7 * * *', timezone: UTC}\n"
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(ConfigError, match="'same' is used by"):
        load_schedules(tmp_path)


def test_shipped_schedules_load_and_render_their_parameters() -> None:
    schedules = load_schedules(REPO / "scheduled")
    assert {"sla", "risk_review", "best_execution"} <= {s.report for s in schedules}
    for s in schedules:
        params = s.parameters_for(s.latest_slot(utc(2026, 3, 10, 12)))
        assert params["start"] <= params["end"]


def test_with_parameters_returns_a_copy() -> None:
    s = make(parameters={"a": 1})
    assert s.with_parameters(b=2).parameters == {"a": 1, "b": 2}
    assert s.parameters == {"a": 1}


# ---------------------------------------------------------------------- slots
@pytest.mark.parametrize(
    ("cron", "tz", "after", "expected"),
    [
        pytest.param(
            "30 6 * * mon-fri",
            "Europe/London",
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 30, 5, 30), utc(2026, 3, 31, 5, 30)],
            id="weekdays_across_spring_dst_names_mean_mon_fri",
        ),
        pytest.param(
            "0 7 * * *",
            "Europe/London",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 7), utc(2026, 10, 26, 7)],
            id="fall_back_keeps_local_seven",
        ),
        pytest.param(
            "30 1 * * *",
            "Europe/London",
            utc(2026, 3, 28, 12),
            [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)],
            id="spring_forward_gap_runs_once_one_hour_later",
        ),
        pytest.param(
            "30 1 * * *",
            "Europe/London",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
            id="fall_back_repeated_hour_runs_once_first_occurrence",
        ),
        pytest.param(
            "0 2 * * *",
            "America/New_York",
            utc(2026, 3, 7, 12),
            [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6)],
            id="new_york_spring_gap",
        ),
        pytest.param(
            "0 7 2 * *",
            "Europe/London",
            utc(2026, 1, 15),
            [utc(2026, 2, 2, 7), utc(2026, 3, 2, 7), utc(2026, 4, 2, 6)],
            id="monthly_winter_and_summer_time",
        ),
    ],
)
def test_fire_times(cron: str, tz: str, after: datetime, expected: list[datetime]) -> None:
    assert make(cron, tz).next_runs(after, len(expected)) == expected


def test_latest_slot_is_at_or_before_now() -> None:
    s = make("0 7 * * *", "Europe/London")
    assert s.latest_slot(utc(2026, 7, 1, 6, 0)) == utc(2026, 7, 1, 6, 0)  # 07:00 BST
    assert s.latest_slot(utc(2026, 7, 1, 5, 59)) == utc(2026, 6, 30, 6, 0)


def test_parameters_use_the_slot_local_date() -> None:
    s = make(
        "30 0 * * *", "Asia/Tokyo", parameters={"end": "{{ previous_business_day }}"}
    )  # 00:30 Tokyo on Monday 2026-03-09 is still Sunday in UTC
    assert s.parameters_for(utc(2026, 3, 8, 15, 30)) == {"end": "2026-03-06"}


# ---------------------------------------------------------------------- scheduler
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeRunner:
    """Stands in for run_report: records calls, writes a PDF-like file, or fails."""

    def __init__(self, tmp: Path, *, fail: bool = False, delay: float = 0.0) -> None:
        self.tmp, self.fail, self.delay = tmp, fail, delay
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, report: str, params: dict, **kw: Any) -> RunResult:
        with self.lock:
            self.calls.append({"report": report, "params": params, **kw})
            n = len(self.calls)
        time.sleep(self.delay)
        run_dir = self.tmp / report / f"run-{n}"
        if self.fail:
            raise ReportCellError(
                cell_index=2,
                ename="ValueError",
                evalue="boom",
                notebook_path=str(run_dir.with_name(f"run-{n}.failed") / "x.ipynb"),
                report=report,
            )
        run_dir.mkdir(parents=True)
        (run_dir / "params.pdf").write_bytes(b"%PDF-1.7 fake")
        manifest = {
            "schedule_id": kw.get("schedule_id"),
            "started_at": kw["scheduled_for"].isoformat(),
            "effective_parameters": params,
        }
        (run_dir / "manifest.json").write_text(__import__("json").dumps(manifest))
        return RunResult(
            report,
            f"run-{n}",
            "ok",
            run_dir,
            run_dir / "x.ipynb",
            None,
            run_dir / "params.pdf",
            3,
            manifest,
        )


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(f"sqlite:///{tmp_path / 'h.db'}")


def scheduler(s: Schedule, history: History, clock: Clock, runner: FakeRunner) -> Scheduler:
    return Scheduler([s], history=history, clock=clock, runner=runner, out=runner.tmp)


def test_runs_on_time_then_waits_for_the_next_slot(tmp_path: Path, history: History) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 0, 30)), FakeRunner(tmp_path)
    sch = scheduler(make(parameters={"end": "{{ yesterday }}"}), history, clock, runner)
    [outcome] = sch.tick()
    assert (outcome.action, outcome.trigger, outcome.slot) == (
        "ran",
        "schedule",
        utc(2026, 1, 5, 7),
    )
    assert runner.calls[0]["params"] == {"end": "2026-01-04"}
    assert runner.calls[0]["scheduled_for"] == utc(2026, 1, 5, 7)
    clock.now += timedelta(hours=3)
    assert sch.tick() == []
    clock.now = utc(2026, 1, 6, 7, 1)
    assert [o.action for o in sch.tick()] == ["ran"]
    assert history.last_slot("s") == utc(2026, 1, 6, 7)


def test_missed_slots_are_caught_up_once_for_the_latest(tmp_path: Path, history: History) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 1)), FakeRunner(tmp_path)
    sch = scheduler(make(parameters={"end": "{{ yesterday }}"}), history, clock, runner)
    sch.tick()
    clock.now = utc(2026, 1, 9, 12)  # down from Jan 5 to Jan 9 noon: slots 6, 7, 8, 9 missed
    [outcome] = sch.tick()
    assert (outcome.action, outcome.trigger, outcome.slot) == ("ran", "catchup", utc(2026, 1, 9, 7))
    assert "for 4 missed slot(s)" in outcome.detail
    assert len(runner.calls) == 2
    assert runner.calls[1]["params"] == {"end": "2026-01-08"}
    assert runner.calls[1]["trigger"] == "catchup"
    assert sch.tick() == []  # once, not once per missed slot


def test_no_catch_up_when_disabled(tmp_path: Path, history: History) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 1)), FakeRunner(tmp_path)
    sch = scheduler(make(timing={"catch_up": False}), history, clock, runner)
    sch.tick()
    clock.now = utc(2026, 1, 9, 12)
    [outcome] = sch.tick()
    assert outcome.action == "skipped"
    assert len(runner.calls) == 1
    assert history.last_slot("s") == utc(2026, 1, 9, 7)


def test_a_new_schedule_does_not_run_its_past(tmp_path: Path, history: History) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 15)), FakeRunner(tmp_path)  # 8 h after the slot
    sch = scheduler(make(), history, clock, runner)
    assert [o.action for o in sch.tick()] == ["baseline"]
    assert runner.calls == []
    clock.now = utc(2026, 1, 6, 7, 0, 5)
    assert [o.action for o in sch.tick()] == ["ran"]


def test_a_failed_run_is_recorded_notified_and_not_retried(
    tmp_path: Path, history: History, webhook_server
) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 1)), FakeRunner(tmp_path, fail=True)
    s = make(on_failure=[{"type": "webhook", "url": webhook_server.url}])
    sch = scheduler(s, history, clock, runner)
    [outcome] = sch.tick()
    assert outcome.action == "failed"
    assert "ValueError: boom" in outcome.detail
    assert outcome.deliveries == (f"webhook: {webhook_server.url} (204)",)
    [hook] = webhook_server.received
    assert hook["status"] == "failed"
    assert "FAILED" in hook["text"]
    assert sch.tick() == []


def test_the_same_report_never_runs_twice_at_once(tmp_path: Path, history: History) -> None:
    """Two schedulers (as two processes would) tick the same due slot concurrently."""
    clock = Clock(utc(2026, 1, 5, 7, 0, 10))
    runner = FakeRunner(tmp_path, delay=0.5)
    engine_url = str(history.engine.url)
    a = scheduler(make(), History(engine_url), clock, runner)
    b = scheduler(make(), History(engine_url), clock, runner)
    results: list = []
    threads = [threading.Thread(target=lambda s=s: results.extend(s.tick())) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runner.calls) == 1
    assert sorted(o.action for o in results) in (["busy", "ran"], ["ran", "skipped"])


def test_a_held_lock_makes_the_tick_busy_until_it_expires(tmp_path: Path, history: History) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 1)), FakeRunner(tmp_path)
    assert history.acquire("schedule:s", ttl=timedelta(hours=1), now=datetime.now(UTC))
    history.engine.dispose()
    other = History(str(history.engine.url))
    sch = scheduler(make(), other, clock, runner)
    assert [o.action for o in sch.tick()] == ["busy"]
    assert runner.calls == []
    # A crashed holder: its lock expires and the next tick takes over.
    assert other.acquire("x", ttl=timedelta(seconds=-1))
    assert other.acquire("x", ttl=timedelta(hours=1))


def test_delivery_and_retention_after_a_successful_run(
    tmp_path: Path, history: History, smtp_server
) -> None:
    clock, runner = Clock(utc(2026, 1, 5, 7, 1)), FakeRunner(tmp_path)
    s = make(
        parameters={"start": "{{ previous_month.start }}", "end": "{{ previous_month.end }}"},
        retention={"keep_runs": 2},
        delivery=[
            {"type": "folder", "path": str(tmp_path / "outbox")},
            {
                "type": "email",
                "to": ["exec@example.com"],
                "host": smtp_server.host,
                "port": smtp_server.port,
            },
        ],
    )
    sch = scheduler(s, history, clock, runner)
    [outcome] = sch.tick()
    assert outcome.action == "ran"
    assert (
        tmp_path / "outbox" / "params_2025-12-01_2025-12-31.pdf"
    ).read_bytes() == b"%PDF-1.7 fake"
    [mail] = smtp_server.messages
    assert mail["To"] == "exec@example.com"
    assert "2025-12-01" in mail["Subject"]
    for day in (6, 7):
        clock.now = utc(2026, 1, day, 7, 1)
        sch.tick()
    kept = sorted(p.name for p in (tmp_path / "params").iterdir())
    assert kept == ["run-2", "run-3"]
    assert prune(s, tmp_path / "params", now=clock.now) == []
