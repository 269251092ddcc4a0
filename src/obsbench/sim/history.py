"""History mode: :func:`simulate_day`, :func:`simulate`, :func:`write_history`.

A day is simulated in one vectorised pass, in causal order: incidents -> quotes ->
decisions -> order-flow traces -> broker rate limits -> orders and fills -> close-out
orders -> returns -> requests/spans/logs -> costs -> audit. Each step draws from its own
stream (``SeedSequence([seed, stream, day + 1])``), so the day is a pure function of
``(config, day)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from obsbench import schemas
from obsbench.sim import audit as audit_mod
from obsbench.sim.common import (
    DayClock,
    Stream,
    canonical,
    hex_ids,
    names,
    numbered,
    rng,
    timestamps,
)
from obsbench.sim.config import SimConfig
from obsbench.sim.costs import simulate_costs
from obsbench.sim.incidents import Effects
from obsbench.sim.market import (
    Candidates,
    closeout_candidates,
    order_candidates,
    order_status,
    simulate_fills,
    simulate_quotes,
    strategy_params,
    strategy_returns,
    symbol_params,
)
from obsbench.sim.services import (
    Catalog,
    Flow,
    Part,
    background_logs_frame,
    flow_logs_frame,
    flow_part,
    requests_frame,
    simulate_background,
    simulate_broker_traffic,
    simulate_flow,
    spans_frame,
)

if TYPE_CHECKING:
    from obsbench.store import Store

#: Datasets produced, in output order. ``returns_intraday`` has the ``returns`` schema.
DATASETS: tuple[str, ...] = (
    "quotes", "orders", "fills", "returns", "returns_intraday", "requests", "spans", "logs",
    "api_usage", "costs", "audit", "incidents",
)  # fmt: skip
#: Canonical schema of each produced dataset.
SCHEMA_OF: dict[str, str] = {d: ("returns" if d == "returns_intraday" else d) for d in DATASETS}


def schema_name(dataset: str) -> str:
    """The canonical schema of ``dataset`` (``returns_intraday`` -> ``returns``)."""
    return SCHEMA_OF.get(dataset, dataset)


@dataclass(frozen=True)
class SimResult(Mapping[str, pl.DataFrame]):
    """The simulated datasets (a read-only mapping dataset -> frame) and the model parameters.

    ``symbols`` and ``strategies`` hold the per-symbol / per-strategy parameters used
    (see :func:`~obsbench.sim.market.symbol_params`), ``config.execution`` the slippage model.
    """

    config: SimConfig
    frames: Mapping[str, pl.DataFrame]
    symbols: pl.DataFrame = field(repr=False)
    strategies: pl.DataFrame = field(repr=False)

    def __getitem__(self, dataset: str) -> pl.DataFrame:
        return self.frames[dataset]

    def __iter__(self) -> Iterator[str]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def counts(self) -> dict[str, int]:
        """Rows per dataset."""
        return {k: v.height for k, v in self.frames.items()}

    @property
    def rows(self) -> int:
        """Total rows over all datasets."""
        return sum(self.counts().values())


def _concat_flows(a: Flow, b: Flow) -> Flow:
    return Flow(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in ("start", "dur", "executed", "status")
        )
    )


def _concat_candidates(a: Candidates, b: Candidates) -> Candidates:
    return Candidates(
        *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in Candidates.__dataclass_fields__)
    )


def simulate_day(config: SimConfig, day: int) -> dict[str, pl.DataFrame]:
    """Every dataset of day index ``day`` (0 = ``config.start``); see the module docstring.

    ``day`` may exceed ``config.days`` (the live simulator continues past the history).
    """
    clock = DayClock.of(config, day)
    effects = Effects.of(config, clock)
    catalog = Catalog.of(config)
    sym = symbol_params(config)
    strat = strategy_params(config)
    sigma_bps, adv = sym["sigma_bps"].to_numpy(), sym["adv"].to_numpy()

    market = simulate_quotes(config, clock, sym)
    cand = order_candidates(config, market, effects, strat)

    # order flow of the decisions, then the broker's rate limits on their submissions
    g_flow = rng(config.seed, Stream.FLOW, day)
    flow = simulate_flow(config, clock, effects, g_flow, cand.t0, cand.closeout)
    sub = np.flatnonzero(flow.reached_broker)
    broker = simulate_broker_traffic(
        config,
        clock,
        effects,
        catalog,
        rng(config.seed, Stream.BROKER, day),
        flow.start[sub, 4],
        cand.broker[sub],
    )
    flow.status[sub, 4] = np.where(broker.submit_throttled, 429, flow.status[sub, 4])

    # orders (traces that reached the broker) and their fills
    g_fill = rng(config.seed, Stream.FILLS, day)

    def execute(
        c: Candidates, f: Flow, idx: np.ndarray, gen: np.random.Generator
    ) -> dict[str, Any]:
        ts = f.order_ts[idx]
        qi = clock.quote_index(ts)
        s = c.symbol[idx]
        accepted = f.status[idx, 4] == 200
        arrival = market.mid[s, qi]
        fills = simulate_fills(
            config,
            gen,
            order_ts=ts,
            first_fill_ts=f.broker_answer_ts[idx],
            accepted=accepted,
            qty=c.qty[idx],
            side=c.side[idx],
            arrival_mid=arrival,
            half_spread_bps=market.half_spread_bps[s, qi],
            sigma_bps=sigma_bps[s],
            adv=adv[s],
            limit_offset_bps=c.limit_offset_bps[idx],
            single_fill=c.closeout[idx],
        )
        return {"idx": idx, "ts": ts, "arrival": arrival, "accepted": accepted, "fills": fills}

    normal = execute(cand, flow, sub, g_fill)
    nf = normal["fills"]
    o_strat, o_sym, o_side = cand.strategy[sub], cand.symbol[sub], cand.side[sub]
    g_close = rng(config.seed, Stream.CLOSEOUT, day)
    co = closeout_candidates(
        config, clock, g_close, o_strat[nf.order], o_sym[nf.order], o_side[nf.order] * nf.qty, strat
    )
    co_flow = simulate_flow(config, clock, effects, g_close, co.t0, co.closeout)
    closing = execute(co, co_flow, np.arange(len(co)), g_close)
    broker.add_priority(co_flow.start[:, 4], co.broker)

    # one table of traces: decisions first, then close-outs
    allc = _concat_candidates(cand, co)
    allf = _concat_flows(flow, co_flow)
    n_traces = len(allc)
    trace_ids = hex_ids(g_flow, n_traces, 16)
    order_trace = np.concatenate([sub, len(cand) + np.arange(len(co))])
    n_orders = len(order_trace)
    order_ids = numbered(f"O{clock.date_text}-", np.arange(1, n_orders + 1), 6)
    trace_order = (
        pl.Series([None] * n_traces, dtype=pl.String).scatter(order_trace, order_ids)
        if n_orders
        else pl.Series([None] * n_traces, dtype=pl.String)
    )
    context = pl.DataFrame(
        {
            "trace_id": trace_ids,
            "order_id": trace_order,
            "strategy": names(config.strategies, allc.strategy),
            "symbol": names(config.symbols, allc.symbol),
        }
    )

    # orders frame
    o_ts = np.concatenate([normal["ts"], closing["ts"]])
    arrival = np.concatenate([normal["arrival"], closing["arrival"]])
    accepted = np.concatenate([normal["accepted"], closing["accepted"]])
    filled = np.concatenate([nf.filled, closing["fills"].filled])
    qty, side = allc.qty[order_trace], allc.side[order_trace]
    offset = allc.limit_offset_bps[order_trace]
    limit_px = np.where(np.isnan(offset), np.nan, arrival * (1.0 + side * offset / 1e4))
    orders_full = pl.DataFrame(
        {
            "order_id": order_ids,
            "ts": timestamps(o_ts),
            "strategy": context["strategy"].gather(order_trace),
            "symbol": context["symbol"].gather(order_trace),
            "side": names(("sell", "buy"), (side > 0).astype(np.int64)),
            "qty": qty,
            "arrival_px": arrival,
            "limit_px": pl.Series(limit_px).fill_nan(None),
            "venue": names(config.venues, allc.venue[order_trace]),
            "broker": names(config.brokers, allc.broker[order_trace]),
            "status": pl.Series(order_status(accepted, filled, qty)),
            "trace_id": trace_ids.gather(order_trace),
            "status_code": allf.status[order_trace, 4],
        }
    )

    # fills frame (order index into the day's orders)
    cf = closing["fills"]
    f_order = np.concatenate([nf.order, len(sub) + cf.order])
    f_seq = np.concatenate([nf.seq, cf.seq])
    f_ts = np.concatenate([nf.ts, cf.ts])
    f_qty = np.concatenate([nf.qty, cf.qty])
    f_px = np.concatenate([nf.px, cf.px])
    f_fee = np.concatenate([nf.fee, cf.fee])
    fills_full = pl.DataFrame(
        {
            "fill_id": order_ids.gather(f_order) + "-" + pl.Series(f_seq).cast(pl.String),
            "order_id": order_ids.gather(f_order),
            "ts": timestamps(f_ts),
            "symbol": orders_full["symbol"].gather(f_order),
            "side": orders_full["side"].gather(f_order),
            "qty": f_qty,
            "px": f_px,
            "fee": f_fee,
            "venue": orders_full["venue"].gather(f_order),
            "broker": orders_full["broker"].gather(f_order),
            "trace_id": orders_full["trace_id"].gather(f_order),
        }
    ).sort("ts", maintain_order=True)

    f_strat = allc.strategy[order_trace][f_order]
    f_sym = allc.symbol[order_trace][f_order]
    daily, intraday = strategy_returns(
        config, market, f_strat, f_sym, f_ts, side[f_order] * f_qty, f_px, f_fee
    )

    # requests, spans, logs
    bg = simulate_background(
        config,
        clock,
        effects,
        catalog,
        rng(config.seed, Stream.BACKGROUND, day),
        len(audit_mod.USERS),
    )
    parts = Part.concat([flow_part(config, catalog, allf, allc.broker, 0), broker.part, bg])
    requests = requests_frame(config, catalog, parts, trace_ids)
    span_ids = hex_ids(g_flow, 5 * n_traces, 8)
    spans = spans_frame(config, catalog, allf, allc.broker, context, span_ids)
    logs = pl.concat(
        [
            flow_logs_frame(allf, context),
            background_logs_frame(
                config, catalog, Part.concat([broker.part, bg]), audit_mod.EMAILS
            ),
        ]
    ).sort("ts", maintain_order=True)

    costs = simulate_costs(config, clock, effects, parts.service, parts.ts)

    # audit
    g_audit = rng(config.seed, Stream.AUDIT, day)
    decision_ts = np.concatenate([flow.start[sub, 2], co_flow.start[:, 2]])
    reject_ts = allf.broker_answer_ts[order_trace]
    login = bg.user >= 0
    audit = pl.concat(
        [
            audit_mod.order_events(
                orders_full,
                decision_ts,
                reject_ts,
                audit_mod.account_numbers(config.n_strategies, config.seed),
                config.strategies,
                config.alpha_horizon_s,
            ),
            audit_mod.execution_events(fills_full),
            audit_mod.login_events(g_audit, bg.ts[login], bg.user[login], bg.status[login] < 400),
            audit_mod.config_change_events(
                g_audit, clock, config.strategies, config.services, config.brokers
            ),
        ]
    ).sort("ts", maintain_order=True)
    audit = audit.with_columns(
        seq=pl.lit(None, dtype=pl.Int64),
        prev_hash=pl.lit(None, dtype=pl.String),
        hash=pl.lit(None, dtype=pl.String),
    )

    frames = {
        "quotes": market.frame(config),
        "orders": orders_full.sort("ts", maintain_order=True),
        "fills": fills_full,
        "returns": daily,
        "returns_intraday": intraday,
        "requests": requests,
        "spans": spans,
        "logs": logs,
        "api_usage": broker.frame(config),
        "costs": costs,
        "audit": audit,
        "incidents": effects.frame(),
    }
    return {name: canonical(frame, SCHEMA_OF[name]) for name, frame in frames.items()}


def simulate(config: SimConfig | None = None) -> SimResult:
    """Simulate every day of ``config`` (default :class:`SimConfig`) in memory.

    Each frame passes ``schemas.validate(frame, schema_name(dataset))``. For long histories
    prefer :func:`write_history`, which keeps one day in memory.
    """
    config = config or SimConfig()
    days = [simulate_day(config, d) for d in range(config.days)]
    frames = {name: pl.concat([d[name] for d in days], rechunk=True) for name in DATASETS}
    return SimResult(config, frames, symbol_params(config), strategy_params(config))


def write_history(
    store: Store,
    config: SimConfig | None = None,
    progress: Callable[[int, int], object] | None = None,
    *,
    validate: bool = False,
) -> dict[str, int]:
    """Simulate day by day and append each day to ``store``; memory stays bounded by one day.

    Parameters
    ----------
    store
        An :class:`obsbench.store.Store`.
    config
        The platform (default :class:`SimConfig`, 30 days).
    progress
        Called after each day as ``progress(days_done, n_days)`` (1..n), e.g. to advance a
        rich progress bar.
    validate
        Validate each frame against its schema before writing (slower; the simulator's
        output is schema-correct by construction and tested).

    Returns
    -------
    Rows written per dataset. Only datasets the store knows are written: ``returns_intraday``
    is written if ``obsbench.schemas`` defines it, otherwise skipped.
    """
    config = config or SimConfig()
    written: dict[str, int] = {}
    known = set(schemas.DATASETS)
    for d in range(config.days):
        for name, frame in simulate_day(config, d).items():
            if name not in known:
                continue
            store.append(name, frame, validate=validate)
            written[name] = written.get(name, 0) + frame.height
        if progress is not None:
            progress(d + 1, config.days)
    return written
