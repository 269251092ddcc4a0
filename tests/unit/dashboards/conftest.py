from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from obsbench.dashboards import demo
from obsbench.sim import LiveSimulator, SimConfig
from obsbench.store import Store

# A fixed instant inside the simulated session, so the tests do not depend on the clock.
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return demo.demo_config(days=1, now=NOW, small=True)


@pytest.fixture
def live_store(home: Path, small_config: SimConfig) -> tuple[Store, LiveSimulator]:
    """A store with one day of history and today's data up to NOW, and its simulator."""
    store = Store(home)
    sim = demo.prepare(store, small_config, now=NOW)
    return store, sim


def advance(store: Store, sim: LiveSimulator, seconds: float = 1.0) -> None:
    """Append the next ``seconds`` of simulated data to the store."""
    for name, frame in sim.tick(sim.now + timedelta(seconds=seconds)).items():
        if frame.height and name in store_datasets():
            store.append(name, frame, validate=False)


def store_datasets() -> set[str]:
    from obsbench import schemas

    return set(schemas.DATASETS)
