"""Per-process start of the dashboard services: live model, alert book, bus bridge, users.

Everything a server process shares between its sessions is created here, **once per
process**, never in a page module (Panel runs page code again for every session). Two ways
in:

- ``obsbench serve`` calls :func:`configure` with its options and the server builds the
  :class:`Runtime` on the first session of each process (with ``--num-procs`` each forked
  process starts its own; nothing runs in the parent before the fork);
- ``panel serve apps/*.py --setup src/obsbench/dashboards/setup.py`` executes this file as
  a script, which starts the runtime from ``OBSBENCH_*`` environment variables
  (:meth:`Options.from_env`).

Examples
--------
>>> Options(interval=2.0).interval
2.0
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Options", "Runtime", "configure", "runtime"]

log = logging.getLogger("obsbench.dashboards.setup")


@dataclass(frozen=True)
class Options:
    """Dashboard server options (``obsbench serve`` flags, or ``OBSBENCH_*`` variables).

    Attributes
    ----------
    home
        obsbench home of the store (default ``OBSBENCH_HOME``).
    interval
        Live-model tick in seconds, ``(0, 5]``.
    users
        Users file (:mod:`obsbench.dashboards.auth`); ``None`` serves without login.
    apps
        Folder of the page modules.
    limits, slos
        Risk-limits and SLO files for the risk and operations pages.
    stale_after
        Seconds without new data before the stale badge shows.
    bridge
        Listen for alerts published by other processes through PostgreSQL
        (``LISTEN``/``NOTIFY``) when the database is PostgreSQL.
    alert_channel
        The NOTIFY channel (default ``OBSBENCH_ALERTS_CHANNEL``, else ``obsbench_alerts``).
    """

    home: Path | None = None
    interval: float = 1.0
    users: Path | None = None
    apps: Path | None = None
    limits: Path | None = None
    slos: Path | None = None
    stale_after: float | None = None
    bridge: bool = True
    alert_channel: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Options:
        """Options from the environment.

        ``OBSBENCH_HOME``, ``OBSBENCH_DASHBOARD_INTERVAL``, ``OBSBENCH_DASHBOARD_USERS``,
        ``OBSBENCH_DASHBOARD_APPS``, ``OBSBENCH_DASHBOARD_STALE_AFTER`` and
        ``OBSBENCH_ALERTS_CHANNEL``.
        """
        env = os.environ

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        stale = env.get("OBSBENCH_DASHBOARD_STALE_AFTER")
        return cls(
            home=path("OBSBENCH_HOME"),
            interval=float(env.get("OBSBENCH_DASHBOARD_INTERVAL", "1")),
            users=path("OBSBENCH_DASHBOARD_USERS"),
            apps=path("OBSBENCH_DASHBOARD_APPS"),
            stale_after=float(stale) if stale else None,
            alert_channel=env.get("OBSBENCH_ALERTS_CHANNEL") or None,
        )


@dataclass
class Runtime:
    """The per-process services the pages read."""

    options: Options
    model: Any
    book: Any
    users: dict[str, Any]
    pages: list[Any]
    bridge: Any = None

    def roles_of(self, user: str | None) -> frozenset[str]:
        """Roles of ``user`` (every role when serving without login)."""
        if not self.users:
            from obsbench.dashboards.auth import ROLES

            return frozenset(ROLES)
        found = self.users.get(user or "")
        return found.roles if found is not None else frozenset()

    def stop(self) -> None:
        """Stop the model thread and the bridge (tests, benchmarks)."""
        self.model.stop()
        if self.bridge is not None:
            self.bridge.stop()


_options = Options()
_runtime: Runtime | None = None
_lock = threading.Lock()


def configure(options: Options) -> None:
    """Set the options the next :func:`runtime` call starts with."""
    global _options
    _options = options


def runtime() -> Runtime:
    """The process's runtime, started on first use (thread-safe, once per process)."""
    global _runtime
    if _runtime is not None:
        return _runtime
    with _lock:
        if _runtime is None:
            _runtime = _start(_options)
    return _runtime


def _start(opts: Options) -> Runtime:
    from obsbench.config import get_settings
    from obsbench.dashboards import auth, pages
    from obsbench.dashboards.alerts_feed import book
    from obsbench.dashboards.live import LiveModel
    from obsbench.store import Store

    users = auth.load_users(opts.users) if opts.users else {}
    found = pages.discover(opts.apps)
    model = LiveModel(
        Store(opts.home),
        interval=opts.interval,
        stale_after=opts.stale_after,
        limits=opts.limits,
        slos=opts.slos,
    ).start()
    book.attach()
    bridge = None
    settings = get_settings(**({"home": opts.home} if opts.home else {}))
    if opts.bridge and settings.database.startswith("postgresql"):
        from obsbench.alerts.bus import PG_CHANNEL, PostgresBridge

        try:
            channel = opts.alert_channel or os.environ.get("OBSBENCH_ALERTS_CHANNEL") or PG_CHANNEL
            bridge = PostgresBridge(settings.database, channel=channel)
            bridge.start()
        except Exception:  # no database: alerts published in this process still arrive
            log.warning("alert bridge to PostgreSQL not started", exc_info=True)
            bridge = None
    log.info(
        "dashboard runtime started",
        extra={"fields": {"pid": os.getpid(), "pages": [p.spec.slug for p in found]}},
    )
    return Runtime(options=opts, model=model, book=book, users=users, pages=found, bridge=bridge)


if __name__ == "panel_setup_module":  # executed by `panel serve --setup setup.py`
    import panel as pn

    from obsbench.dashboards import memory
    from obsbench.dashboards.serve import serve_resources_locally

    memory.bound_polars_io_threads()  # before this process's first scan
    pn.state.on_session_created(serve_resources_locally)  # no CDN CSS with --num-procs
    configure(Options.from_env())
    runtime()
