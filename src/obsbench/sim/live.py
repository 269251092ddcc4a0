"""Live mode: :class:`LiveSimulator` emits the platform's data second by second.

The live stream *is* the history: day ``d`` is produced by
:func:`~obsbench.sim.history.simulate_day` (cached) and each :meth:`LiveSimulator.tick`
returns the rows that became observable in ``[previous now, now)``. Starting at
``config.end`` (the default) continues the history seamlessly; concatenating the ticks of a
day gives exactly that day's history rows.

A row becomes observable at its *emit time*: ``ts`` for point events (quotes, orders,
fills, requests, logs, audit, intraday returns: ``ts`` is the bar end), the end of the window
for ``api_usage`` (``ts + window_s``), ``end`` for spans, ``ChargePeriodEnd`` for costs,
``start`` for incidents and the session close for daily returns. Orders are emitted once, at
their arrival, with their final status.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from obsbench import schemas
from obsbench.sim.common import DAY_US, US
from obsbench.sim.config import SimConfig
from obsbench.sim.history import DATASETS, SCHEMA_OF, simulate_day

if TYPE_CHECKING:
    from collections.abc import Callable

    from obsbench.store import Store

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(ts: datetime) -> int:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _emit_expr(dataset: str, config: SimConfig) -> pl.Expr:
    close = config.session_close
    close_us = (close.hour * 3600 + close.minute * 60 + close.second) * US
    return {
        "api_usage": pl.col("ts") + pl.duration(seconds=pl.col("window_s")),
        "spans": pl.col("end"),
        "costs": pl.col("ChargePeriodEnd"),
        "incidents": pl.col("start"),
        "returns": pl.col("ts") + pl.duration(microseconds=close_us),
    }.get(dataset, pl.col("ts"))


class LiveSimulator:
    """Emit every time-based dataset tick by tick, continuing the history.

    Parameters
    ----------
    config
        The platform (default :class:`SimConfig`).
    start
        Initial simulated time; default ``config.end`` (the end of the history).

    Examples
    --------
    >>> from datetime import timedelta
    >>> from obsbench.sim import LiveSimulator, SimConfig
    >>> cfg = SimConfig.small()
    >>> live = LiveSimulator(cfg, start=cfg.day_start(0) + timedelta(hours=14))
    >>> frames = live.tick()  # the next second
    >>> frames["quotes"].height == cfg.n_symbols
    True
    """

    def __init__(self, config: SimConfig | None = None, start: datetime | None = None) -> None:
        self.config = config or SimConfig()
        self._cursor = _to_us(start) if start is not None else _to_us(self.config.end)
        self._day0 = _to_us(self.config.day_start(0))
        self._cache: dict[int, dict[str, tuple[pl.DataFrame, np.ndarray]]] = {}

    @property
    def now(self) -> datetime:
        """The simulated time up to which rows have been emitted (exclusive)."""
        return _EPOCH + timedelta(microseconds=self._cursor)

    def _day(self, day: int) -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
        if day not in self._cache:
            out = {}
            for name, frame in simulate_day(self.config, day).items():
                emit = _emit_expr(SCHEMA_OF[name], self.config)
                ordered = frame.with_columns(_emit=emit).sort("_emit", maintain_order=True)
                out[name] = (ordered.drop("_emit"), ordered["_emit"].dt.epoch("us").to_numpy())
            self._cache[day] = out
            for old in [d for d in self._cache if d < day - 1]:
                del self._cache[old]
        return self._cache[day]

    def tick(self, now: datetime | None = None) -> dict[str, pl.DataFrame]:
        """The rows of every dataset whose emit time is in ``[self.now, now)``.

        ``now`` defaults to ``self.now + 1 s``. A ``now`` not after :attr:`now` emits
        nothing (time never goes back).
        """
        start = self._cursor
        end = _to_us(now) if now is not None else start + US
        out: dict[str, list[pl.DataFrame]] = {name: [] for name in DATASETS}
        if end > start:
            first = (start - self._day0) // DAY_US - 1  # rows may be emitted the day after
            last = (end - 1 - self._day0) // DAY_US
            for day in range(max(first, 0), last + 1):
                for name, (frame, emit) in self._day(day).items():
                    i0, i1 = np.searchsorted(emit, [start, end], side="left")
                    if i1 > i0:
                        out[name].append(frame.slice(int(i0), int(i1 - i0)))
            self._cursor = end
        return {
            name: pl.concat(parts) if parts else schemas.empty(SCHEMA_OF[name])
            for name, parts in out.items()
        }

    def run_live(
        self,
        store: Store,
        interval: float = 1.0,
        stop: threading.Event | None = None,
        *,
        step: float | None = None,
        follow_clock: bool = False,
        max_ticks: int | None = None,
        on_tick: Callable[[dict[str, pl.DataFrame]], object] | None = None,
        compact_every: int = 60,
    ) -> int:
        """Append a tick to ``store`` every ``interval`` seconds until ``stop`` is set.

        Parameters
        ----------
        store
            An :class:`obsbench.store.Store`; only the canonical datasets are appended
            (``returns_intraday`` only if ``obsbench.schemas`` defines it).
        interval
            Wall seconds between ticks.
        step
            Simulated seconds per tick (default ``interval``; ignored with ``follow_clock``).
        stop
            Set it (from another thread) to end the loop after the current tick.
        follow_clock
            Use ``datetime.now(UTC)`` as each tick's ``now`` (start the simulator at the
            current time for this).
        max_ticks
            Stop after this many ticks (tests, demos).
        on_tick
            Called with each tick's frames after they are appended.
        compact_every
            Merge each dataset's per-tick files every this many ticks
            (:meth:`obsbench.store.Store.compact`), so scans stay fast; 0 disables it.

        Returns
        -------
        The number of ticks run.
        """
        stop = stop or threading.Event()
        known = set(schemas.DATASETS)
        ticks = 0
        while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
            began = time.monotonic()
            advance = timedelta(seconds=interval if step is None else step)
            now = datetime.now(UTC) if follow_clock else self.now + advance
            frames = self.tick(now)
            for name, frame in frames.items():
                if frame.height and name in known:
                    store.append(name, frame, validate=False)
            ticks += 1
            if compact_every and ticks % compact_every == 0:
                for name in known & set(frames):
                    store.compact(name)
            if on_tick is not None:
                on_tick(frames)
            stop.wait(max(0.0, interval - (time.monotonic() - began)))
        return ticks


def run_live(
    store: Store,
    config: SimConfig | None = None,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    *,
    start: datetime | None = None,
    follow_clock: bool = False,
    max_ticks: int | None = None,
) -> int:
    """Run a :class:`LiveSimulator` from ``start`` (default: the end of the history).

    See :meth:`LiveSimulator.run_live`; returns the number of ticks run.
    """
    sim = LiveSimulator(config, start=start)
    return sim.run_live(store, interval, stop, follow_clock=follow_clock, max_ticks=max_ticks)
