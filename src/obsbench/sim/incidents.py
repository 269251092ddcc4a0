"""Incident injection: the day's schedule (explicit + seeded random) and its multipliers.

Ground truth goes to the ``incidents`` dataset: each incident is recorded once, on the day
its ``start`` falls in, with its effective magnitude. Effects apply to every day the window
``[start, end)`` overlaps.

Random schedule (per day, stream ``INCIDENTS``): ``N ~ Poisson(incident_rate)`` incidents,
kind uniform over the five kinds, target uniform over the kind's population, duration
uniform in 10-60 min (cost spikes: 2-6 h), magnitude = default x Uniform(0.75, 1.5).
Trading incidents (drawdown, throttling) start inside the session, the others anywhere in
the day (but end before midnight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from obsbench.sim.common import DAY_US, US, DayClock, Stream, canonical, rng, timestamps
from obsbench.sim.config import (
    DEFAULT_MAGNITUDE,
    INCIDENT_KINDS,
    Incident,
    SimConfig,
    target_population,
)


@dataclass(frozen=True)
class Active:
    """An incident resolved for simulation: times in µs and an effective magnitude."""

    incident_id: str
    kind: str
    target: str
    start: int
    end: int
    magnitude: float


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def random_incidents(config: SimConfig, clock: DayClock) -> list[Active]:
    """The seeded random incidents that start on ``clock.day``."""
    if config.incident_rate <= 0:
        return []
    gen = rng(config.seed, Stream.INCIDENTS, clock.day)
    n = int(gen.poisson(config.incident_rate))
    out = []
    for k in range(n):  # a handful per day: not a row loop
        kind = INCIDENT_KINDS[int(gen.integers(len(INCIDENT_KINDS)))]
        population = target_population(config, kind)
        target = population[int(gen.integers(len(population)))]
        minutes = gen.uniform(120, 360) if kind == "cost_spike" else gen.uniform(10, 60)
        dur = int(minutes * 60) * US
        if kind in ("strategy_drawdown", "broker_throttling"):
            lo, hi = (
                clock.open,
                max(clock.open + 1, clock.close - min(dur, clock.close - clock.open)),
            )
        else:
            lo, hi = clock.day0, clock.day0 + DAY_US - dur
        start = int(gen.integers(lo, hi)) // US * US
        end = min(start + dur, clock.day0 + DAY_US)
        mag = round(DEFAULT_MAGNITUDE[kind] * float(gen.uniform(0.75, 1.5)), 3)
        out.append(Active(f"INC-{clock.date_text}-{k + 1:02d}", kind, target, start, end, mag))
    return out


def explicit_incidents(config: SimConfig) -> list[Active]:
    """The configured incidents, with ids ``INC-X001``... where none was given."""
    return [
        Active(
            inc.incident_id or f"INC-X{i + 1:03d}",
            inc.kind,
            inc.target,
            _us(inc.start),
            _us(inc.end),
            inc.effective_magnitude,
        )
        for i, inc in enumerate(config.incidents)
    ]


@dataclass(frozen=True)
class Effects:
    """The incidents affecting one day, and the multipliers they imply."""

    active: tuple[Active, ...]  # overlapping the day
    recorded: tuple[Active, ...]  # starting on the day (ground truth rows)

    @classmethod
    def of(cls, config: SimConfig, clock: DayClock) -> Effects:
        day_end = clock.day0 + DAY_US
        explicit = explicit_incidents(config)
        randoms = random_incidents(config, clock)
        # Random incidents of the previous day never cross midnight; explicit ones may.
        active = [a for a in explicit if a.start < day_end and a.end > clock.day0] + randoms
        recorded = [a for a in explicit if clock.day0 <= a.start < day_end] + randoms
        return cls(tuple(active), tuple(recorded))

    def of_kind(self, kind: str) -> list[Active]:
        return [a for a in self.active if a.kind == kind]

    def factor(
        self, kind: str, names: tuple[str, ...], target_idx: np.ndarray, ts: np.ndarray
    ) -> np.ndarray:
        """Product of the magnitudes of ``kind`` incidents active at ``ts`` on each row's target.

        ``target_idx`` indexes ``names``; rows outside every window get 1.0.
        """
        out = np.ones(len(ts))
        for a in self.of_kind(kind):  # loop over incidents (a few), vectorised over rows
            if a.target not in names:
                continue
            hit = (target_idx == names.index(a.target)) & (ts >= a.start) & (ts < a.end)
            out[hit] *= a.magnitude
        return out

    def mask(
        self, kind: str, names: tuple[str, ...], target_idx: np.ndarray, ts: np.ndarray
    ) -> np.ndarray:
        """True where an incident of ``kind`` on the row's target is active at ``ts``."""
        out = np.zeros(len(ts), dtype=bool)
        for a in self.of_kind(kind):
            if a.target in names:
                out |= (target_idx == names.index(a.target)) & (ts >= a.start) & (ts < a.end)
        return out

    def frame(self) -> pl.DataFrame:
        """The ``incidents`` ground-truth rows recorded on this day."""
        rows = self.recorded
        return canonical(
            pl.DataFrame(
                {
                    "incident_id": [a.incident_id for a in rows],
                    "kind": [a.kind for a in rows],
                    "target": [a.target for a in rows],
                    "start": timestamps(np.array([a.start for a in rows], dtype=np.int64)),
                    "end": timestamps(np.array([a.end for a in rows], dtype=np.int64)),
                    "magnitude": [float(a.magnitude) for a in rows],
                },
                schema_overrides={
                    "incident_id": pl.String,
                    "kind": pl.String,
                    "target": pl.String,
                    "magnitude": pl.Float64,
                },
            ),
            "incidents",
        )


def as_incident(row: Active) -> Incident:
    """Back to a config :class:`Incident` (for re-injection or display)."""
    return Incident(
        kind=row.kind,  # type: ignore[arg-type]
        target=row.target,
        start=_EPOCH + timedelta(microseconds=row.start),
        end=_EPOCH + timedelta(microseconds=row.end),
        magnitude=row.magnitude,
        incident_id=row.incident_id,
    )
