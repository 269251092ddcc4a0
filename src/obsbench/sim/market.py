r"""Market and trading: quotes, order attributes, fills, close-out orders and strategy returns.

Quotes
------
Each symbol's log-mid follows a Brownian bridge with U-shaped variance intensity from the
day's open to its close. Over the session (``tau`` in [0, 1]) the variance accrued by
``tau`` is ``sigma_d^2 U_a(tau)`` (``a = 2``, see :mod:`obsbench.sim.common`), so volatility
is highest at the open and close and the day's variance is ``sigma_d^2``. The day's
open-to-close log return is ``r ~ N(-sigma_d^2/2, sigma_d^2)`` and the overnight gap
``g ~ N(0, (sigma_d/2)^2)``; both come from a day-independent stream so that the open of
day ``d`` is ``P_0 exp(sum_{k<d} (r_k + g_k))`` whichever days are simulated.
The half spread in bps is ``h = h_0 u_{1.5}(tau) exp(0.25 z - 0.03125)`` (U-shaped, mean
``h_0``), and ``bid = mid (1 - h/1e4)``, ``ask = mid (1 + h/1e4)``.

Fills
-----
See :class:`~obsbench.sim.config.ExecutionModel` for the slippage formula.

Returns
-------
Strategies trade intraday and close out every position 4-5 minutes before the close, so
each day starts flat. With ``pos_j(t)`` the strategy's net position in symbol ``j`` from
its fills with ``ts <= t``, ``cash(t) = -sum_{fills ts <= t} (s q px + fee)`` and
``mid_j(t)`` the mid of the last quote with ``ts <= t``:

.. math::

    E(t) = cash(t) + \sum_j pos_j(t)\, mid_j(t), \qquad
    r_k = \frac{E(t_k) - E(t_{k-1})}{C}, \qquad
    r_{day} = \frac{E(close) - E(open)}{C} = \sum_k r_k

on bars ``t_k = open + k * return_bar_s`` (``ts`` of an intraday return is the bar end
``t_k``; ``E(open) = 0``), ``C`` the strategy capital. Daily returns carry ``ts`` =
midnight UTC of the day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from obsbench.sim.common import (
    ACTIVITY_A,
    SPREAD_A,
    US,
    VOL_A,
    DayClock,
    Stream,
    canonical,
    names,
    rng,
    sample_u_times,
    timestamps,
    u_integral,
    u_shape,
)
from obsbench.sim.config import SimConfig
from obsbench.sim.incidents import Effects

#: Normal orders are decided before ``close - ORDER_CUTOFF_S``.
ORDER_CUTOFF_S = 15 * 60
#: Close-out orders are decided in ``[close - CLOSEOUT_S, close - CLOSEOUT_S + 60)``.
CLOSEOUT_S = 300
#: Cap on a single gap between successive fills of an order (s).
MAX_FILL_GAP_S = 30.0
PRIMARY_BROKER_SHARE = 0.7


# ------------------------------------------------------------------ static parameters
def symbol_params(config: SimConfig) -> pl.DataFrame:
    """Per-symbol model parameters (day-independent).

    Columns: ``symbol``, ``price0`` (first open), ``sigma_bps`` (daily volatility, bps),
    ``half_spread_bps`` (mean half spread ``h_0``), ``adv`` (daily volume ``V``, shares).
    """
    gen = rng(config.seed, Stream.SYMBOLS)
    n = config.n_symbols
    return pl.DataFrame(
        {
            "symbol": list(config.symbols),
            "price0": np.round(np.exp(np.log(100.0) + 0.6 * gen.standard_normal(n)), 2),
            "sigma_bps": gen.uniform(100.0, 300.0, n),
            "half_spread_bps": gen.uniform(0.5, 3.0, n),
            "adv": np.round(np.exp(gen.uniform(np.log(2e6), np.log(5e7), n))),
        }
    )


def strategy_params(config: SimConfig) -> pl.DataFrame:
    """Per-strategy parameters: ``edge`` (hit rate), ``size_mult``, ``broker``, ``capital``."""
    gen = rng(config.seed, Stream.STRATEGIES)
    n = config.n_strategies
    lo, hi = config.edge_range
    return pl.DataFrame(
        {
            "strategy": list(config.strategies),
            "edge": gen.uniform(lo, hi, n),
            "size_mult": np.exp(0.3 * gen.standard_normal(n)),
            "broker": [config.brokers[i % len(config.brokers)] for i in range(n)],
            "capital": np.full(n, config.capital),
        }
    )


# ------------------------------------------------------------------ quotes
@dataclass(frozen=True)
class Market:
    """One day's quote paths: arrays of shape ``(n_symbols, n_quotes)``."""

    clock: DayClock
    mid: np.ndarray
    half_spread_bps: np.ndarray

    def frame(self, config: SimConfig) -> pl.DataFrame:
        """The ``quotes`` rows, time-major (all symbols at each quote time)."""
        n_sym, n_q = self.mid.shape
        mid = self.mid.T.ravel()
        h = self.half_spread_bps.T.ravel() / 1e4
        ts = (
            self.clock.open + np.repeat(np.arange(n_q, dtype=np.int64), n_sym) * self.clock.quote_us
        )
        return pl.DataFrame(
            {
                "symbol": names(config.symbols, np.tile(np.arange(n_sym), n_q)),
                "ts": timestamps(ts),
                "bid": mid * (1.0 - h),
                "ask": mid * (1.0 + h),
                "mid": mid,
            }
        )


def day_skeleton(config: SimConfig, day: int, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log open, open-to-close log return)`` per symbol on ``day``; ``sigma`` as a fraction.

    Drawn row by row from a day-independent stream, so day ``d`` needs ``d + 1`` rows
    (cheap) and is the same whatever the number of simulated days.
    """
    gen = rng(config.seed, Stream.SKELETON)
    z = gen.standard_normal((day + 1, 2, len(sigma)))
    r = -(sigma**2) / 2 + sigma * z[:, 0, :]
    gaps = 0.5 * sigma * z[:, 1, :]
    log_p0 = np.log(symbol_params(config)["price0"].to_numpy())
    log_open = log_p0 + (r[:day] + gaps[:day]).sum(axis=0)
    return log_open, r[day]


def simulate_quotes(config: SimConfig, clock: DayClock, params: pl.DataFrame) -> Market:
    """Mid and half-spread paths of every symbol over the session (see module docstring)."""
    gen = rng(config.seed, Stream.QUOTES, clock.day)
    sigma = params["sigma_bps"].to_numpy() / 1e4
    n_sym, n_q = len(sigma), clock.n_quotes
    log_open, r_day = day_skeleton(config, clock.day, sigma)
    tau = np.arange(n_q + 1) / n_q
    frac = u_integral(tau, VOL_A)  # accrued variance fraction U(tau), U(1) = 1
    dv = np.diff(frac)
    steps = np.sqrt(dv)[None, :] * gen.standard_normal((n_sym, n_q)) * sigma[:, None]
    w = np.concatenate([np.zeros((n_sym, 1)), np.cumsum(steps, axis=1)], axis=1)
    bridge = w - frac[None, :] * (w[:, -1:] - r_day[:, None])
    mid = np.exp(log_open[:, None] + bridge[:, :n_q])
    h0 = params["half_spread_bps"].to_numpy()
    noise = np.exp(0.25 * gen.standard_normal((n_sym, n_q)) - 0.25**2 / 2)
    half = h0[:, None] * u_shape(tau[:n_q], SPREAD_A)[None, :] * noise
    return Market(clock, mid, half)


# ------------------------------------------------------------------ orders
@dataclass(frozen=True)
class Candidates:
    """Decisions of the day (trace starts), before the order flow decides their fate."""

    t0: np.ndarray  # µs, trace start
    strategy: np.ndarray
    symbol: np.ndarray
    broker: np.ndarray
    venue: np.ndarray
    qty: np.ndarray
    side: np.ndarray  # +1 buy, -1 sell
    limit_offset_bps: np.ndarray  # NaN for market orders
    closeout: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.t0)


def order_candidates(
    config: SimConfig,
    market: Market,
    effects: Effects,
    strategies: pl.DataFrame,
) -> Candidates:
    """The day's trading decisions.

    Per strategy ``N ~ Poisson(orders_per_strategy_day)`` decision times in
    ``[open, close - 15 min)`` with U-shaped density, plus, during a drawdown incident of
    magnitude ``M``, ``Poisson((M - 1) x rate x overlap)`` extra uniform times. Side: with
    ``Delta`` the mid change over the next ``alpha_horizon_s``, ``side = sign(Delta)`` with
    probability ``p`` (the strategy's edge; ``(1 - p) / M`` during a drawdown), else ``-sign``.
    Size: ``round(order_size x size_mult x exp(0.6 z))`` shares (``x M`` in a drawdown).
    """
    clock = market.clock
    gen = rng(config.seed, Stream.ORDERS, clock.day)
    n_strat = config.n_strategies
    cutoff = clock.close - ORDER_CUTOFF_S * US
    usable_s = (cutoff - clock.open) / US
    counts = gen.poisson(config.orders_per_strategy_day, n_strat)
    t_parts = [sample_u_times(gen, int(counts.sum()), ACTIVITY_A, clock.open, cutoff)]
    s_parts = [gen.permutation(np.repeat(np.arange(n_strat), counts))]
    for inc in effects.of_kind("strategy_drawdown"):
        k = config.strategies.index(inc.target)
        lo, hi = max(inc.start, clock.open), min(inc.end, cutoff)
        if hi <= lo:
            continue
        lam = config.orders_per_strategy_day / usable_s * (inc.magnitude - 1) * (hi - lo) / US
        extra = int(gen.poisson(max(lam, 0.0)))
        t_parts.append(np.sort(gen.integers(lo, hi, extra)))
        s_parts.append(np.full(extra, k))
    t0 = np.concatenate(t_parts)
    strat = np.concatenate(s_parts).astype(np.int64)
    order = np.argsort(t0, kind="stable")
    t0, strat = t0[order], strat[order]
    n = len(t0)

    symbol = gen.integers(0, config.n_symbols, n)
    primary = np.arange(n_strat) % len(config.brokers)
    broker = np.where(
        gen.random(n) < PRIMARY_BROKER_SHARE,
        primary[strat],
        gen.integers(0, len(config.brokers), n),
    )
    venue = gen.integers(0, len(config.venues), n)
    drawdown = effects.factor("strategy_drawdown", config.strategies, strat, t0)
    size_mult = strategies["size_mult"].to_numpy()[strat]
    qty = np.maximum(
        1.0, np.round(config.order_size * size_mult * np.exp(0.6 * gen.standard_normal(n)))
    )
    qty = np.round(qty * drawdown)

    i0 = clock.quote_index(t0)
    i1 = np.minimum(i0 + config.alpha_horizon_s // config.quote_interval_s, clock.n_quotes - 1)
    delta = market.mid[symbol, i1] - market.mid[symbol, i0]
    direction = np.where(delta >= 0, 1, -1)
    edge = strategies["edge"].to_numpy()[strat]
    hit_rate = np.where(drawdown > 1.0, (1.0 - edge) / drawdown, edge)
    side = np.where(gen.random(n) < hit_rate, direction, -direction)

    model = config.execution
    is_limit = gen.random(n) < model.limit_share
    offset = gen.uniform(*model.limit_offset_bps, n)
    return Candidates(
        t0=t0,
        strategy=strat,
        symbol=symbol,
        broker=broker,
        venue=venue,
        qty=qty,
        side=side,
        limit_offset_bps=np.where(is_limit, offset, np.nan),
        closeout=np.zeros(n, dtype=bool),
    )


# ------------------------------------------------------------------ fills
@dataclass(frozen=True)
class Fills:
    """Fill arrays (``order`` indexes the day's orders) and per-order filled quantity."""

    order: np.ndarray
    seq: np.ndarray  # 1-based fill number within the order
    ts: np.ndarray
    qty: np.ndarray
    px: np.ndarray
    fee: np.ndarray
    filled: np.ndarray  # per order


def simulate_fills(
    config: SimConfig,
    gen: np.random.Generator,
    *,
    order_ts: np.ndarray,
    first_fill_ts: np.ndarray,
    accepted: np.ndarray,
    qty: np.ndarray,
    side: np.ndarray,
    arrival_mid: np.ndarray,
    half_spread_bps: np.ndarray,
    sigma_bps: np.ndarray,
    adv: np.ndarray,
    limit_offset_bps: np.ndarray,
    single_fill: np.ndarray,
) -> Fills:
    """Fills of the accepted orders under :class:`~obsbench.sim.config.ExecutionModel`.

    An accepted order gets ``k = min(1 + Geometric, max_fills, qty)`` fills (1 if
    ``single_fill``), at the broker's first answer and then after exponential gaps (mean
    ``fill_gap_s``, each capped at 30 s). The order's quantity is split into ``k`` positive
    integer parts with random weights. Fills of limit orders whose slippage would exceed
    the limit offset do not happen.
    """
    model = config.execution
    n = len(order_ts)
    k = np.minimum(gen.geometric(0.6, n), model.max_fills)
    k = np.where(single_fill, 1, np.minimum(k, qty.astype(np.int64)))
    k = np.where(accepted, k, 0)
    total = int(k.sum())
    order = np.repeat(np.arange(n), k)
    first = np.repeat(np.cumsum(k) - k, k)
    seq = np.arange(total) - first  # 0-based within order
    # quantity split: 1 share each + floor of the rest by weights, remainder to the last
    w = gen.exponential(1.0, total)
    wsum = np.bincount(order, weights=w, minlength=n)
    spare = qty[order] - k[order]
    part = 1.0 + np.floor(spare * w / wsum[order])
    is_last = seq == k[order] - 1
    used = np.bincount(order, weights=part, minlength=n)
    part = part + np.where(is_last, (qty - used)[order], 0.0)
    # times
    gaps = np.where(
        seq == 0, 0.0, np.minimum(gen.exponential(model.fill_gap_s, total), MAX_FILL_GAP_S)
    )
    gap_us = (gaps * US).astype(np.int64)
    cum = np.cumsum(gap_us)
    starts = (np.cumsum(k) - k)[k > 0]
    ts = first_fill_ts[order] + cum - np.repeat(cum[starts], k[k > 0])
    # prices
    latency_ms = (ts - order_ts[order]) / 1000.0
    slip_bps = (
        half_spread_bps[order]
        + model.impact_y * sigma_bps[order] * np.sqrt(part / adv[order])
        + model.latency_kappa * np.sqrt(latency_ms)
        + model.noise_bps * gen.standard_normal(total)
    )
    keep = ~(slip_bps > limit_offset_bps[order])  # NaN offset (market order): keep
    s = side[order]
    px = arrival_mid[order] * (1.0 + s * slip_bps / 1e4)
    fee = model.fee_bps * part * px / 1e4
    order, seq, ts, part, px, fee = (a[keep] for a in (order, seq, ts, part, px, fee))
    renumber = np.arange(len(order)) - np.repeat(
        np.cumsum(np.bincount(order, minlength=n)) - np.bincount(order, minlength=n),
        np.bincount(order, minlength=n),
    )
    filled = np.bincount(order, weights=part, minlength=n)
    return Fills(order, renumber + 1, ts, part, px, fee, filled)


def order_status(accepted: np.ndarray, filled: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """``rejected`` (not accepted), ``cancelled`` (no fill), ``partially_filled``, ``filled``."""
    return np.select(
        [~accepted, filled <= 0, filled < qty],
        ["rejected", "cancelled", "partially_filled"],
        "filled",
    )


def closeout_candidates(
    config: SimConfig,
    clock: DayClock,
    gen: np.random.Generator,
    strategy: np.ndarray,
    symbol: np.ndarray,
    signed_qty: np.ndarray,
    strategies: pl.DataFrame,
) -> Candidates:
    """Market orders flattening every non-zero (strategy, symbol) position before the close."""
    n_sym = config.n_symbols
    key = strategy * n_sym + symbol
    pos = np.bincount(key, weights=signed_qty, minlength=config.n_strategies * n_sym)
    open_keys = np.flatnonzero(np.abs(pos) > 0.5)
    n = len(open_keys)
    t0 = clock.close - CLOSEOUT_S * US + gen.integers(0, 60 * US, n)
    order = np.argsort(t0, kind="stable")
    open_keys, t0 = open_keys[order], t0[order]
    strat = open_keys // n_sym
    primary = np.arange(config.n_strategies) % len(config.brokers)
    return Candidates(
        t0=t0,
        strategy=strat,
        symbol=open_keys % n_sym,
        broker=primary[strat],
        venue=gen.integers(0, len(config.venues), n),
        qty=np.abs(np.round(pos[open_keys])),
        side=np.where(pos[open_keys] > 0, -1, 1),
        limit_offset_bps=np.full(n, np.nan),
        closeout=np.ones(n, dtype=bool),
    )


# ------------------------------------------------------------------ returns
def strategy_returns(
    config: SimConfig,
    market: Market,
    strategy: np.ndarray,
    symbol: np.ndarray,
    ts: np.ndarray,
    signed_qty: np.ndarray,
    px: np.ndarray,
    fee: np.ndarray,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(daily, intraday)`` returns from fills (one row per fill) and quotes.

    See the module docstring for the formula. Every strategy gets every bar, traded or not.
    """
    clock = market.clock
    n_strat, n_sym = config.n_strategies, config.n_symbols
    bar_us = config.return_bar_s * US
    n_bars = config.session_seconds // config.return_bar_s
    # fill at t belongs to the bar (t_{b}, t_{b+1}] -> index b
    b = np.clip(-((clock.open - ts) // bar_us) - 1, 0, n_bars - 1)
    dq = np.bincount(
        (strategy * n_sym + symbol) * n_bars + b,
        weights=signed_qty,
        minlength=n_strat * n_sym * n_bars,
    ).reshape(n_strat, n_sym, n_bars)
    dcash = np.bincount(
        strategy * n_bars + b, weights=-(signed_qty * px) - fee, minlength=n_strat * n_bars
    ).reshape(n_strat, n_bars)
    pos = np.cumsum(dq, axis=2)
    bar_end = clock.open + np.arange(1, n_bars + 1, dtype=np.int64) * bar_us
    mids = market.mid[:, clock.quote_index(bar_end)]  # (n_sym, n_bars)
    equity = np.cumsum(dcash, axis=1) + np.einsum("ijk,jk->ik", pos, mids)
    pnl = np.diff(np.concatenate([np.zeros((n_strat, 1)), equity], axis=1), axis=1)
    capital = config.capital
    intraday = pl.DataFrame(
        {
            "strategy": names(config.strategies, np.repeat(np.arange(n_strat), n_bars)),
            "ts": timestamps(np.tile(bar_end, n_strat)),
            "ret": (pnl / capital).ravel(),
        }
    ).sort("ts", "strategy", maintain_order=True)
    daily = pl.DataFrame(
        {
            "strategy": list(config.strategies),
            "ts": timestamps(np.full(n_strat, clock.day0)),
            "ret": equity[:, -1] / capital,
        }
    )
    return canonical(daily, "returns"), canonical(intraday, "returns")
