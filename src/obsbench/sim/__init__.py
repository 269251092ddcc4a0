"""Seeded, vectorised simulator of an algorithmic-trading platform with injectable incidents.

History::

    from obsbench.sim import SimConfig, simulate, write_history

    result = simulate(SimConfig.small(days=2))  # mapping dataset -> polars frame
    result["fills"], result["requests"], result["incidents"]

Live::

    from obsbench.sim import LiveSimulator

    live = LiveSimulator(config)  # continues after config.end
    frames = live.tick()  # the next second of every dataset

See ``docs/simulator.md`` for the models, defaults and volumes.
"""

from __future__ import annotations

from obsbench.sim.config import (
    DEFAULT_MAGNITUDE,
    FLOW,
    INCIDENT_KINDS,
    ExecutionModel,
    Incident,
    SimConfig,
)
from obsbench.sim.history import (
    DATASETS,
    SCHEMA_OF,
    SimResult,
    schema_name,
    simulate,
    simulate_day,
    write_history,
)
from obsbench.sim.live import LiveSimulator, run_live
from obsbench.sim.market import strategy_params, symbol_params

__all__ = [
    "DATASETS",
    "DEFAULT_MAGNITUDE",
    "FLOW",
    "INCIDENT_KINDS",
    "SCHEMA_OF",
    "ExecutionModel",
    "Incident",
    "LiveSimulator",
    "SimConfig",
    "SimResult",
    "run_live",
    "schema_name",
    "simulate",
    "simulate_day",
    "strategy_params",
    "symbol_params",
    "write_history",
]
