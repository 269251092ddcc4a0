from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time

import pytest

from obsbench.errors import ConfigError
from obsbench.sim import FLOW, Incident, SimConfig

T0 = datetime(2024, 1, 1, 14, tzinfo=UTC)
T1 = datetime(2024, 1, 1, 15, tzinfo=UTC)

INVALID = {
    "zero days": {"days": 0},
    "no strategies": {"n_strategies": 0},
    "no brokers": {"brokers": ()},
    "flow service missing": {"services": ("market-data", "signal")},
    "duplicate services": {"services": (*FLOW, "portal", "portal")},
    "session reversed": {"session_open": time(16), "session_close": time(15)},
    "bar not dividing session": {"return_bar_s": 7 * 60},
    "negative rate": {"background_rps": -1.0},
    "edge out of range": {"edge_range": (0.4, 1.2)},
    "zero capital": {"capital": 0.0},
    "unknown incident target": {"incidents": (Incident("latency_spike", "nope", T0, T1),)},
    "broker incident on service": {"incidents": (Incident("broker_throttling", "signal", T0, T1),)},
}


@pytest.mark.parametrize("changes", INVALID.values(), ids=INVALID.keys())
def test_invalid_configs_raise_config_error(changes):
    with pytest.raises(ConfigError, match="invalid SimConfig"):
        SimConfig.small(**changes)


INVALID_INCIDENTS = {
    "unknown kind": {"kind": "meteor"},
    "end before start": {"start": T1, "end": T0},
    "negative magnitude": {"magnitude": -2.0},
}


@pytest.mark.parametrize("changes", INVALID_INCIDENTS.values(), ids=INVALID_INCIDENTS.keys())
def test_invalid_incidents_raise_config_error(changes):
    args = {"kind": "latency_spike", "target": "signal", "start": T0, "end": T1} | changes
    with pytest.raises(ConfigError):
        Incident(**args)


def test_naive_incident_times_are_taken_as_utc():
    inc = Incident("error_burst", "auth", datetime(2024, 1, 1, 14), datetime(2024, 1, 1, 15))
    assert inc.start == T0
    assert inc.effective_magnitude == 60.0


def test_defaults_and_derived_names():
    cfg = SimConfig()
    assert (cfg.days, cfg.n_strategies, cfg.n_symbols) == (30, 20, 20)
    assert len(set(cfg.strategies)) == 20
    assert cfg.symbols[0] == "AAPL"
    assert SimConfig(n_symbols=35).symbols[-1] == "SYM035"
    assert cfg.session_seconds == 6.5 * 3600
    assert cfg.end == datetime(2024, 1, 31, tzinfo=UTC)


def test_variants_are_new_frozen_configs():
    cfg = SimConfig.small()
    inc = Incident("cost_spike", "auth", T0, T1)
    assert cfg.with_seed(7).seed == 7
    assert cfg.with_days(3, date(2024, 2, 1)).start == date(2024, 2, 1)
    assert cfg.with_incidents(inc, random_rate=1.0).incidents == (inc,)
    assert cfg.incidents == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.days = 4  # type: ignore[misc]
