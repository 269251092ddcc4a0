"""The ``obsbench`` command.

Every sub-command is a thin shell over the library: it parses options, calls obsbench and
renders the result with rich. Errors derived from :class:`~obsbench.errors.ObsbenchError`
are printed as one red block (message and hint) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from obsbench.errors import ObsbenchError

app = typer.Typer(
    name="obsbench",
    help="Observability workbench for an algorithmic-trading platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="obsbench home (default: OBSBENCH_HOME or ~/.obsbench)."),
]


def _friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn obsbench errors into a short message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from obsbench.log import configure, correlation

        try:
            configure()
            with correlation():
                return fn(*args, **kwargs)
        except ObsbenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}")
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {exc.hint}")
            raise typer.Exit(code=2) from None

    return wrapper


def _store(home: Path | None):
    from obsbench.store import Store

    return Store(home)


@app.command()
@_friendly_errors
def sim(
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of history to simulate.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: DAYS before today).")
    ] = None,
    home: HomeOption = None,
    replace: Annotated[bool, typer.Option(help="Clear the store first.")] = True,
) -> None:
    """Simulate DAYS of platform history into the embedded store."""
    counts = _simulate(days=days, seed=seed, start=start, home=home, replace=replace)
    _print_counts(counts, title=f"Simulated {days} day(s), seed {seed}")


def _simulate(
    *, days: int, seed: int, start: str | None, home: Path | None, replace: bool
) -> dict[str, int]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from obsbench import sim as simulator

    first = _parse_day(start) if start else None
    config = simulator.SimConfig(seed=seed, days=days, **({"start": first} if first else {}))
    store = _store(home)
    if replace:
        store.clear()
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("day {task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("sim", total=days)
        simulator.write_history(
            store, config, progress=lambda done, total: progress.update(task, completed=done)
        )
    return store.counts()


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not a date; use YYYY-MM-DD"
        raise typer.BadParameter(msg) from None


def _print_counts(counts: dict[str, int], *, title: str) -> None:
    table = Table(title=title)
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


@app.command()
@_friendly_errors
def demo(
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of history to simulate.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    home: HomeOption = None,
    port: Annotated[int, typer.Option(help="Port of the dashboards.")] = 5006,
    address: Annotated[str, typer.Option(help="Address the dashboards listen on.")] = "127.0.0.1",
    interval: Annotated[
        float, typer.Option(min=0.1, max=5.0, help="Live tick and refresh, seconds.")
    ] = 1.0,
    incident_every: Annotated[
        float, typer.Option("--incident-every", min=1.0, help="Minutes between incidents.")
    ] = 6.0,
    users: Annotated[
        Path | None,
        typer.Option(exists=True, help="Users file (default: fresh demo users, printed)."),
    ] = None,
    alerts: Annotated[bool, typer.Option(help="Run the alert evaluator (shipped rules).")] = True,
    summary: Annotated[
        bool,
        typer.Option("--summary", "--no-serve", help="Only simulate history and print a summary."),
    ] = False,
) -> None:
    """The live demo: history, live ticks, incidents, alerts, dashboards on http://localhost:5006."""
    if summary:
        counts = _simulate(days=days, seed=seed, start=None, home=home, replace=True)
        _print_counts(counts, title=f"Embedded store: {_store(home).root}")
        _print_strategy_summary(home)
        return
    from obsbench.dashboards._cli import run_demo

    run_demo(
        days=days,
        seed=seed,
        home=home,
        port=port,
        address=address,
        interval=interval,
        incident_every=incident_every,
        users=users,
        evaluate=alerts,
    )


def _print_strategy_summary(home: Path | None) -> None:
    import polars as pl

    from obsbench import metrics

    returns = _store(home).scan("returns")
    summary = metrics.strategy_summary(returns)
    if isinstance(summary, pl.LazyFrame):
        summary = summary.collect()
    shown = ["strategy", "total_return", "sharpe_ratio", "max_drawdown", "value_at_risk"]
    table = Table(title="Strategies (daily returns)")
    for col in shown:
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for row in summary.sort("sharpe_ratio", descending=True).select(shown).iter_rows():
        table.add_row(row[0], *(f"{v:,.4f}" if v is not None else "-" for v in row[1:]))
    console.print(table)


@app.command()
@_friendly_errors
def info(home: HomeOption = None) -> None:
    """Show the configuration and what the embedded store holds."""
    from obsbench.config import get_settings

    settings = get_settings(**({"home": home} if home else {}))
    table = Table(title="obsbench configuration", show_header=False)
    table.add_row("OBSBENCH_HOME", str(settings.home))
    table.add_row("OBSBENCH_DATABASE_URL", _redacted(settings.database))
    table.add_row("OBSBENCH_PROMETHEUS_URL", settings.prometheus_url or "(unset)")
    table.add_row("OBSBENCH_LOG_LEVEL", settings.log_level)
    console.print(table)
    counts = _store(settings.home).counts()
    if counts:
        _print_counts(counts, title=f"Store {settings.data_dir}")
    else:
        console.print(f"The store at {settings.data_dir} is empty: run `obsbench sim`.")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _register_reports() -> None:
    from obsbench.reports._cli import register

    register(app)


_register_reports()  # report, schedule, lab (heavy imports stay inside those commands)


def _register_audit() -> None:
    from obsbench.audit._cli import register

    register(app)


_register_audit()  # audit verify/search/ingest/export/... (SQLAlchemy only inside commands)


def _register_alerts() -> None:
    from obsbench.alerts._cli import register

    register(app)


_register_alerts()  # alerts check/run/backtest/silence/ack/list (SQLAlchemy only inside commands)


def _register_dashboards() -> None:
    from obsbench.dashboards._cli import serve

    app.command("serve")(_friendly_errors(serve))


_register_dashboards()  # serve (Panel only inside the command)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
