"""``obsbench report``, ``obsbench schedule`` and ``obsbench lab`` (registered by obsbench.cli).

Thin shells over :mod:`obsbench.reports`: parse options, call the library, print with rich.
Heavy modules (papermill, nbconvert, WeasyPrint, SQLAlchemy) are imported inside the
commands.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from obsbench.errors import ReportError

console = Console()
err_console = Console(stderr=True)


def _friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """obsbench.cli's error handling, looked up at call time (obsbench.cli imports this module)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from obsbench.cli import _friendly_errors as friendly

        return friendly(fn)(*args, **kwargs)

    return wrapper


P = ParamSpec("P")
R = TypeVar("R")

report_app = typer.Typer(
    help="Run report notebooks to PDF and list past runs.", no_args_is_help=True
)
schedule_app = typer.Typer(help="Scheduled reports (scheduled/*.yaml).", no_args_is_help=True)

OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Output root (default: reports/ beside notebooks/)."),
]
NotebooksOption = Annotated[
    Path | None,
    typer.Option("--notebooks", help="Folder of report notebooks (default: ./notebooks)."),
]
ScheduledOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Folder of schedule files (default: scheduled/)."),
]


@report_app.command("run")
@_friendly_errors
def report_run(
    name: Annotated[str, typer.Argument(help="Report name (notebooks/NAME.ipynb) or a path.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A parameter as name=value (repeatable)."),
    ] = None,
    out: OutOption = None,
    notebooks: NotebooksOption = None,
    page_size: Annotated[str, typer.Option(help="A4 or Letter.")] = "A4",
    interactive: Annotated[
        bool, typer.Option(help="Keep interactive charts (the PDF shows static ones).")
    ] = False,
    isolate_pdf: Annotated[
        bool, typer.Option(help="Render the PDF in a child process (long reports).")
    ] = False,
) -> None:
    """Execute a report notebook with parameters into HTML and PDF."""
    from obsbench.reports.params import parse_assignments
    from obsbench.reports.runner import run_report

    values: dict[str, object] = dict(parse_assignments(param or []))
    with console.status(f"running report {name}") as status:
        result = run_report(
            name,
            values,
            out=out,
            notebooks=notebooks,
            page_size=page_size,
            report_mode=not interactive,
            isolate_pdf=isolate_pdf,
            on_stage=lambda stage: status.update(f"report {name}: {stage}"),
        )
    t = result.timings
    console.print(f"[green]ok[/] {result.report} run {result.run_id}: {result.pages} page(s)")
    console.print(f"PDF      {result.pdf}")
    console.print(f"HTML     {result.html}")
    console.print(f"notebook {result.notebook}")
    console.print(
        f"time     {t['total']:.1f} s (execute {t['execute']:.1f}, html {t['html']:.1f}, "
        f"pdf {t['pdf']:.1f})"
    )


@report_app.command("list")
@_friendly_errors
def report_list(
    out: OutOption = None,
    notebooks: NotebooksOption = None,
    report: Annotated[str | None, typer.Option(help="Only this report.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 30,
    available: Annotated[
        bool, typer.Option("--available", help="List the report notebooks instead of runs.")
    ] = False,
) -> None:
    """List past report runs (newest first) and write the HTML index page."""
    from obsbench.reports.history import collect_manifests, write_index
    from obsbench.reports.runner import list_notebooks, notebooks_dir, reports_dir

    if available:
        table = Table(title=f"Report notebooks in {notebooks_dir(notebooks)}")
        table.add_column("report")
        table.add_column("parameters")
        from obsbench.reports.params import inspect_parameters

        for path in list_notebooks(notebooks):
            table.add_row(path.stem, ", ".join(inspect_parameters(path)))
        console.print(table)
        return
    root = reports_dir(out, notebooks=notebooks_dir(notebooks))
    runs = [m for m in collect_manifests(root) if report is None or m.get("report") == report]
    table = Table(title=f"Report runs in {root}")
    for column in ("report", "run", "started (UTC)", "status", "pages", "time", "PDF or error"):
        table.add_column(column, justify="right" if column in ("pages", "time") else "left")
    for doc in runs[:limit]:
        total = (doc.get("timings_s") or {}).get("total")
        pdf = (doc.get("outputs") or {}).get("pdf")
        status = str(doc.get("status"))
        detail = (
            str(Path(doc["_dir"]) / pdf)
            if pdf
            else (doc.get("error") or {}).get("message", "").split("\n")[0]
        )
        table.add_row(
            str(doc.get("report")),
            str(doc.get("run_id")),
            str(doc.get("started_at", ""))[:19].replace("T", " "),
            f"[green]{status}[/]" if status == "ok" else f"[red]{status}[/]",
            str(doc.get("pages") or ""),
            f"{total:.1f} s" if total is not None else "",
            detail,
        )
    console.print(table)
    if root.exists():
        console.print(f"index: {write_index(root)}")


@report_app.command("params")
@_friendly_errors
def report_params(
    name: Annotated[str, typer.Argument(help="Report name or notebook path.")],
    notebooks: NotebooksOption = None,
) -> None:
    """Show the parameters a report notebook declares (name, type, default, help)."""
    from obsbench.reports.params import inspect_parameters
    from obsbench.reports.runner import find_notebook

    path = find_notebook(name, notebooks)
    specs = inspect_parameters(path)
    table = Table(title=f"Parameters of {path.name}")
    for column in ("name", "type", "default", "help"):
        table.add_column(column)
    for spec in specs.values():
        table.add_row(
            spec.name,
            escape("date" if spec.is_date else spec.type),
            escape(repr(spec.default)),
            escape(spec.help),
        )
    console.print(table)


# ---------------------------------------------------------------------- schedule
def _scheduler(folder: Path | None, out: Path | None, notebooks: Path | None):
    from obsbench.reports.history import History
    from obsbench.reports.schedule import Scheduler, load_schedules, scheduled_dir

    schedules = load_schedules(scheduled_dir(folder))
    return Scheduler(schedules, history=History(), out=out, notebooks=notebooks)


@schedule_app.command("list")
@_friendly_errors
def schedule_list(folder: ScheduledOption = None) -> None:
    """List the scheduled reports with their next run and last result."""
    from obsbench.reports.history import History
    from obsbench.reports.schedule import load_schedules, scheduled_dir

    schedules = load_schedules(scheduled_dir(folder))
    history = History()
    now = datetime.now(UTC)
    table = Table(title=f"Schedules in {scheduled_dir(folder)}")
    for column in ("id", "report", "cron", "time zone", "next run (local)", "last run"):
        table.add_column(column)
    for s in schedules:
        nxt = s.next_runs(now, 1)[0].astimezone(s.schedule.tz)
        runs = history.runs(schedule_id=s.id, limit=1)
        last = f"{runs[0]['status']} {runs[0]['started_at']:%Y-%m-%d %H:%M}" if runs else "never"
        table.add_row(
            s.id + ("" if s.enabled else " (disabled)"),
            s.report,
            s.schedule.cron,
            s.schedule.timezone,
            f"{nxt:%a %Y-%m-%d %H:%M %Z}",
            last,
        )
    console.print(table)


@schedule_app.command("next")
@_friendly_errors
def schedule_next(
    schedule_id: Annotated[str | None, typer.Argument(help="One schedule (default: all).")] = None,
    count: Annotated[int, typer.Option(min=1, max=100, help="Slots per schedule.")] = 5,
    folder: ScheduledOption = None,
) -> None:
    """Show the next run times and the parameters each run would get."""
    from obsbench.reports.schedule import load_schedules, scheduled_dir

    now = datetime.now(UTC)
    schedules = [s for s in load_schedules(scheduled_dir(folder)) if schedule_id in (None, s.id)]
    if schedule_id and not schedules:
        from obsbench.errors import UnknownName

        known = [s.id for s in load_schedules(scheduled_dir(folder))]
        kind = "schedule"
        raise UnknownName.from_choices(kind, schedule_id, known)
    table = Table(title="Next runs")
    for column in ("id", "local time", "UTC", "parameters"):
        table.add_column(column)
    for s in schedules:
        for slot in s.next_runs(now, count):
            params = ", ".join(f"{k}={v}" for k, v in s.parameters_for(slot).items())
            table.add_row(
                s.id,
                f"{slot.astimezone(s.schedule.tz):%a %Y-%m-%d %H:%M %Z}",
                f"{slot:%Y-%m-%d %H:%M}",
                params,
            )
    console.print(table)


@schedule_app.command("run")
@_friendly_errors
def schedule_run(
    once: Annotated[
        bool, typer.Option("--once", help="Run what is due now, then exit (cron/systemd).")
    ] = False,
    now_id: Annotated[
        str | None, typer.Option("--now", help="Run this schedule now, due or not.")
    ] = None,
    poll: Annotated[float, typer.Option(min=1.0, help="Seconds between checks.")] = 30.0,
    folder: ScheduledOption = None,
    out: OutOption = None,
    notebooks: NotebooksOption = None,
) -> None:
    """Run due scheduled reports: once, or continuously until interrupted."""
    scheduler = _scheduler(folder, out, notebooks)
    if now_id:
        outcomes = [scheduler.run_now(now_id)]
    elif once:
        outcomes = scheduler.tick()
    else:  # pragma: no cover - long-running loop
        console.print(f"scheduler: {len(scheduler.schedules)} schedule(s), every {poll:.0f} s")
        try:
            scheduler.run_forever(poll_s=poll)
        except KeyboardInterrupt:
            console.print("stopped")
        return
    for o in outcomes:
        colour = {"ran": "green", "failed": "red"}.get(o.action, "yellow")
        slot = f"{o.slot:%Y-%m-%d %H:%M} UTC" if o.slot else ""
        console.print(
            f"[{colour}]{o.action}[/] {o.schedule_id} {slot} {o.trigger} {o.run_id or ''} "
            f"{o.detail}".rstrip()
        )
        for d in o.deliveries:
            console.print(f"    {d}")
    if not outcomes:
        console.print("nothing due")
    if any(o.action == "failed" for o in outcomes):
        raise typer.Exit(code=1)


# ---------------------------------------------------------------------- lab
def lab(
    notebooks: NotebooksOption = None,
    port: Annotated[int | None, typer.Option(help="Port (default: Jupyter's choice).")] = None,
    browser: Annotated[bool, typer.Option(help="Open a browser.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command instead of starting JupyterLab.")
    ] = False,
) -> None:
    """Open JupyterLab on notebooks/ with the project's kernel."""
    import importlib.util

    from obsbench.reports.runner import KERNEL_NAME, ensure_kernel, notebooks_dir

    folder = notebooks_dir(notebooks).resolve()
    if not folder.is_dir():
        msg = f"no notebooks folder at {folder}"
        raise ReportError(msg, hint="run from the repository, or pass --notebooks.")
    ensure_kernel()
    cmd = [
        sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
    ]  # fmt: skip
    if port:
        cmd.append(f"--port={port}")
    if not browser:
        cmd.append("--no-browser")
    if dry_run:
        console.print(" ".join(cmd))
        return
    if importlib.util.find_spec("jupyterlab") is None:
        msg = "JupyterLab is not installed"
        raise ReportError(msg, hint="pip install 'obsbench[lab]'.")
    err_console.print(f"JupyterLab on {folder} (kernel {KERNEL_NAME}); Ctrl-C to stop")
    raise typer.Exit(subprocess.call(cmd, env={**os.environ}))  # pragma: no cover


def register(app: typer.Typer) -> None:
    """Attach ``report``, ``schedule`` and ``lab`` to the ``obsbench`` app."""
    app.add_typer(report_app, name="report")
    app.add_typer(schedule_app, name="schedule")
    app.command("lab")(_friendly_errors(lab))
