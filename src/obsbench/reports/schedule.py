"""Scheduled reports: ``scheduled/*.yaml``, cron slots in a time zone, catch-up, no overlap.

One YAML file per scheduled report::

    id: sla-monthly                 # default: the file name
    report: sla                     # notebooks/sla.ipynb
    schedule:
      cron: "0 7 2 * *"             # minute hour day-of-month month day-of-week
      timezone: Europe/London       # always explicit
      catch_up: true                # after downtime, run the latest missed slot once
      misfire_grace_s: 3600         # later than this counts as a catch-up run
    parameters:                     # Jinja2 date templates, see obsbench.reports.dates
      start: "{{ previous_month.start }}"
      end: "{{ previous_month.end }}"
    holidays: ["2024-12-25"]        # for previous_business_day
    retention: {keep_runs: 12}      # prune older runs of this schedule
    delivery:                       # see obsbench.reports.delivery
      - {type: folder, path: /srv/reports/sla}
      - {type: email, to: [execs@example.com]}
    on_failure:
      - {type: webhook, url: "http://127.0.0.1:9000/hook"}

Cron semantics are standard cron (croniter) evaluated on the **local wall clock** of the
time zone: a slot whose wall time does not exist (spring forward) runs once, one gap
later (01:30 -> 02:30 summer time); a wall time that occurs twice (fall back) runs once,
at its first occurrence. Day-of-week must use names (``mon-fri``), never numbers:
APScheduler 3.x reads ``1-5`` as Tuesday-Saturday, and these files must mean the same to
any engine that reads them.

:class:`Scheduler` runs what is due: for each schedule it takes the latest slot at or
before *now* that is newer than the last handled slot, so after downtime a missed run is
caught up **once** (not once per missed slot). The run history and the last handled slot
live in the database (:class:`~obsbench.reports.history.History`), and a database lock per
schedule keeps the same report from running twice at once, across processes.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from obsbench.errors import ConfigError, ObsbenchError, UnknownName
from obsbench.log import get_logger
from obsbench.reports.dates import date_context, render_values

if TYPE_CHECKING:
    from obsbench.reports.history import History
    from obsbench.reports.runner import RunResult

log = get_logger(__name__)

_NUMERIC_DOW = re.compile(r"(^|[,\-/])\d")


class Timing(BaseModel):
    """When a report runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str
    timezone: str
    catch_up: bool = True
    misfire_grace_s: int = Field(default=3600, ge=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        fields = value.split()
        if len(fields) != 5:
            msg = f"{value!r} must have 5 fields: minute hour day-of-month month day-of-week"
            raise ValueError(msg)
        dow = fields[4]
        if dow not in ("*", "?") and _NUMERIC_DOW.search(dow.replace("*/", "")):
            msg = (
                f"day-of-week {dow!r} is numeric; write names (mon-fri, sun): engines disagree "
                "on numbers (APScheduler 3.x reads 1-5 as tue-sat)"
            )
            raise ValueError(msg)
        if not croniter.is_valid(value):
            msg = f"{value!r} is not a valid cron expression"
            raise ValueError(msg)
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
            raise ValueError(msg) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Retention(BaseModel):
    """How many runs of a schedule to keep on disk (failed runs count too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_runs: int | None = Field(default=None, ge=1)
    keep_days: int | None = Field(default=None, ge=1)


class Schedule(BaseModel):
    """One scheduled report (one ``scheduled/*.yaml`` file); immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    report: str
    description: str = ""
    schedule: Timing
    parameters: dict[str, Any] = Field(default_factory=dict)
    holidays: tuple[date, ...] = ()
    retention: Retention = Field(default_factory=Retention)
    delivery: tuple[dict[str, Any], ...] = ()
    on_failure: tuple[dict[str, Any], ...] = ()
    timeout_s: float = Field(default=900, gt=0)
    page_size: Literal["A4", "Letter"] = "A4"
    enabled: bool = True
    source: str | None = None

    def with_parameters(self, **values: Any) -> Schedule:
        """A copy with these parameters added or replaced."""
        return self.model_copy(update={"parameters": {**self.parameters, **values}})

    # ------------------------------------------------------------------ slots
    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Cron slots strictly after ``after`` (aware), as UTC datetimes, ascending."""
        from croniter import croniter

        tz = self.schedule.tz
        after = _aware(after)
        # Start two hours early on the local wall clock so a fall-back hour is not skipped.
        local = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=2)
        it = croniter(self.schedule.cron, local)
        last: datetime | None = None
        while True:
            wall = it.get_next(datetime)
            slot = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: first occurrence / +gap
            if slot <= after or (last is not None and slot <= last):
                continue
            last = slot
            yield slot

    def next_runs(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next ``count`` slots after ``after``."""
        it = self.fire_times(after)
        return [next(it) for _ in range(count)]

    def latest_slot(self, now: datetime) -> datetime:
        """The latest slot at or before ``now``."""
        from croniter import croniter

        now = _aware(now)
        tz = self.schedule.tz
        local = now.astimezone(tz).replace(tzinfo=None) + timedelta(minutes=1)
        it = croniter(self.schedule.cron, local)
        while True:
            wall = it.get_prev(datetime)
            slot = wall.replace(tzinfo=tz).astimezone(UTC)
            if slot <= now:
                return slot

    def parameters_for(self, slot: datetime) -> dict[str, Any]:
        """The parameters of the run for ``slot``, date templates rendered."""
        local = _aware(slot).astimezone(self.schedule.tz)
        return render_values(self.parameters, date_context(local, self.holidays))

    def template_context(self, slot: datetime) -> dict[str, Any]:
        """Date variables for ``slot`` (also used by delivery templates)."""
        return date_context(_aware(slot).astimezone(self.schedule.tz), self.holidays)


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def load_schedule(path: Path | str) -> Schedule:
    """Read and validate one schedule file.

    Raises
    ------
    ConfigError
        Naming the file and every invalid field.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read schedule {path}: {exc}"
        raise ConfigError(msg, hint="fix the YAML syntax.") from None
    if not isinstance(doc, dict):
        msg = f"schedule {path} must be a mapping"
        raise ConfigError(msg, hint="see docs/reports.md for the format.")
    doc.setdefault("id", path.stem)
    doc["source"] = str(path)
    try:
        return Schedule.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        msg = f"invalid schedule {path.name}: {problems}"
        raise ConfigError(msg, hint="see docs/reports.md for the schedule format.") from None


def scheduled_dir(path: Path | str | None = None) -> Path:
    """The ``scheduled/`` folder: ``path``, or beside the notebooks folder."""
    if path is not None:
        return Path(path)
    from obsbench.reports.runner import notebooks_dir

    return notebooks_dir().resolve().parent / "scheduled"


def load_schedules(folder: Path | str | None = None) -> list[Schedule]:
    """Every ``*.yaml``/``*.yml`` schedule in ``folder``, sorted by id.

    Raises
    ------
    ConfigError
        For an invalid file or two files with the same id.
    """
    base = scheduled_dir(folder)
    schedules = [load_schedule(p) for p in sorted([*base.glob("*.yaml"), *base.glob("*.yml")])]
    seen: dict[str, str] = {}
    for s in schedules:
        if s.id in seen:
            msg = f"schedule id {s.id!r} is used by {seen[s.id]} and {s.source}"
            raise ConfigError(msg, hint="give each file a unique id.")
        seen[s.id] = str(s.source)
    return sorted(schedules, key=lambda s: s.id)


# ---------------------------------------------------------------------- scheduler
@dataclass(frozen=True)
class Due:
    """A schedule with a slot to run now."""

    schedule: Schedule
    slot: datetime
    trigger: Literal["schedule", "catchup"]
    missed: int


@dataclass(frozen=True)
class Outcome:
    """What a tick did for one schedule."""

    schedule_id: str
    slot: datetime | None
    action: Literal["ran", "failed", "skipped", "baseline", "busy"]
    trigger: str = ""
    run_id: str | None = None
    detail: str = ""
    deliveries: tuple[str, ...] = ()


Runner = Callable[..., "RunResult"]


class Scheduler:
    """Runs due scheduled reports.

    Parameters
    ----------
    schedules
        The schedules (see :func:`load_schedules`).
    history
        Run history, schedule state and locks.
    clock
        Returns the current aware time (injectable for tests).
    runner
        :func:`obsbench.reports.runner.run_report` or a stand-in with its signature.
    out, notebooks
        Passed to the runner.
    lock_ttl
        How long a run's lock lives before another process may take it over (a crashed run).
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        *,
        history: History,
        clock: Callable[[], datetime] | None = None,
        runner: Runner | None = None,
        out: Path | str | None = None,
        notebooks: Path | str | None = None,
        lock_ttl: timedelta | None = None,
        isolate_pdf: bool = True,
    ) -> None:
        self.schedules = {s.id: s for s in schedules}
        self.history = history
        self.clock = clock or (lambda: datetime.now(UTC))
        self._runner = runner
        self.out = out
        self.notebooks = notebooks
        self.lock_ttl = lock_ttl
        self.isolate_pdf = isolate_pdf

    def get(self, schedule_id: str) -> Schedule:
        """The schedule ``schedule_id``."""
        try:
            return self.schedules[schedule_id]
        except KeyError:
            kind = "schedule"
            raise UnknownName.from_choices(kind, schedule_id, self.schedules) from None

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from obsbench.reports.runner import run_report

            self._runner = run_report
        return self._runner

    # ------------------------------------------------------------------ what is due
    def due(self, schedule: Schedule, now: datetime | None = None) -> Due | Outcome | None:
        """The slot ``schedule`` should run now, an :class:`Outcome` if it is skipped, or None."""
        now = _aware(now or self.clock())
        latest = schedule.latest_slot(now)
        last = self.history.last_slot(schedule.id)
        grace = timedelta(seconds=schedule.schedule.misfire_grace_s)
        late = now - latest > grace
        if last is None:
            if late:  # a new schedule: start from here, do not run history
                return Outcome(schedule.id, latest, "baseline", detail="first seen; next slot on")
            return Due(schedule, latest, "schedule", 0)
        if latest <= last:
            return None
        missed = _count_between(schedule, last, latest)
        if late and not schedule.schedule.catch_up:
            return Outcome(schedule.id, latest, "skipped", detail=f"missed {missed + 1} slot(s)")
        trigger: Literal["schedule", "catchup"] = "catchup" if late or missed else "schedule"
        return Due(schedule, latest, trigger, missed)

    # ------------------------------------------------------------------ running
    def tick(self, now: datetime | None = None, *, only: str | None = None) -> list[Outcome]:
        """Run every due schedule once (sequentially) and return what happened."""
        outcomes: list[Outcome] = []
        for schedule in self.schedules.values():
            if not schedule.enabled or (only and schedule.id != only):
                continue
            found = self.due(schedule, now)
            if found is None:
                continue
            if isinstance(found, Outcome):
                self.history.set_last_slot(schedule.id, found.slot)  # type: ignore[arg-type]
                log.info("schedule %s: %s (%s)", schedule.id, found.action, found.detail)
                outcomes.append(found)
                continue
            outcomes.append(self._run_due(found, now))
        return outcomes

    def run_now(self, schedule_id: str, *, slot: datetime | None = None) -> Outcome:
        """Run ``schedule_id`` for ``slot`` (default: its latest slot) regardless of history."""
        schedule = self.get(schedule_id)
        slot = slot or schedule.latest_slot(self.clock())
        return self._run_due(Due(schedule, slot, "schedule", 0), None, manual=True)

    def _run_due(self, due: Due, now: datetime | None, *, manual: bool = False) -> Outcome:
        s = due.schedule
        key = f"schedule:{s.id}"
        ttl = self.lock_ttl or timedelta(seconds=s.timeout_s * 3 + 600)
        if not self.history.acquire(key, ttl=ttl):
            return Outcome(s.id, due.slot, "busy", due.trigger, detail="already running")
        try:
            if not manual:  # another process may have handled the slot meanwhile
                last = self.history.last_slot(s.id)
                if last is not None and due.slot <= last:
                    return Outcome(s.id, due.slot, "skipped", due.trigger, detail="already done")
            return self._run_locked(due, manual=manual)
        finally:
            self.history.release(key)

    def _run_locked(self, due: Due, *, manual: bool) -> Outcome:
        from obsbench.reports.delivery import DeliveryContext, deliver_all

        s = due.schedule
        trigger = "manual" if manual else due.trigger
        try:
            params = s.parameters_for(due.slot)
        except ObsbenchError as exc:
            self.history.set_last_slot(s.id, due.slot)
            return Outcome(s.id, due.slot, "failed", trigger, detail=exc.message)
        ctx_dates = s.template_context(due.slot)
        try:
            result = self.runner(
                s.report,
                params,
                out=self.out,
                notebooks=self.notebooks,
                history=self.history,
                trigger=trigger,
                schedule_id=s.id,
                scheduled_for=due.slot,
                timeout_s=s.timeout_s,
                page_size=s.page_size,
                isolate_pdf=self.isolate_pdf,
            )
        except ObsbenchError as exc:
            if not manual:
                self.history.set_last_slot(s.id, due.slot)
            ctx = DeliveryContext.failure(s, due.slot, params, exc, ctx_dates)
            sent = deliver_all(s.on_failure, ctx)
            return Outcome(s.id, due.slot, "failed", trigger, detail=exc.message, deliveries=sent)
        if not manual:
            self.history.set_last_slot(s.id, due.slot)
        sent = deliver_all(s.delivery, DeliveryContext.success(s, due.slot, result, ctx_dates))
        prune(s, Path(result.out_dir).parent, now=self.clock())
        detail = f"caught up 1 run for {due.missed + 1} missed slot(s)" if due.missed else ""
        return Outcome(
            s.id, due.slot, "ran", trigger, result.run_id, detail=detail, deliveries=sent
        )

    def run_forever(
        self, *, poll_s: float = 30.0, stop: threading.Event | None = None
    ) -> None:  # pragma: no cover - loop around tick(), which is tested
        """Tick every ``poll_s`` seconds until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.tick()
            except ObsbenchError as exc:
                log.error("scheduler tick failed: %s", exc.message)
            stop.wait(poll_s)


def _count_between(schedule: Schedule, last: datetime, latest: datetime, cap: int = 10_000) -> int:
    """Slots strictly between ``last`` and ``latest`` (capped): what a catch-up replaces."""
    n = 0
    for slot in schedule.fire_times(last):
        if slot >= latest or n >= cap:
            break
        n += 1
    return n


def prune(schedule: Schedule, report_dir: Path, *, now: datetime | None = None) -> list[Path]:
    """Delete runs of ``schedule`` beyond its retention (newest kept); returns what was deleted."""
    import json

    keep_runs, keep_days = schedule.retention.keep_runs, schedule.retention.keep_days
    if keep_runs is None and keep_days is None:
        return []
    now = _aware(now or datetime.now(UTC))
    runs: list[tuple[str, Path]] = []
    for manifest in Path(report_dir).glob("*/manifest.json"):
        if manifest.parent.name.startswith("."):
            continue
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if doc.get("schedule_id") == schedule.id:
            runs.append((str(doc.get("started_at", "")), manifest.parent))
    runs.sort(reverse=True)
    deleted = []
    for i, (started, folder) in enumerate(runs):
        too_many = keep_runs is not None and i >= keep_runs
        too_old = (
            keep_days is not None
            and started
            and (now - datetime.fromisoformat(started) > timedelta(days=keep_days))
        )
        if too_many or too_old:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
    return deleted
