"""The shared live model: one per server process, refreshed from the store every tick.

:class:`LiveModel` tails the Parquet store (it reads only the files that appeared since the
previous tick), keeps the current day and rolling windows in memory, computes the view
groups of :mod:`obsbench.dashboards.views` **once per tick for the whole process** and pushes
the resulting :class:`Snapshot` to every subscribed session with
``doc.add_next_tick_callback`` (the one thread-safe Bokeh ``Document`` method). Sessions
never query the store themselves.

Staleness: every source (``market``: quotes, orders, fills; ``services``: requests, API
usage) remembers the wall time its data last advanced, and every view group the time it
last computed without error. A source without new rows for ``stale_after`` seconds, or a
group whose computation fails, is *stale since* that time; pages show the badge and keep
the last good values, they never crash.

Examples
--------
>>> from obsbench.dashboards.live import SourceState
>>> from datetime import datetime, UTC
>>> s = SourceState("market", last_ok=datetime(2024, 1, 2, 14, 0, tzinfo=UTC))
>>> s.stale_since(datetime(2024, 1, 2, 14, 0, 3, tzinfo=UTC), stale_after=5.0) is None
True
>>> s.stale_since(datetime(2024, 1, 2, 14, 0, 9, tzinfo=UTC), stale_after=5.0).strftime("%H:%M:%S")
'14:00:00'
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from obsbench import schemas
from obsbench.dashboards import memory, views
from obsbench.errors import ConfigError
from obsbench.store import Store, file_span, time_column

__all__ = [
    "GROUP_SOURCES",
    "MAX_INTERVAL",
    "SOURCES",
    "LiveModel",
    "Snapshot",
    "SourceState",
]

log = logging.getLogger("obsbench.dashboards.live")

#: The longest allowed tick: pages must show changes within 5 seconds.
MAX_INTERVAL = 5.0
#: Sources and the datasets whose new rows make them fresh.
SOURCES: dict[str, tuple[str, ...]] = {
    "market": ("quotes", "orders", "fills"),
    "services": ("requests", "api_usage"),
}
#: The source each view group is computed from.
GROUP_SOURCES: dict[str, str] = {
    "pnl": "market",
    "activity": "market",
    "execution": "market",
    "risk": "market",
    "services": "services",
    "quotas": "services",
    "history": "market",
    "service_levels": "services",
    "reports": "reports",
}
#: Default refresh period of each group in ticks (the quota forecast and the SLO scans are
#: the expensive ones); never more than MAX_INTERVAL seconds. The four heavy groups (P&L,
#: services, execution, risk: 40-90 ms each on the demo) share the ticks: P&L every 2,
#: the others every 4, so a tick computes one of them, or two one tick in four.
DEFAULT_EVERY: dict[str, int] = {
    "pnl": 2,
    "execution": 4,
    "risk": 4,
    "services": 4,
    "quotas": 5,
    "service_levels": 30,
    "reports": 5,
}
#: A group is due when ``(tick + offset) % every == 0``. With the periods above, ticks
#: cycle through P&L; services; P&L and execution; risk.
OFFSETS: dict[str, int] = {"pnl": 0, "services": 3, "execution": 2, "risk": 1}
_TAILED = ("quotes", "orders", "fills", "requests", "api_usage")
#: Most chunks a tailed frame may have before it is copied into one: each tick appends a
#: chunk, and a day of them (86,400 a frame) costs memory per chunk and slows every view.
MAX_CHUNKS = 32
#: Groups computed beside the tick, in a thread of their own (slow, and not needed every
#: second): the broker-quota forecast and the SLO scans over the store.
SIDE_GROUPS = frozenset({"quotas"})


@dataclass
class SourceState:
    """Freshness of one source or view group.

    Attributes
    ----------
    name
        ``market``, ``services`` or a view group name.
    last_ok
        Wall time (UTC) of the last new data (source) or successful computation (group).
    error
        The last error message, while the source or group is failing.
    """

    name: str
    last_ok: datetime | None = None
    error: str | None = None
    period: float = 0.0
    idle: bool = False

    def stale_since(self, now: datetime, *, stale_after: float) -> datetime | None:
        """``None`` when fresh, else the wall time since which the data is stale.

        Failing (``error`` set) is stale at once; otherwise stale when ``last_ok`` is more
        than ``period + stale_after`` seconds before ``now`` (``period``: how often a view
        group is meant to refresh; 0 for sources). Never fresh and never failed is not
        stale yet (``None``); never fresh and failing is stale since ``now``. A view group
        no open page needs (``idle``) is not computed, hence never stale.
        """
        if self.idle:
            return None
        if self.last_ok is None:
            return now if self.error else None
        if self.error or (now - self.last_ok).total_seconds() > self.period + stale_after:
            return self.last_ok
        return None


@dataclass(frozen=True)
class Snapshot:
    """What the sessions read: immutable views of one tick.

    Attributes
    ----------
    version
        Tick counter (1 for the first computed snapshot).
    wall
        Wall time (UTC) of the computation.
    data_now
        Time of the newest data (the platform's clock: simulated time in the demo).
    values
        View name -> frame / scalar (see :mod:`obsbench.dashboards.views`).
    changed
        Names of the groups recomputed in this tick (pages skip the others).
    states
        Source and group freshness (copies).
    stale_after
        Seconds without new data before a source counts as stale.
    """

    version: int = 0
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    data_now: datetime | None = None
    values: dict[str, Any] = field(default_factory=dict)
    changed: frozenset[str] = frozenset()
    states: dict[str, SourceState] = field(default_factory=dict)
    stale_after: float = 5.0

    def get(self, key: str, default: Any = None) -> Any:
        """A view by name (``default`` before it was first computed)."""
        return self.values.get(key, default)

    def stale_since(self, groups: Iterable[str]) -> datetime | None:
        """Earliest stale-since time over ``groups`` and their sources (``None`` = fresh)."""
        times = [since for _, since in self.stale(groups)]
        return min(times) if times else None

    def stale(self, groups: Iterable[str]) -> list[tuple[SourceState, datetime]]:
        """The stale states among ``groups`` and their sources, with their stale-since times."""
        out: dict[str, tuple[SourceState, datetime]] = {}
        for group in groups:
            for name in (group, GROUP_SOURCES.get(group)):
                state = self.states.get(name) if name else None
                if state is not None and name not in out:
                    since = state.stale_since(self.wall, stale_after=self.stale_after)
                    if since is not None:
                        out[name] = (state, since)
        return list(out.values())


class _Tail:
    """Incremental reader of one dataset: the files that appeared since the last poll.

    File names start with a nanosecond timestamp (``part-<ns>-<uuid>``); the tail remembers
    the names it has read within a trailing grace period and ignores older ones, so its
    memory stays bounded however long it runs. A compacted file (``compact-<first>-<last>``,
    :meth:`obsbench.store.Store.compact`) holds parts this tail has mostly read already:
    only the parts written after the newest one it read are read (from the compacted file
    when it read none of them). Judging a compacted file by its first timestamp, as a part,
    read a sparse dataset's day twice (its newest part could be older than the grace).
    """

    GRACE_NS = 30 * 10**9

    def __init__(self, store: Store, dataset: str) -> None:
        self.store = store
        self.dataset = dataset
        self._seen: dict[str, int] = {}
        self._floor = 0
        self._newest = -1  # write time (ns) of the newest part read

    def new_files(self) -> list[Path]:
        out = []
        newest = self._newest
        for path in self.store.files(self.dataset):
            key = f"{path.parent.name}/{path.name}"
            first, last = file_span(path)
            if key in self._seen or (first < self._floor and first == last):
                continue
            self._seen[key] = last
            if first == last or self._newest < first:  # a part, or a merge of unread parts
                out.append(path)
            elif self._newest < last:  # a merge of read and unread parts: the unread ones
                out.extend(
                    p for p in self.store.merged_parts(path) if file_span(p)[0] > self._newest
                )
            newest = max(newest, last)
        self._newest = newest
        if self._seen:
            self._floor = max(self._seen.values()) - self.GRACE_NS
            self._seen = {k: v for k, v in self._seen.items() if v >= self._floor}
        return out

    def read(self, files: list[Path], *, since: datetime | None = None) -> pl.DataFrame:
        if not files:
            return schemas.empty(self.dataset)
        lf = pl.scan_parquet(files, schema=schemas.schema_of(self.dataset))
        if since is not None:
            lf = lf.filter(pl.col(time_column(self.dataset)) >= since)
        return lf.collect()


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


class LiveModel:
    """Process-wide live view of the store, pushed to every open session.

    Parameters
    ----------
    store
        The :class:`~obsbench.store.Store` the simulator or the loaders append to.
    interval
        Seconds between ticks; ``0 < interval <= 5`` (default 1).
    window
        Rolling window of the execution and quota views (default 15 minutes).
    request_window
        Rolling window of requests for the service views (default 60 minutes).
    stale_after
        Seconds without new data before a source is stale (default ``max(5, 3 x
        interval)``).
    limits, slos
        Risk-limits and SLO YAML files (defaults: the shipped examples).
    every
        Refresh period in ticks per view group (overrides :data:`DEFAULT_EVERY`); capped
        so no group refreshes less often than every 5 seconds, except ``service_levels``
        and ``history`` (scans of the whole store).
    history_period
        Seconds between reloads of the daily history (also reloaded when the day changes).

    Raises
    ------
    ConfigError
        For an interval outside ``(0, 5]``.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 1.0,
        window: timedelta = timedelta(minutes=15),
        request_window: timedelta = timedelta(minutes=60),
        stale_after: float | None = None,
        limits: Path | str | None = None,
        slos: Path | str | None = None,
        every: dict[str, int] | None = None,
        history_period: float = 300.0,
    ) -> None:
        if not 0 < interval <= MAX_INTERVAL:
            msg = f"dashboard refresh interval must be in (0, {MAX_INTERVAL:g}] s, got {interval}"
            raise ConfigError(msg, hint="pages must update within 5 s: use e.g. --interval 1.")
        self.store = store
        self.interval = float(interval)
        self.window = window
        self.request_window = request_window
        self.stale_after = float(stale_after) if stale_after else max(5.0, 3 * self.interval)
        self.limits = limits
        self.slos = slos
        self.history_period = history_period
        cap = max(1, int(MAX_INTERVAL // self.interval))
        merged = {**DEFAULT_EVERY, **(every or {})}
        self.every = {
            g: (n if g in ("service_levels", "history") else min(n, cap)) for g, n in merged.items()
        }
        self._lock = threading.Lock()
        self._subs: dict[int, tuple[Any, Callable[[Snapshot], None], frozenset[str]]] = {}
        self._ids = itertools.count(1)
        self._pending = set()
        self.skipped = 0
        self._tails = {name: _Tail(store, name) for name in _TAILED}
        self._frames = views.LiveFrames(window=window)
        self._hist = views.HistoryFrames()
        self._hist_loaded_at = 0.0
        self._values: dict[str, Any] = {}
        self._states = {name: SourceState(name) for name in [*SOURCES, "reports", *GROUP_SOURCES]}
        for group, n in self.every.items():
            self._states[group].period = n * self.interval
        self._states["history"].period = history_period
        for group in SIDE_GROUPS:  # computed beside the tick: allow one slow run
            self._states[group].period *= 2
        self._was_wanted: set[str] = set()
        self._pnl_samples: deque[tuple[datetime, float]] = deque(maxlen=3600)
        self._history_db: Any = None
        self._tick = 0
        self._started = False
        self._snapshot = Snapshot(stale_after=self.stale_after)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._side: dict[str, threading.Thread] = {}
        self._values_lock = threading.Lock()
        self._tick_lock = threading.Lock()  # the thread and a direct caller must not interleave
        #: Per tick: compute_ms, sessions, and groups_ms (each group computed, in ms).
        self.tick_costs: deque[dict[str, Any]] = deque(maxlen=600)
        self._group_ms: dict[str, float] = {}
        self._push_ms: dict[int, list[float]] = {}
        self._push_cpu_ms: dict[int, list[float]] = {}

    # ------------------------------------------------------------------ subscriptions
    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot (a new session renders from it before its first push)."""
        return self._snapshot

    def subscribe(
        self, doc: Any, handler: Callable[[Snapshot], None], groups: Iterable[str] = ()
    ) -> int:
        """Push every new snapshot to ``handler`` on ``doc``'s event loop.

        ``groups`` are the view groups the page reads: the model computes a group only
        while some subscriber needs it. Returns the id for :meth:`unsubscribe`.

        Updates are conflated: a session has at most one update waiting on the event loop,
        and it renders the newest snapshot when it runs. A busy loop therefore skips
        intermediate snapshots instead of queueing them (which would delay every other
        callback, alerts included, without bound).
        """
        wanted = frozenset(groups)
        unknown = wanted - set(GROUP_SOURCES)
        if unknown:
            msg = f"unknown view group(s) {sorted(unknown)}"
            raise ConfigError(msg, hint=f"use some of {sorted(GROUP_SOURCES)}.")
        with self._lock:
            sid = next(self._ids)
            self._subs[sid] = (doc, handler, wanted)
        return sid

    def unsubscribe(self, sid: int) -> None:
        """Stop pushing to a session (idempotent)."""
        with self._lock:
            self._subs.pop(sid, None)
            self._pending.discard(sid)

    @property
    def sessions(self) -> int:
        """Number of subscribed sessions."""
        with self._lock:
            return len(self._subs)

    def _wanted(self) -> set[str]:
        with self._lock:
            subs = list(self._subs.values())
        out: set[str] = set()
        for _, _, groups in subs:
            out |= groups
        return out

    def _publish(self, snap: Snapshot) -> None:
        with self._lock:
            subs = list(self._subs.items())
        self._push_ms[snap.version] = []
        self._push_cpu_ms[snap.version] = []
        for sid, (doc, handler, _) in subs:
            with self._lock:
                if sid in self._pending:
                    self.skipped += 1
                    continue  # its previous update has not run yet: it will show this one
                self._pending.add(sid)
            try:
                doc.add_next_tick_callback(partial(self._run_handler, sid, handler))
            except Exception:  # the session is gone: its document no longer accepts callbacks
                self.unsubscribe(sid)
                with self._lock:
                    self._pending.discard(sid)
        for old in [v for v in self._push_ms if v < snap.version - 30]:
            self._push_ms.pop(old, None)
            self._push_cpu_ms.pop(old, None)

    def _run_handler(self, sid: int, handler: Callable[[Snapshot], None]) -> None:
        with self._lock:
            self._pending.discard(sid)
        snap = self._snapshot  # the newest, whatever was current when this was queued
        began = time.perf_counter()
        began_cpu = time.thread_time()
        try:
            handler(snap)
        except Exception:
            log.exception("dashboard session update failed")
        finally:
            costs = self._push_ms.get(snap.version)
            if costs is not None:
                costs.append((time.perf_counter() - began) * 1000)
            cpu = self._push_cpu_ms.get(snap.version)
            if cpu is not None:
                cpu.append((time.thread_time() - began_cpu) * 1000)

    def push_cost(self, version: int) -> tuple[int, float]:
        """Sessions updated and their summed event-loop time (ms) for snapshot ``version``."""
        costs = self._push_ms.get(version, [])
        return len(costs), float(sum(costs))

    def push_cpu(self, version: int) -> float:
        """CPU time (ms) of the event-loop thread spent updating the sessions for ``version``.

        Unlike the wall time of :meth:`push_cost`, it does not grow when other processes
        compete for the CPU.
        """
        return float(sum(self._push_cpu_ms.get(version, [])))

    def data_bytes(self) -> int:
        """Bytes of the frames the model holds (estimated by polars).

        The day's market data, the rolling windows and the daily history: they grow with
        the trading day by design.
        """
        f, h = self._frames, self._hist
        frames = (f.orders, f.fills, f.quotes, f.requests, f.api_usage, h.returns, h.attribution)
        return sum(int(frame.estimated_size()) for frame in frames)

    # ------------------------------------------------------------------ loading
    def _load_initial(self) -> None:
        """Read the current day / windows from the files present now, then tail from there."""
        files = {name: tail.new_files() for name, tail in self._tails.items()}
        newest = None
        for name in ("quotes", "requests"):
            if files[name]:
                last = self._tails[name].read(files[name][-3:])
                if last.height:
                    ts = last["ts"].max()
                    newest = ts if newest is None or ts > newest else newest  # type: ignore[operator]
        if newest is None:
            return
        day0 = _utc_midnight(newest.date())  # type: ignore[union-attr]
        f = self._frames
        f.orders = self._tails["orders"].read(files["orders"], since=day0)
        f.fills = self._tails["fills"].read(files["fills"], since=day0)
        f.quotes = self._compact_quotes(self._tails["quotes"].read(files["quotes"], since=day0))
        f.requests = self._tails["requests"].read(
            files["requests"], since=newest - self.request_window
        )
        f.api_usage = self._tails["api_usage"].read(files["api_usage"], since=newest - self.window)
        f.now = newest
        now = datetime.now(UTC)
        for src in SOURCES:
            self._states[src].last_ok = now

    def _compact_quotes(self, quotes: pl.DataFrame) -> pl.DataFrame:
        """Keep the window plus each symbol's last quote before it (enough for every view)."""
        if quotes.is_empty():
            return quotes
        cutoff = quotes["ts"].max() - self.window  # type: ignore[operator]
        old = quotes.filter(pl.col("ts") < cutoff)
        if old.is_empty():
            return quotes
        last = old.sort("ts").group_by("symbol", maintain_order=True).last()
        return pl.concat([last.select(quotes.columns), quotes.filter(pl.col("ts") >= cutoff)])

    def _load_history(self, today: date) -> None:
        """Daily returns and the P&L attribution of the days before ``today``."""
        from obsbench.metrics import pnl

        day0 = _utc_midnight(today)
        returns = self.store.scan("returns").collect()
        orders = self.store.scan("orders", end=day0)
        fills = self.store.scan("fills", end=day0)
        quotes = self.store.scan("quotes", end=day0)
        has_fills = fills.select(pl.len()).collect().item() > 0
        attribution = (
            pnl.pnl_attribution(orders.collect(), fills.collect(), quotes)
            if has_fills
            else pl.DataFrame()
        )
        if isinstance(attribution, pl.LazyFrame):
            attribution = attribution.collect()
        self._hist = views.HistoryFrames(returns=returns, attribution=attribution, today=today)
        self._hist_loaded_at = time.monotonic()

    def _poll(self) -> dict[str, int]:
        """Append the rows of new files; roll the day and trim the windows."""
        new: dict[str, int] = {}
        f = self._frames
        for name, tail in self._tails.items():
            files = tail.new_files()
            if not files:
                continue
            rows = tail.read(files)
            if not rows.height:
                continue
            new[name] = rows.height
            setattr(f, name, pl.concat([getattr(f, name), rows], how="vertical_relaxed"))
        if not new:
            return new
        newest = max(
            (getattr(f, n)["ts"].max() for n in ("quotes", "requests") if getattr(f, n).height),
            default=None,
        )
        if newest is None:
            return new
        f.now = newest
        day0 = _utc_midnight(newest.date())  # type: ignore[union-attr]
        if f.orders.height and f.orders["ts"].min() < day0:  # type: ignore[operator]
            f.orders = f.orders.filter(pl.col("ts") >= day0)
            f.fills = f.fills.filter(pl.col("ts") >= day0)
            f.quotes = f.quotes.filter(pl.col("ts") >= day0)
        if self._tick % 10 == 0:
            f.quotes = self._compact_quotes(f.quotes)
            f.requests = f.requests.filter(pl.col("ts") > newest - self.request_window)
            f.api_usage = f.api_usage.filter(pl.col("ts") > newest - self.window)
        for name in _TAILED:
            frame = getattr(f, name)
            if frame.n_chunks() > MAX_CHUNKS:
                setattr(f, name, frame.rechunk())
        return new

    # ------------------------------------------------------------------ ticking
    def tick(self) -> Snapshot:
        """Run one refresh now: poll the store, compute the due groups, publish.

        The background thread calls this every ``interval`` seconds; tests call it
        directly; concurrent calls run one after the other.
        """
        # the groups share the day's frames: check them once
        with self._tick_lock, schemas.validation_memo():
            return self._refresh()

    def _refresh(self) -> Snapshot:
        began = time.perf_counter()
        wall = datetime.now(UTC)
        if not self._started:
            self._guard("market", self._load_initial)
            self._started = True
        self._tick += 1
        new = self._guard("market", self._poll) or {}
        for src, datasets in SOURCES.items():
            if any(d in new for d in datasets):
                self._states[src].last_ok = wall
                self._states[src].error = None
        f = self._frames
        today = f.now.date() if f.now is not None else None  # type: ignore[union-attr]
        changed: set[str] = set()
        wanted = self._wanted() or set(GROUP_SOURCES)
        fresh = wanted - self._was_wanted  # just opened: compute now, whatever the period
        self._was_wanted = wanted
        for group in GROUP_SOURCES:
            self._states[group].idle = group not in wanted
        history_due = today is not None and (
            self._hist.today != today
            or time.monotonic() - self._hist_loaded_at > self.history_period
        )
        if history_due and self._run_group("history", lambda: self._history_values(today), wall):
            changed.add("history")
        for group, fn in views.LIVE_GROUPS.items():
            due = (
                group in fresh
                or (self._tick + OFFSETS.get(group, 0)) % self.every.get(group, 1) == 0
            )
            if group not in wanted or not due:
                continue
            call = partial(fn, f, self._hist)
            if group == "risk" and self.limits:
                call = partial(views.risk_views, f, self._hist, limits=self.limits)
            if group in SIDE_GROUPS:
                self._start_side(group, call, wall)
                continue
            if self._run_group(group, call, wall):
                changed.add(group)
                if group == "pnl":
                    self._sample_pnl()
        reports_due = "reports" in wanted and (
            "reports" in fresh or self._tick % self.every["reports"] == 0
        )
        if reports_due and self._run_group("reports", self._report_runs, wall):
            changed.add("reports")
        if "service_levels" in wanted and (
            "service_levels" in fresh or self._tick % self.every["service_levels"] == 0
        ):
            self._start_service_levels(wall)
        snap = Snapshot(
            version=self._tick,
            wall=wall,
            data_now=f.now,
            values=self._values_copy(),
            changed=frozenset(changed),
            states={k: replace(v) for k, v in self._states.items()},
            stale_after=self.stale_after,
        )
        self._snapshot = snap
        compute_ms = (time.perf_counter() - began) * 1000
        with self._values_lock:  # side groups that finished since the last tick count too
            group_ms, self._group_ms = self._group_ms, {}
        self.tick_costs.append(
            {
                "version": snap.version,
                "compute_ms": compute_ms,
                "sessions": self.sessions,
                "groups_ms": group_ms,
            }
        )
        self._publish(snap)
        return snap

    def _values_copy(self) -> dict[str, Any]:
        with self._values_lock:
            return dict(self._values)

    def _sample_pnl(self) -> None:
        """Record today's book P&L every 5 s of data time, for the intraday trend line."""
        book = self._values.get("pnl_book") or {}
        now = self._frames.now
        if now is None or book.get("today") is None:
            return
        if self._pnl_samples and self._pnl_samples[-1][0].date() != now.date():
            self._pnl_samples.clear()
        if not self._pnl_samples or (now - self._pnl_samples[-1][0]).total_seconds() >= 5:
            self._pnl_samples.append((now, float(book["today"])))
        intraday = pl.DataFrame(
            {
                "ts": [t for t, _ in self._pnl_samples],
                "pnl_today": [v for _, v in self._pnl_samples],
            },
            schema={"ts": schemas.TIMESTAMP, "pnl_today": pl.Float64},
        )
        with self._values_lock:
            self._values["pnl_intraday"] = intraday

    def _report_runs(self) -> dict[str, Any]:
        """Recent report runs from :class:`obsbench.reports.history.History`."""
        from obsbench.reports.history import History

        if self._history_db is None:
            self._history_db = History()
        runs = self._history_db.runs(limit=200)
        cols = [
            "started_at",
            "report",
            "status",
            "trigger",
            "duration_s",
            "parameters",
            "pdf",
            "error",
            "run_id",
        ]

        def text(value: Any) -> Any:  # parameters come back decoded (a dict)
            return value if value is None or isinstance(value, str) else json.dumps(value)

        frame = pl.DataFrame(
            [{c: text(r.get(c)) if c == "parameters" else r.get(c) for c in cols} for r in runs],
            schema={
                "started_at": pl.Datetime("us", "UTC"),
                "report": pl.String,
                "status": pl.String,
                "trigger": pl.String,
                "duration_s": pl.Float64,
                "parameters": pl.String,
                "pdf": pl.String,
                "error": pl.String,
                "run_id": pl.String,
            },
            strict=False,
        )
        return {"report_runs": frame}

    def _history_values(self, today: date) -> dict[str, Any]:
        self._load_history(today)
        return views.history_views(self._hist)

    def _guard(self, source: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            log.warning("live source %s failed: %s", source, exc)
            self._states[source].error = f"{type(exc).__name__}: {exc}"
            return None

    def _run_group(self, group: str, fn: Callable[[], dict[str, Any]], wall: datetime) -> bool:
        state = self._states[group]
        began = time.perf_counter()
        try:
            values = fn()
        except Exception as exc:
            log.warning("view group %s failed: %s", group, exc, exc_info=True)
            state.error = f"{type(exc).__name__}: {exc}"
            return False
        with self._values_lock:  # side threads update values too
            self._values.update(values)
            self._group_ms[group] = (time.perf_counter() - began) * 1000
        state.last_ok = wall
        state.error = None
        return True

    def _start_service_levels(self, wall: datetime) -> None:
        """SLO scans read the whole store: run them beside the tick, not in it."""
        scan = self.store.scan("requests")
        slos = self.slos
        self._start_side("service_levels", lambda: views.service_level_views(scan, slos=slos), wall)

    def _start_side(self, group: str, fn: Callable[[], dict[str, Any]], wall: datetime) -> None:
        """Compute a slow group in a thread beside the tick (one run at a time per group).

        Its values join the next snapshot after it finishes.
        """
        running = self._side.get(group)
        if running is not None and running.is_alive():
            return
        thread = threading.Thread(
            target=self._run_group, args=(group, fn, wall), name=f"obsbench-{group}", daemon=True
        )
        self._side[group] = thread
        thread.start()

    # ------------------------------------------------------------------ thread
    def start(self) -> LiveModel:
        """Tick in a daemon thread every ``interval`` seconds (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="obsbench-live-model", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        trimmed = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.tick()
            except Exception:  # never let the thread die: the badge shows the problem
                log.exception("live model tick failed")
            if began - trimmed > memory.TRIM_PERIOD:
                trimmed = began
                memory.release_free_memory()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
