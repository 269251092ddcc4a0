from __future__ import annotations

from datetime import time, timedelta

import pytest

from obsbench.sim import Incident, SimConfig, SimResult, simulate

SMALL = SimConfig.small(days=2)


def window(config: SimConfig, day: int, start: str, end: str) -> tuple:
    """UTC datetimes of ``HH:MM`` on day ``day`` of ``config``."""
    d0 = config.day_start(day)

    def at(hhmm: str):
        h, m = map(int, hhmm.split(":"))
        return d0 + timedelta(hours=h, minutes=m)

    return at(start), at(end)


# A 3-hour session with one incident of each kind on day 0.
INCIDENT_BASE = SimConfig.small(
    n_strategies=2, session_open=time(13, 30), session_close=time(16, 30)
)
WINDOW = window(INCIDENT_BASE, 0, "14:30", "15:30")
INCIDENTS = (
    Incident("latency_spike", "risk-check", *WINDOW),
    Incident("error_burst", "signal", *WINDOW),
    Incident("broker_throttling", "ibkr", *WINDOW, magnitude=12.0),
    Incident("strategy_drawdown", "meanrev-02", *WINDOW, magnitude=8.0),
    Incident("cost_spike", "reporting", *WINDOW),
)
INCIDENT_CONFIG = INCIDENT_BASE.with_incidents(*INCIDENTS)


@pytest.fixture(scope="session")
def small() -> SimResult:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def with_incidents() -> SimResult:
    return simulate(INCIDENT_CONFIG)


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return SMALL


@pytest.fixture(scope="session")
def incident_config() -> SimConfig:
    return INCIDENT_CONFIG


@pytest.fixture(scope="session")
def incident_window() -> tuple:
    return WINDOW
