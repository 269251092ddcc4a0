"""The live demo: a short simulated history, then one simulated second per wall second.

:func:`demo_config` builds the platform: ``days`` of history ending yesterday, a trading
session placed around the current wall time (the simulated clock follows the wall clock),
no random incidents, and an explicit incident every ``incident_every`` from now on (error
bursts, latency spikes, broker throttling and strategy drawdowns in turn, each
``incident_length`` long), so alerts fire and resolve while someone watches.
:func:`prepare` writes the history and catches the store up to now;
:func:`start_simulator` then appends a tick every ``interval`` seconds in a thread.
The browser tests use these with a smaller platform.

``obsbench demo`` runs the simulator and the alert evaluator in **processes of their own**
(:func:`spawn_simulator`, :func:`spawn_evaluator`), so the server process's interpreter
lock serves the sessions: the simulator writes the store, which the server tails; the
evaluator's bus messages come back through a pipe and are published on the server's bus
(:func:`forward_alerts`), whatever the database (SQLite or PostgreSQL). Both children stop
when the server process ends, even when it is killed.

Examples
--------
>>> from datetime import UTC, datetime
>>> cfg = demo_config(days=2, now=datetime(2026, 11, 25, 11, 10, tzinfo=UTC))
>>> cfg.start.isoformat(), cfg.session_open.isoformat(), cfg.session_close.isoformat()
('2026-11-23', '10:00:00', '18:00:00')
>>> cfg.incidents[0].kind, cfg.incidents[0].start.strftime("%H:%M")
('error_burst', '11:11')
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_mod
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

from obsbench.errors import ObsbenchError
from obsbench.sim import Incident, LiveSimulator, SimConfig

__all__ = [
    "SHIPPED_RULES",
    "Child",
    "DemoError",
    "demo_config",
    "forward_alerts",
    "load_rules",
    "prepare",
    "session_around",
    "spawn_evaluator",
    "spawn_simulator",
    "start_evaluator",
    "start_simulator",
]

_ROTATION = (
    ("error_burst", "order-router"),
    ("latency_spike", "market-data"),
    ("broker_throttling", None),
    ("error_burst", "broker-gateway"),
    ("strategy_drawdown", None),
    ("latency_spike", "risk-check"),
)


def session_around(now: datetime) -> tuple[time, time]:
    """A trading session (UTC) open from the hour before ``now`` for 8 hours.

    A session stays within its UTC day (the simulator's days do not cross midnight): a
    demo started at 17:00 UTC or later has its market open until 23:59, no longer (before,
    it closed at 23:00, which left a demo started at 22:57 three minutes of market).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> [str(t) for t in session_around(datetime(2026, 12, 7, 10, 30, tzinfo=UTC))]
    ['09:00:00', '17:00:00']
    >>> [str(t) for t in session_around(datetime(2026, 12, 7, 22, 57, tzinfo=UTC))]
    ['21:00:00', '23:59:00']
    """
    open_h = max(0, now.hour - 1)
    close = time(open_h + 8, 0) if open_h + 8 <= 23 else time(23, 59)
    return time(open_h, 0), close


def demo_config(
    *,
    days: int = 3,
    seed: int = 7,
    now: datetime | None = None,
    incident_every: timedelta = timedelta(minutes=6),
    incident_length: timedelta = timedelta(minutes=4),
    first_incident: timedelta = timedelta(minutes=1),
    small: bool = False,
    **overrides: Any,
) -> SimConfig:
    """The demo platform (see the module docstring).

    Parameters
    ----------
    days
        Days of history before today.
    seed
        Simulator seed.
    now
        The wall time the live demo starts at (default: now, UTC). The simulated trading
        session is placed around it (:func:`session_around`), so the simulated clock *is*
        the wall clock and the alert evaluator, which evaluates at wall time, sees the
        live data.
    incident_every, incident_length, first_incident
        Schedule of the injected incidents, from ``now``.
    small
        Start from :meth:`SimConfig.small` (tests, benchmarks) instead of the defaults.
    **overrides
        Further :class:`~obsbench.sim.SimConfig` fields.
    """
    now = now or datetime.now(UTC)
    today = now.date()
    session_open, session_close = session_around(now)
    fields: dict[str, Any] = {
        "days": days,
        "start": today - timedelta(days=days),
        "seed": seed,
        "session_open": session_open,
        "session_close": session_close,
        "incident_rate": 0.0,
        **overrides,
    }
    base = SimConfig.small(**fields) if small else SimConfig(**fields)
    close = datetime.combine(today, base.session_close, tzinfo=UTC)
    incidents = []
    k = 0
    t = now.replace(microsecond=0) + first_incident
    while t + incident_length <= close:
        kind, target = _ROTATION[k % len(_ROTATION)]
        if target is None:
            target = base.brokers[0] if kind == "broker_throttling" else base.strategies[0]
        if target in base.services or kind in ("broker_throttling", "strategy_drawdown"):
            incidents.append(
                Incident(kind, target, t, t + incident_length, incident_id=f"DEMO-{k + 1:03d}")
            )
        k += 1
        t += incident_every
    return base.with_incidents(*incidents, random_rate=0.0)


def prepare(
    store: Any,
    config: SimConfig,
    *,
    progress: Callable[[int, int], object] | None = None,
    now: datetime | None = None,
) -> LiveSimulator:
    """Clear ``store``, write the history, catch up to ``now`` (default: now).

    Returns the :class:`~obsbench.sim.LiveSimulator` positioned at ``now``.
    """
    from obsbench import schemas
    from obsbench.sim import write_history

    store.clear()
    write_history(store, config, progress=progress)
    sim = LiveSimulator(config)
    known = set(schemas.DATASETS)
    for name, frame in sim.tick(now or datetime.now(UTC)).items():
        if frame.height and name in known:
            store.append(name, frame, validate=False)
    return sim


def start_simulator(
    store: Any, sim: LiveSimulator, *, interval: float = 1.0, stop: threading.Event | None = None
) -> tuple[threading.Thread, threading.Event]:
    """Append the new rows every ``interval`` seconds (wall clock) in a daemon thread.

    Runs until ``stop`` is set; returns the thread and the event.
    """
    stop = stop or threading.Event()
    thread = threading.Thread(
        target=sim.run_live,
        args=(store, interval, stop),
        kwargs={"follow_clock": True},
        name="obsbench-live-sim",
        daemon=True,
    )
    thread.start()
    return thread, stop


#: The alert rules shipped in the repository (``rules/*.yaml``).
SHIPPED_RULES = Path(__file__).resolve().parents[3] / "rules"


def load_rules(folder: Path | None = None) -> tuple[list[Any], timedelta]:
    """The rules of every ``*.yaml`` in ``folder`` and their shortest evaluation interval.

    ``folder`` defaults to :data:`SHIPPED_RULES`; an empty list when there is no rule file.
    """
    from obsbench.alerts.rules import load_rule_file

    folder = folder or SHIPPED_RULES
    rules: list[Any] = []
    interval: timedelta | None = None
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        rule_file = load_rule_file(path)
        rules.extend(rule_file.rules)
        interval = rule_file.interval if interval is None else min(interval, rule_file.interval)
    return rules, interval or timedelta(minutes=1)


def start_evaluator(
    store: Any,
    rules: list[Any],
    *,
    interval: timedelta = timedelta(minutes=1),
    stop: threading.Event | None = None,
) -> tuple[threading.Thread, Any]:
    """Run :class:`obsbench.alerts.evaluator.Evaluator` over ``store`` in a daemon thread.

    Its ``bus`` channel publishes to the dashboard sessions of this process (and, on
    PostgreSQL, of every process through the NOTIFY bridge).
    """
    from obsbench.alerts.evaluator import Evaluator

    # bridge=False: the sessions of this process get the alerts through the in-process bus;
    # a NOTIFY from here would come back through this process's own listener as a duplicate.
    evaluator = Evaluator(rules, store=store, interval=interval, bridge=False)
    stop = stop or threading.Event()
    thread = threading.Thread(
        target=evaluator.run, kwargs={"stop": stop}, name="obsbench-evaluator", daemon=True
    )
    thread.start()
    return thread, evaluator


# -- separate processes (obsbench demo) ----------------------------------------------------
class DemoError(ObsbenchError, RuntimeError):
    """A demo process could not start."""


_SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent has threads (polars)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    """Set ``stop`` when the parent process is gone (killed without cleaning up)."""
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def _child_stop(parent: int) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    return stop


def _simulator_main(
    home: str, config: SimConfig, interval: float, events: Any, parent: int
) -> None:
    from obsbench.store import Store

    os.environ["OBSBENCH_HOME"] = home
    stop = _child_stop(parent)
    try:
        store = Store(Path(home))
        sim = prepare(store, config, progress=lambda done, total: events.put(("day", done, total)))
        events.put(("ready", 0, 0))
        sim.run_live(store, interval, stop, follow_clock=True)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group
        pass
    except Exception as exc:
        events.put(("error", f"{type(exc).__name__}: {exc}", 0))
        raise


def _evaluator_main(
    home: str, folder: str | None, interval: timedelta, alerts: Any, parent: int
) -> None:
    from obsbench.alerts.bus import bus
    from obsbench.alerts.evaluator import Evaluator
    from obsbench.store import Store

    os.environ["OBSBENCH_HOME"] = home
    stop = _child_stop(parent)
    try:
        rules, _ = load_rules(Path(folder) if folder else None)
        # bridge=False: the messages go to the server through the pipe (SQLite or not).
        evaluator = Evaluator(rules, store=Store(Path(home)), interval=interval, bridge=False)
        bus.subscribe(alerts.put)
        evaluator.run(stop=stop)
    except KeyboardInterrupt:
        pass


class Child:
    """A child process of the demo, stopped with :meth:`stop` (idempotent)."""

    def __init__(self, process: Any, channel: Any = None) -> None:
        self.process = process
        self.channel = channel

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
        if self.channel is not None:
            with contextlib.suppress(Exception):
                self.channel.put(None)  # ends forward_alerts


def spawn_simulator(
    home: Path,
    config: SimConfig,
    *,
    interval: float = 1.0,
    progress: Callable[[int, int], object] | None = None,
    timeout: float = 900.0,
) -> Child:
    """Write the history and go live in a child process; returns once the store is current.

    The child runs :func:`prepare` (``progress(done, total)`` is called here per simulated
    day), then appends a tick every ``interval`` seconds until stopped or orphaned.

    Raises
    ------
    DemoError
        If the child fails before the store is ready (its error in the message).
    """
    events = _SPAWN.Queue()
    process = _SPAWN.Process(
        target=_simulator_main,
        args=(str(home), config, interval, events, os.getpid()),
        name="obsbench-demo-simulator",
        daemon=True,
    )
    process.start()
    child = Child(process)
    deadline = monotonic() + timeout
    while True:
        try:
            kind, a, b = events.get(timeout=1.0)
        except queue_mod.Empty:
            if not process.is_alive() or monotonic() > deadline:
                child.stop()
                msg = (
                    f"the demo simulator process stopped before the store was ready "
                    f"(exit code {process.exitcode})"
                )
                raise DemoError(
                    msg,
                    hint="run `obsbench demo --summary` to see the simulator's own error.",
                ) from None
            continue
        if kind == "day" and progress is not None:
            progress(int(a), int(b))
        elif kind == "error":
            child.stop()
            msg = f"the demo simulator failed: {a}"
            raise DemoError(msg, hint="see the traceback above.")
        elif kind == "ready":
            return child


def spawn_evaluator(
    home: Path, *, interval: timedelta, folder: Path | None = None
) -> tuple[Child, Any]:
    """Run the shipped rules' evaluator in a child process.

    Returns the child and the queue its bus messages arrive on (see :func:`forward_alerts`).
    """
    alerts = _SPAWN.Queue()
    process = _SPAWN.Process(
        target=_evaluator_main,
        args=(str(home), str(folder) if folder else None, interval, alerts, os.getpid()),
        name="obsbench-demo-evaluator",
        daemon=True,
    )
    process.start()
    return Child(process, alerts), alerts


def forward_alerts(alerts: Any, alert_bus: Any = None) -> threading.Thread:
    """Publish every message from ``alerts`` on this process's bus, in a daemon thread.

    ``None`` on the queue ends the thread.
    """
    if alert_bus is None:
        from obsbench.alerts.bus import bus as alert_bus

    def run() -> None:
        while True:
            message = alerts.get()
            if message is None:
                return
            alert_bus.publish(message)

    thread = threading.Thread(target=run, name="obsbench-demo-alerts", daemon=True)
    thread.start()
    return thread
