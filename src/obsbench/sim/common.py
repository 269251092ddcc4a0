r"""Shared building blocks: random streams, the day clock, seasonality curves, ids, frames.

Random streams
--------------
Every random draw comes from a PCG64 generator seeded by
``np.random.SeedSequence([seed, stream, day + 1])`` (``day = -1`` for day-independent
streams such as symbol parameters). A day therefore depends only on ``(seed, day)``: day
``d`` of a 30-day history is byte-identical to day ``d`` of a 3-day history and to the day
the live simulator produces.

Seasonality
-----------
The intraday U-shape on session time ``tau`` in [0, 1] is

.. math:: u_a(\tau) = \frac{1 + a (2\tau - 1)^2}{1 + a/3},

normalised so that its mean over the session is 1 (it is ``(1 + a)/(1 + a/3)`` at the open
and close and ``1/(1 + a/3)`` at mid-session). Its integral is
``U_a(tau) = (tau + a((2 tau - 1)^3 + 1)/6) / (1 + a/3)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import polars as pl

from obsbench import schemas
from obsbench.sim.config import SimConfig

US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US
TIMESTAMP = schemas.TIMESTAMP


class Stream(IntEnum):
    """Stream ids of the random generators (never renumber: it changes every output)."""

    SYMBOLS = 1
    STRATEGIES = 2
    SKELETON = 3
    QUOTES = 4
    ORDERS = 5
    FLOW = 6
    BROKER = 7
    FILLS = 8
    CLOSEOUT = 9
    BACKGROUND = 10
    COSTS = 11
    AUDIT = 12
    INCIDENTS = 13
    RESOURCES = 14


def rng(seed: int, stream: Stream, day: int = -1) -> np.random.Generator:
    """The PCG64 generator of ``stream`` on ``day`` (``-1``: day-independent)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, day + 1])))


# U-shape amplitudes: volatility (variance intensity), spread, order activity.
VOL_A = 2.0
SPREAD_A = 1.5
ACTIVITY_A = 1.5


def u_shape(tau: np.ndarray, a: float) -> np.ndarray:
    """Intraday U-shape ``u_a(tau)`` with mean 1 over [0, 1] (see module docstring)."""
    return (1.0 + a * (2.0 * tau - 1.0) ** 2) / (1.0 + a / 3.0)


def u_integral(tau: np.ndarray, a: float) -> np.ndarray:
    """``U_a(tau)``, the integral of :func:`u_shape` from 0 to ``tau`` (``U_a(1) = 1``)."""
    return (tau + a * ((2.0 * tau - 1.0) ** 3 + 1.0) / 6.0) / (1.0 + a / 3.0)


def sample_u_times(gen: np.random.Generator, n: int, a: float, t0: int, t1: int) -> np.ndarray:
    """``n`` sorted times in ``[t0, t1)`` (µs) with density proportional to ``u_a``.

    Inverse-CDF sampling: ``t = t0 + (t1 - t0) U_a^{-1}(v)``, ``v ~ Uniform(0, 1)``,
    with ``U_a^{-1}`` interpolated on a 4097-point grid.
    """
    grid = np.linspace(0.0, 1.0, 4097)
    tau = np.interp(gen.random(n), u_integral(grid, a), grid)
    out = t0 + (tau * (t1 - t0)).astype(np.int64)
    out.sort()
    return np.minimum(out, t1 - 1)


def diurnal_density(hours: np.ndarray) -> np.ndarray:
    """Web-traffic intensity over the UTC day, mean 1: a floor plus a business-hours bump.

    ``d(h) = (0.25 + exp(-((h - 15.5) / 3.5)^2)) / c`` with ``c`` its daily mean
    (peak around 15:30 UTC, the US morning).
    """
    raw = 0.25 + np.exp(-(((hours - 15.5) / 3.5) ** 2))
    grid = np.linspace(0.0, 24.0, 24 * 60 + 1)
    mean = np.trapezoid(0.25 + np.exp(-(((grid - 15.5) / 3.5) ** 2)), grid) / 24.0
    return raw / mean


def sample_diurnal_times(gen: np.random.Generator, n: int, day0: int) -> np.ndarray:
    """``n`` sorted times (µs) in the day starting at ``day0``, density :func:`diurnal_density`."""
    grid = np.linspace(0.0, 24.0, 24 * 60 + 1)
    dens = diurnal_density(grid)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2.0)])
    cdf /= cdf[-1]
    hours = np.interp(gen.random(n), cdf, grid)
    out = day0 + (hours * 3600 * US).astype(np.int64)
    out.sort()
    return np.minimum(out, day0 + DAY_US - 1)


@dataclass(frozen=True)
class DayClock:
    """Times of one simulated day, in integer microseconds since the Unix epoch."""

    day: int
    day0: int  # midnight UTC
    open: int
    close: int
    quote_us: int
    n_quotes: int

    @classmethod
    def of(cls, config: SimConfig, day: int) -> DayClock:
        day0 = int(config.day_start(day).timestamp()) * US
        o = config.session_open
        open_ = day0 + (o.hour * 3600 + o.minute * 60 + o.second) * US
        close = open_ + config.session_seconds * US
        return cls(
            day=day,
            day0=day0,
            open=open_,
            close=close,
            quote_us=config.quote_interval_s * US,
            n_quotes=config.session_seconds // config.quote_interval_s,
        )

    def quote_index(self, ts: np.ndarray) -> np.ndarray:
        """Index of the last quote at or before ``ts`` (clipped to the session's quotes)."""
        return np.clip((ts - self.open) // self.quote_us, 0, self.n_quotes - 1)

    def tau(self, ts: np.ndarray) -> np.ndarray:
        """Session time in [0, 1] (clipped outside the session)."""
        return np.clip((ts - self.open) / (self.close - self.open), 0.0, 1.0)

    @property
    def date_text(self) -> str:
        """``YYYYMMDD`` of the day, used in ids."""
        return np.datetime64(self.day0, "us").astype("datetime64[D]").astype(str).replace("-", "")


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint8)


def hex_ids(gen: np.random.Generator, n: int, nbytes: int) -> pl.Series:
    """``n`` random lowercase hex ids of ``2 * nbytes`` characters (OTel trace/span ids)."""
    raw = np.frombuffer(gen.bytes(n * nbytes), dtype=np.uint8)
    chars = _HEX.reshape(256, 2)[raw].reshape(n, 2 * nbytes)
    return pl.Series(chars.view(f"S{2 * nbytes}").ravel()).cast(pl.String)


def numbered(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """Ids ``f"{prefix}{n:0{width}d}"`` for each ``n`` in ``numbers``."""
    return prefix + pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)


def names(values: tuple[str, ...] | list[str], index: np.ndarray) -> pl.Series:
    """The strings ``values[index]`` as a polars String series (a fast gather)."""
    return pl.Series(list(values), dtype=pl.String).gather(index.astype(np.uint32))


def timestamps(us: np.ndarray) -> pl.Series:
    """Integer microseconds since the epoch as ``Datetime("us", "UTC")``."""
    return pl.Series(us.astype(np.int64)).cast(TIMESTAMP)


def lognormal(
    gen: np.random.Generator, median: np.ndarray | float, sigma: float, n: int
) -> np.ndarray:
    """Log-normal draws with the given median: ``median * exp(sigma * z)``."""
    return median * np.exp(sigma * gen.standard_normal(n))


def canonical(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """``frame`` with the dataset's column order and exact dtypes (no row checks)."""
    schema = schemas.schema_of(dataset)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
