from __future__ import annotations

import io

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from obsbench.sim import DATASETS, SimConfig, simulate, simulate_day


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def again(small_config):
    return simulate(small_config)


@pytest.mark.parametrize("dataset", DATASETS)
def test_same_seed_gives_identical_frames_and_parquet_bytes(small, again, dataset):
    assert_frame_equal(small[dataset], again[dataset])
    assert _parquet(small[dataset]) == _parquet(again[dataset])


# incidents and costs' resource list do not depend on the seed when no incident is drawn
SEED_DEPENDENT = [d for d in DATASETS if d != "incidents"]


@pytest.mark.parametrize("dataset", SEED_DEPENDENT)
def test_different_seed_gives_different_frames(small, small_config, dataset):
    other = simulate(small_config.with_seed(small_config.seed + 1))
    assert not small[dataset].equals(other[dataset])


def test_a_day_does_not_depend_on_how_many_days_are_simulated(small_config):
    long = simulate(small_config.with_days(3))
    day1 = simulate_day(small_config, 1)
    start, end = small_config.day_start(1), small_config.day_start(2)
    for dataset in ("quotes", "orders", "fills", "requests", "audit"):
        in_day = long[dataset].filter(pl.col("ts").is_between(start, end, closed="left"))
        assert_frame_equal(in_day, day1[dataset])


def test_random_incident_schedule_is_seeded():
    cfg = SimConfig.small(days=4, incident_rate=2.0)
    a = simulate(cfg)["incidents"]
    b = simulate(cfg)["incidents"]
    c = simulate(cfg.with_seed(cfg.seed + 5))["incidents"]
    assert a.height > 0
    assert_frame_equal(a, b)
    assert not a.equals(c)
