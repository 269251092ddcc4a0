"""Report run history in the database, report locks, and the index of past runs.

Tables (SQLAlchemy Core, created on first use; SQLite by default, PostgreSQL by URL):

- ``report_runs``: one row per run, manual or scheduled: status ``running`` -> ``ok`` or
  ``failed``, timings, output folder, error, parameters (JSON), input fingerprint.
- ``report_schedule_state``: per schedule, the last cron slot the scheduler handled (ran or
  deliberately skipped): the basis of "catch up a missed run once".
- ``report_locks``: one row per report currently running; the primary key makes a second
  concurrent run fail to acquire it, across processes and hosts. A lock older than its
  ``expires_at`` (a crashed run) is taken over.

The index (``reports/index.html``, ``obsbench report list``) is built from the
``manifest.json`` files under the output root, so it lists exactly what is on disk.
"""

from __future__ import annotations

import html
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def owner_id() -> str:
    """``host:pid`` of this process (the lock owner)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Tables:
    runs: Table
    state: Table
    locks: Table


def _tables() -> tuple[Any, _Tables]:
    from sqlalchemy import Column, DateTime, Float, MetaData, String, Table, Text

    md = MetaData()
    runs = Table(
        "report_runs",
        md,
        Column("run_id", String(64), primary_key=True),
        Column("report", String(200), nullable=False, index=True),
        Column("schedule_id", String(200), index=True),
        Column("trigger", String(20), nullable=False),
        Column("scheduled_for", DateTime(timezone=True)),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("duration_s", Float),
        Column("status", String(20), nullable=False),
        Column("out_dir", Text),
        Column("pdf", Text),
        Column("error", Text),
        Column("parameters", Text),
        Column("fingerprint", String(80)),
    )
    state = Table(
        "report_schedule_state",
        md,
        Column("schedule_id", String(200), primary_key=True),
        Column("last_slot", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    locks = Table(
        "report_locks",
        md,
        Column("key", String(200), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("run_id", String(64)),
        Column("acquired_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    return md, _Tables(runs, state, locks)


class History:
    """Run history, schedule state and locks in the obsbench database.

    Parameters
    ----------
    url
        SQLAlchemy URL; default ``OBSBENCH_DATABASE_URL`` or SQLite under ``OBSBENCH_HOME``.
    """

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        from obsbench.store import engine as make_engine

        self.engine = engine or make_engine(url)
        md, self.t = _tables()
        md.create_all(self.engine)

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ runs
    def start(
        self,
        *,
        run_id: str,
        report: str,
        trigger: str = "manual",
        schedule_id: str | None = None,
        scheduled_for: datetime | None = None,
        parameters: dict[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Record a run as ``running``."""
        with self.engine.begin() as conn:
            conn.execute(
                self.t.runs.insert().values(
                    run_id=run_id,
                    report=report,
                    trigger=trigger,
                    schedule_id=schedule_id,
                    scheduled_for=_utc(scheduled_for),
                    started_at=_utc(started_at) or datetime.now(UTC),
                    status="running",
                    parameters=json.dumps(parameters or {}, default=str),
                )
            )

    def finish(
        self,
        run_id: str,
        *,
        status: str,
        out_dir: str | None = None,
        pdf: str | None = None,
        error: str | None = None,
        fingerprint: str | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Record the outcome of a run (``ok`` or ``failed``)."""
        from sqlalchemy import select

        end = _utc(finished_at) or datetime.now(UTC)
        with self.engine.begin() as conn:
            started = conn.execute(
                select(self.t.runs.c.started_at).where(self.t.runs.c.run_id == run_id)
            ).scalar_one()
            conn.execute(
                self.t.runs.update()
                .where(self.t.runs.c.run_id == run_id)
                .values(
                    status=status,
                    out_dir=out_dir,
                    pdf=pdf,
                    error=error,
                    fingerprint=fingerprint,
                    finished_at=end,
                    duration_s=(end - _utc(started)).total_seconds(),  # type: ignore[operator]
                )
            )

    def runs(
        self, *, report: str | None = None, schedule_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        from sqlalchemy import select

        query = select(self.t.runs).order_by(self.t.runs.c.started_at.desc()).limit(limit)
        if report:
            query = query.where(self.t.runs.c.report == report)
        if schedule_id:
            query = query.where(self.t.runs.c.schedule_id == schedule_id)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            for key in ("scheduled_for", "started_at", "finished_at"):
                row[key] = _utc(row[key])
            row["parameters"] = json.loads(row["parameters"] or "{}")
        return rows

    # ------------------------------------------------------------------ schedule state
    def last_slot(self, schedule_id: str) -> datetime | None:
        """The last cron slot handled for ``schedule_id``, if any."""
        from sqlalchemy import select

        with self.engine.connect() as conn:
            value = conn.execute(
                select(self.t.state.c.last_slot).where(self.t.state.c.schedule_id == schedule_id)
            ).scalar_one_or_none()
        return _utc(value)

    def set_last_slot(self, schedule_id: str, slot: datetime) -> None:
        """Mark ``slot`` as handled (never moves backwards)."""
        from sqlalchemy import select

        slot = _utc(slot)  # type: ignore[assignment]
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            current = _utc(
                conn.execute(
                    select(self.t.state.c.last_slot).where(
                        self.t.state.c.schedule_id == schedule_id
                    )
                ).scalar_one_or_none()
            )
            if current is None:
                conn.execute(
                    self.t.state.insert().values(
                        schedule_id=schedule_id, last_slot=slot, updated_at=now
                    )
                )
            elif slot > current:
                conn.execute(
                    self.t.state.update()
                    .where(self.t.state.c.schedule_id == schedule_id)
                    .values(last_slot=slot, updated_at=now)
                )

    # ------------------------------------------------------------------ locks
    def acquire(
        self, key: str, *, ttl: timedelta, run_id: str | None = None, now: datetime | None = None
    ) -> bool:
        """Take the lock ``key``; ``False`` if another live run holds it."""
        from sqlalchemy import delete
        from sqlalchemy.exc import IntegrityError

        now = _utc(now) or datetime.now(UTC)
        with self.engine.begin() as conn:  # drop an expired lock (a crashed run) first
            conn.execute(
                delete(self.t.locks).where(
                    (self.t.locks.c.key == key) & (self.t.locks.c.expires_at < now)
                )
            )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    self.t.locks.insert().values(
                        key=key,
                        owner=owner_id(),
                        run_id=run_id,
                        acquired_at=now,
                        expires_at=now + ttl,
                    )
                )
        except IntegrityError:
            return False
        return True

    def release(self, key: str) -> None:
        """Release the lock ``key`` if this process holds it."""
        from sqlalchemy import delete

        with self.engine.begin() as conn:
            conn.execute(
                delete(self.t.locks).where(
                    (self.t.locks.c.key == key) & (self.t.locks.c.owner == owner_id())
                )
            )

    def held(self) -> list[dict[str, Any]]:
        """The locks currently held."""
        from sqlalchemy import select

        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(self.t.locks))]


# ---------------------------------------------------------------------- index of runs
def collect_manifests(root: Path) -> list[dict[str, Any]]:
    """Every run manifest under ``root`` (``<report>/<run-id>/manifest.json``), newest first.

    Partial runs (hidden ``.<run-id>.partial`` folders) are not listed.
    """
    out = []
    for path in Path(root).glob("*/*/manifest.json"):
        if path.parent.name.startswith("."):
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        doc["_dir"] = str(path.parent)
        out.append(doc)
    return sorted(out, key=lambda d: str(d.get("started_at", "")), reverse=True)


def write_index(root: Path) -> Path:
    """Write ``root/index.html``: one row per past run with links to its PDF, HTML and notebook.

    Written atomically (temporary file + rename); the dashboards' reports page embeds it.
    """
    root = Path(root)
    rows = []
    for doc in collect_manifests(root):
        run_dir = Path(doc["_dir"])
        rel = run_dir.relative_to(root).as_posix()
        links = []
        for label, key in (("PDF", "pdf"), ("HTML", "html"), ("notebook", "notebook")):
            name = (doc.get("outputs") or {}).get(key)
            if name:
                links.append(f'<a href="{html.escape(rel)}/{html.escape(name)}">{label}</a>')
        status = str(doc.get("status", "?"))
        error = doc.get("error") or {}
        detail = html.escape(error.get("message", "")) if isinstance(error, dict) else ""
        params = ", ".join(f"{k}={v}" for k, v in (doc.get("parameters") or {}).items())
        total = (doc.get("timings_s") or {}).get("total")
        rows.append(
            f'<tr class="{html.escape(status)}"><td>{html.escape(str(doc.get("report", "")))}</td>'
            f"<td>{html.escape(str(doc.get('run_id', '')))}</td>"
            f"<td>{html.escape(str(doc.get('started_at', ''))[:19].replace('T', ' '))}</td>"
            f'<td class="status">{html.escape(status)}</td>'
            f"<td>{html.escape(params)}</td>"
            f'<td class="num">{"" if total is None else f"{total:,.1f} s"}</td>'
            f"<td>{' · '.join(links)}{f'<br><small>{detail}</small>' if detail else ''}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7">No report runs yet.</td></tr>'
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>obsbench reports</title>'
        "<style>body{font:14px/1.4 'DejaVu Sans',sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;width:100%}th,td{padding:.35em .6em;"
        "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
        "th{background:#1f4e79;color:#fff}.num{text-align:right}"
        "tr.failed .status{color:#b00;font-weight:bold}tr.ok .status{color:#2c7c5b}</style>"
        "</head><body><h1>Report runs</h1><table><thead><tr><th>report</th><th>run</th>"
        "<th>started (UTC)</th><th>status</th><th>parameters</th><th>time</th><th>files</th>"
        f"</tr></thead><tbody>{body}</tbody></table></body></html>"
    )
    root.mkdir(parents=True, exist_ok=True)
    target, tmp = root / "index.html", root / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    return target
