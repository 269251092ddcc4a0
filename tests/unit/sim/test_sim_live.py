from __future__ import annotations

import threading
from datetime import timedelta

import polars as pl
import pytest

from obsbench import schemas
from obsbench.sim import DATASETS, SCHEMA_OF, LiveSimulator, SimConfig, simulate_day
from obsbench.store import Store

EMIT = {"spans": "end", "costs": "ChargePeriodEnd", "incidents": "start"}


@pytest.fixture(scope="module")
def cfg() -> SimConfig:
    return SimConfig.small()


def test_default_tick_is_the_next_second_and_time_only_moves_forward(cfg):
    live = LiveSimulator(cfg, start=cfg.day_start(0) + timedelta(hours=14, minutes=10))
    before = live.now
    frames = live.tick()
    assert live.now - before == timedelta(seconds=1)
    assert set(frames) == set(DATASETS)
    assert frames["quotes"].height == cfg.n_symbols
    assert frames["quotes"]["ts"].unique().to_list() == [before]
    for name, frame in frames.items():
        schemas.validate(frame, SCHEMA_OF[name])
    assert all(f.height == 0 for f in live.tick(before).values())  # going back emits nothing
    assert live.now == before + timedelta(seconds=1)


def test_ticks_are_monotonic_and_rebuild_the_history_day(cfg):
    start = cfg.day_start(0)
    live = LiveSimulator(cfg, start=start)
    ticks = []
    now = start
    while now < start + timedelta(days=1, minutes=5):
        now += timedelta(minutes=7)
        ticks.append(live.tick(now))
    history = simulate_day(cfg, 0)
    for name in ("quotes", "orders", "fills", "requests", "spans", "logs", "audit", "costs"):
        col = EMIT.get(name, "ts")
        parts = [t[name] for t in ticks]
        ends = [p[col].max() for p in parts if p.height]
        starts = [p[col].min() for p in parts if p.height]
        assert all(a >= b for a, b in zip(starts[1:], ends[:-1], strict=False)), name
        got = pl.concat(parts)
        want = history[name]
        key = [c for c in want.columns if want.schema[c] != pl.Struct]
        assert want.join(got, on=key, how="anti", nulls_equal=True).height == 0, name
        emitted_on_day = got.filter(pl.col(col) < cfg.day_start(1))
        assert emitted_on_day.join(want, on=key, how="anti", nulls_equal=True).height == 0, name
        assert got.join(want, on=key, how="semi", nulls_equal=True).height == want.height, name


def test_live_continues_after_the_history_end(cfg):
    live = LiveSimulator(cfg)
    assert live.now == cfg.end
    frames = live.tick(cfg.end + timedelta(hours=15))
    nxt = simulate_day(cfg, cfg.days)
    assert frames["quotes"].height == nxt["quotes"].height
    assert frames["orders"]["ts"].min() >= cfg.end


def test_run_live_appends_ticks_to_the_store(tmp_path, cfg):
    store = Store(tmp_path)
    live = LiveSimulator(cfg, start=cfg.day_start(0) + timedelta(hours=14, minutes=30))
    seen = []
    n = live.run_live(
        store, interval=0.0, stop=threading.Event(), step=1.0, max_ticks=3, on_tick=seen.append
    )
    assert n == 3
    counts = store.counts()
    assert counts["quotes"] == 3 * cfg.n_symbols
    assert counts["requests"] == sum(t["requests"].height for t in seen)


def test_run_live_stops_when_the_event_is_set(tmp_path, cfg):
    stop = threading.Event()
    stop.set()
    live = LiveSimulator(cfg, start=cfg.day_start(0))
    assert live.run_live(Store(tmp_path), interval=0.01, stop=stop) == 0
