"""``obsbench alerts check|run|backtest|silence|ack|list`` (registered by :mod:`obsbench.cli`).

Thin shells over :mod:`obsbench.alerts`; heavy imports (SQLAlchemy, the evaluator) stay
inside the commands.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`obsbench.cli._friendly_errors`, looked up at call time (no import cycle)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from obsbench.cli import _friendly_errors as friendly

        return friendly(fn)(*args, **kwargs)

    return wrapper


alerts_app = typer.Typer(
    help="Alert rules: validate, evaluate live, backtest over history, silence, acknowledge.",
    no_args_is_help=True,
)

RulesArg = Annotated[
    list[Path], typer.Argument(help="Rule files (YAML) or folders of them.", exists=True)
]
DbOption = Annotated[
    str | None,
    typer.Option("--database", help="Database URL (default: OBSBENCH_DATABASE_URL or SQLite)."),
]
HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="obsbench home (default: OBSBENCH_HOME or ~/.obsbench)."),
]
NotifyOption = Annotated[
    Path | None,
    typer.Option(
        "--notify", help="Notification config YAML (channels, routes, timers).", exists=True
    ),
]


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not an ISO date or datetime"
        raise typer.BadParameter(msg) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _load(paths: list[Path]) -> tuple[list, timedelta]:
    from obsbench.alerts.rules import load_rule_file

    rules, interval = [], None
    for p in paths:
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        for f in files:
            rf = load_rule_file(f)
            rules.extend(rf.rules)
            interval = rf.interval if interval is None else min(interval, rf.interval)
    return rules, interval or timedelta(minutes=1)


def _engine(database: str | None, home: Path | None):
    from obsbench.config import get_settings
    from obsbench.store import engine

    settings = get_settings(**({"home": home} if home else {}))
    return engine(database or settings.database)


def _signal_text(rule) -> str:
    from obsbench.alerts.rules import PromQLSignal

    s = rule.signal
    if isinstance(s, PromQLSignal):
        return f"promql: {s.promql}"
    by = f" by {','.join(s.by)}" if s.by else ""
    from obsbench.alerts.durations import format_duration

    return f"{s.metric}{by} [{format_duration(s.window)}]"


@alerts_app.command("check")
@_friendly_errors
def check_cmd(rules: RulesArg, notify: NotifyOption = None) -> None:
    """Validate rule files (and a notification config); list the rules."""
    from obsbench.alerts.durations import format_duration
    from obsbench.alerts.notify import load_notify_config

    loaded, interval = _load(rules)
    if notify is not None:
        load_notify_config(notify)
    table = Table(title=f"{len(loaded)} rule(s), evaluated every {format_duration(interval)}")
    for col in ("rule", "signal", "op", "warning", "critical", "emergency", "for", "keep"):
        table.add_column(col)
    for r in loaded:
        th = r.thresholds
        table.add_row(
            r.name,
            escape(_signal_text(r)),
            r.op,
            *("" if v is None else f"{v:g}" for v in (th.warning, th.critical, th.emergency)),
            format_duration(r.for_),
            format_duration(r.keep_firing_for),
        )
    console.print(table)
    console.print("[green]ok[/]")


@alerts_app.command("run")
@_friendly_errors
def run_cmd(
    rules: RulesArg,
    notify: NotifyOption = None,
    database: DbOption = None,
    home: HomeOption = None,
    cycles: Annotated[
        int | None, typer.Option(help="Stop after this many cycles (default: run until Ctrl-C).")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Evaluation interval (default: the rule files').")
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option("--prometheus-url", help="Default: OBSBENCH_PROMETHEUS_URL.")
    ] = None,
) -> None:
    """Evaluate the rules every interval, persist state, notify (Ctrl-C stops)."""
    from obsbench.alerts.durations import format_duration, parse_duration
    from obsbench.alerts.evaluator import Evaluator
    from obsbench.alerts.notify import load_notify_config
    from obsbench.store import Store

    loaded, every = _load(rules)
    if interval:
        every = parse_duration(interval)
    ev = Evaluator(
        loaded,
        engine=_engine(database, home),
        store=Store(home),
        prometheus_url=prometheus_url,
        notify=load_notify_config(notify),
        interval=every,
    )
    console.print(
        f"evaluating {len(loaded)} rule(s) every {format_duration(every)}; "
        f"{ev.state.height} alert(s) resumed from the database"
    )

    def show(report) -> None:
        moves = ", ".join(
            f"{r['rule']}/{r['severity']} {r['from_state']}->{r['to_state']}"
            for r in report.transitions.head(5).to_dicts()
        )
        bad = {k: v for k, v in report.health.items() if v != "ok"}
        console.print(
            f"{report.at:%H:%M:%S} rules={report.evaluated} firing={report.firing} "
            f"pending={report.pending} queued={report.queued} sent={report.delivered}"
            + (f" | {escape(moves)}" if moves else "")
            + (f" | [yellow]{bad}[/]" if bad else "")
        )

    try:
        ev.run(cycles=cycles, on_cycle=show)
    except KeyboardInterrupt:
        err_console.print("stopped")
    finally:
        ev.close()


@alerts_app.command("backtest")
@_friendly_errors
def backtest_cmd(
    rules: RulesArg,
    start: Annotated[str, typer.Option("--from", help="Start (ISO date or datetime, UTC).")],
    end: Annotated[str, typer.Option("--to", help="End (ISO date or datetime, UTC).")],
    step: Annotated[
        str | None, typer.Option(help="Evaluation step (default: the rule files' interval).")
    ] = None,
    home: HomeOption = None,
    prometheus_url: Annotated[
        str | None, typer.Option("--prometheus-url", help="Default: OBSBENCH_PROMETHEUS_URL.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the per-rule summary (CSV).")
    ] = None,
) -> None:
    """Replay rules over stored history: alerts, firing time, flaps, detection of incidents."""
    from obsbench.alerts.backtest import backtest
    from obsbench.alerts.durations import parse_duration
    from obsbench.store import Store

    loaded, every = _load(rules)
    result = backtest(
        loaded,
        _when(start),
        _when(end),
        step=parse_duration(step) if step else every,
        store=Store(home),
        prometheus_url=prometheus_url,
    )
    table = Table(title=f"Backtest {start} .. {end}")
    cols = ["rule", "alerts", "firing", "flaps", "incidents", "detected", "rate", "ttd (median)"]
    for c in cols:
        table.add_column(c, justify="left" if c == "rule" else "right")
    for r in result.summary.iter_rows(named=True):
        rate = r["detection_rate"]
        ttd = r["median_ttd_s"]
        table.add_row(
            r["rule"],
            str(r["alerts"]),
            str(timedelta(seconds=round(r["firing_seconds"]))),
            str(r["flaps"]),
            str(r["incidents"]),
            str(r["detected"]),
            "-" if rate != rate else f"{rate:.0%}",  # NaN: no relevant incident
            "-" if ttd != ttd else str(timedelta(seconds=round(ttd))),
        )
    console.print(table)
    secs = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    console.print(f"{sum(result.summary['evaluations'])} evaluations; {secs}")
    if output is not None:
        result.summary.write_csv(output)
        console.print(f"summary written to {output}")


@alerts_app.command("silence")
@_friendly_errors
def silence_cmd(
    matchers: Annotated[
        list[str] | None, typer.Argument(help='Matchers, e.g. alertname="ApiErrors" service=api.')
    ] = None,
    duration: Annotated[str, typer.Option(help="How long (from now).")] = "1h",
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    by: Annotated[str, typer.Option("--by", help="Who.")] = "cli",
    expire: Annotated[str | None, typer.Option(help="End the silence with this id now.")] = None,
    database: DbOption = None,
    home: HomeOption = None,
) -> None:
    """Silence matching alerts for a while (or --expire ID)."""
    from obsbench.alerts.durations import parse_duration
    from obsbench.alerts.notify import add_silence, expire_silence

    eng = _engine(database, home)
    if expire:
        expire_silence(eng, expire)
        console.print(f"silence {expire} expired")
        return
    sid = add_silence(
        eng, matchers or [], duration=parse_duration(duration), created_by=by, comment=comment
    )
    console.print(
        f"silence {sid} until {datetime.now(UTC) + parse_duration(duration):%Y-%m-%d %H:%M} UTC"
    )


@alerts_app.command("ack")
@_friendly_errors
def ack_cmd(
    fingerprint: Annotated[str, typer.Argument(help="Alert fingerprint (a prefix is enough).")],
    by: Annotated[str, typer.Option("--by", help="Who.")] = "cli",
    comment: Annotated[str, typer.Option(help="Note.")] = "",
    database: DbOption = None,
    home: HomeOption = None,
) -> None:
    """Acknowledge an alert: no repeats, no escalation for this episode."""
    from obsbench.alerts.notify import acknowledge

    done = acknowledge(_engine(database, home), fingerprint, by=by, comment=comment)
    console.print(f"acknowledged {', '.join(done)}")


@alerts_app.command("list")
@_friendly_errors
def list_cmd(
    database: DbOption = None,
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Active alerts (pending, firing, no data, error), acknowledgements and silences."""
    from obsbench.alerts.db import active_alerts

    frame, silences = active_alerts(_engine(database, home))
    if as_json:
        console.print_json(
            json.dumps({"alerts": frame.to_dicts(), "silences": silences}, default=str)
        )
        return
    table = Table(title=f"{frame.height} active alert(s)")
    for col in ("fingerprint", "rule", "severity", "state", "labels", "value", "since", "acked"):
        table.add_column(col)
    for r in frame.iter_rows(named=True):
        table.add_row(
            r["fingerprint"],
            r["rule"],
            r["severity"],
            r["state"],
            escape(r["series"]),
            "" if r["value"] is None else f"{r['value']:.4g}",
            f"{r['active_at']:%Y-%m-%d %H:%M:%S}",
            r["acked_by"] or "",
        )
    console.print(table)
    for s in silences:
        console.print(
            f"silence {s['id']}: {escape(', '.join(s['matchers']))} until {s['ends_at']} "
            f"by {s['created_by']} {escape(s['comment'])}"
        )


def register(app: typer.Typer) -> None:
    """Add ``obsbench alerts`` to the main command."""
    app.add_typer(alerts_app, name="alerts")
