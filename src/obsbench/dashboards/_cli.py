"""``obsbench serve`` and the live ``obsbench demo`` (registered by :mod:`obsbench.cli`).

Thin shells: options in, :mod:`obsbench.dashboards` calls out. Panel is imported only when a
command runs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from obsbench.dashboards import memory

# Own consoles (not obsbench.cli's): obsbench.cli imports this module to register `serve`.
console = Console()
err_console = Console(stderr=True)

PortOption = Annotated[int, typer.Option("--port", help="HTTP port.")]
AddressOption = Annotated[
    str, typer.Option("--address", help="Address to listen on (0.0.0.0 for every interface).")
]
IntervalOption = Annotated[
    float,
    typer.Option("--interval", min=0.1, max=5.0, help="Live refresh in seconds (at most 5 s)."),
]


def _use_home(home: Path | None) -> None:
    """Make every component (store, alert and audit databases, reports) use ``home``."""
    if home is not None:
        os.environ["OBSBENCH_HOME"] = str(home.expanduser().resolve())


def serve(
    port: PortOption = 5006,
    address: AddressOption = "127.0.0.1",
    num_procs: Annotated[
        int, typer.Option("--num-procs", min=1, help="Server processes (forked).")
    ] = 1,
    users: Annotated[
        Path | None,
        typer.Option("--users", exists=True, help="Users file: scrypt hashes and roles."),
    ] = None,
    home: Annotated[
        Path | None, typer.Option("--home", help="obsbench home (default: OBSBENCH_HOME).")
    ] = None,
    interval: IntervalOption = 1.0,
    apps: Annotated[
        Path | None, typer.Option("--apps", help="Folder of the page modules (default: apps/).")
    ] = None,
    websocket_origin: Annotated[
        list[str] | None,
        typer.Option("--allow-websocket-origin", help="Extra allowed host:port (proxies)."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Serve Panel's /admin page.")] = False,
    cookie_secret: Annotated[
        str | None,
        typer.Option(
            "--cookie-secret", envvar="OBSBENCH_COOKIE_SECRET", help="Login cookie secret."
        ),
    ] = None,
    oauth_provider: Annotated[
        str | None, typer.Option("--oauth-provider", help="Panel OAuth provider (github, ...).")
    ] = None,
    oauth_key: Annotated[
        str | None, typer.Option("--oauth-key", envvar="OBSBENCH_OAUTH_KEY")
    ] = None,
    oauth_secret: Annotated[
        str | None, typer.Option("--oauth-secret", envvar="OBSBENCH_OAUTH_SECRET")
    ] = None,
    oauth_encryption_key: Annotated[
        str | None, typer.Option("--oauth-encryption-key", envvar="OBSBENCH_OAUTH_ENCRYPTION_KEY")
    ] = None,
    oauth_redirect_uri: Annotated[str | None, typer.Option("--oauth-redirect-uri")] = None,
    slos: Annotated[
        Path | None, typer.Option("--slos", exists=True, help="SLO file for the operations page.")
    ] = None,
    limits: Annotated[
        Path | None, typer.Option("--limits", exists=True, help="Risk-limits file.")
    ] = None,
) -> None:
    """Serve the live dashboards (one page per role) with login, /health and /metrics."""
    from obsbench.dashboards.serve import serve as run
    from obsbench.dashboards.setup import Options

    _use_home(home)
    memory.bound_polars_io_threads()
    oauth = None
    if oauth_provider:
        oauth = {
            "provider": oauth_provider,
            "key": oauth_key or "",
            "secret": oauth_secret or "",
            "encryption_key": oauth_encryption_key or "",
            "redirect_uri": oauth_redirect_uri or "",
        }
    if users is None and oauth is None:
        err_console.print("[yellow]warning:[/] no --users file: every page is open, no login.")
    console.print(f"obsbench dashboards on http://{address}:{port}/ (Ctrl-C stops)")
    run(
        Options(home=home, interval=interval, users=users, apps=apps, slos=slos, limits=limits),
        port=port,
        address=address,
        num_procs=num_procs,
        websocket_origin=websocket_origin,
        admin=admin,
        cookie_secret=cookie_secret,
        oauth=oauth,
    )


def run_demo(
    *,
    days: int,
    seed: int,
    home: Path | None,
    port: int,
    address: str,
    interval: float,
    incident_every: float,
    users: Path | None,
    evaluate: bool,
) -> None:
    """Simulate history, go live, evaluate the shipped rules and serve the dashboards."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from obsbench.config import get_settings
    from obsbench.dashboards import auth, demo
    from obsbench.dashboards.serve import serve as run
    from obsbench.dashboards.setup import Options
    from obsbench.store import Store

    _use_home(home)
    memory.bound_polars_io_threads()
    settings = get_settings()
    store = Store(settings.home)
    config = demo.demo_config(
        days=days, seed=seed, incident_every=timedelta(minutes=incident_every)
    )
    # The simulator and the evaluator run in processes of their own: the server's
    # interpreter lock then serves the sessions (docs/dashboards.md, "obsbench demo").
    with Progress(
        TextColumn("[bold]simulating history"),
        BarColumn(),
        TextColumn("day {task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("sim", total=days)
        simulator = demo.spawn_simulator(
            settings.home,
            config,
            interval=interval,
            progress=lambda done, total: progress.update(task, completed=done),
        )
    children = [simulator]
    rules_note = "no shipped rules found (rules/*.yaml): alerts disabled"
    if evaluate:
        rules, every = demo.load_rules()
        if rules:
            evaluator, alerts = demo.spawn_evaluator(settings.home, interval=every)
            demo.forward_alerts(alerts)
            children.append(evaluator)
            rules_note = (
                f"{len(rules)} rule(s) from {demo.SHIPPED_RULES}, every {every} "
                "(simulator and evaluator in processes of their own)"
            )
    if users is None:
        accounts = auth.demo_users()
        users = auth.write_users(settings.home / "demo-users.yaml", accounts)
        table = Table(title="demo users (passwords change at every start)")
        table.add_column("user")
        table.add_column("password")
        table.add_column("role")
        for name, (password, roles) in accounts.items():
            table.add_row(name, password, ", ".join(roles))
    else:
        table = None
    console.print(f"\n[bold green]obsbench live demo[/]: http://localhost:{port}/")
    console.print(f"store: {store.root}; users file: {users}")
    console.print(
        f"live: one tick per {interval:g} s; an incident every {incident_every:g} min; "
        f"alert evaluator: {rules_note}"
    )
    if table is not None:
        console.print(table)
    try:
        run(Options(home=settings.home, interval=interval, users=users), port=port, address=address)
    finally:
        for child in children:
            child.stop()
