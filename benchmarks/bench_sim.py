"""Simulator throughput: obsbench.sim vs a naive row-by-row peer, and the 30-day history.

Run: ``.venv/bin/python benchmarks/bench_sim.py [--quick]``

1. ``simulate_day`` with the default platform (all datasets of one day), rows/s counted over
   all datasets and over requests alone.
2. The same day's request stream generated row by row in pure Python (``random`` module,
   list of tuples -> polars), the naive peer. obsbench's time includes every other dataset
   too, so the requests ratio is conservative.
3. (skipped with ``--quick``) ``sim --days 30``: ``write_history`` of the default config into a
   temporary store, and the same 30 days simulated without writing.
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from harness import compare, print_table, threads
from obsbench.sim import SimConfig, simulate_day, write_history
from obsbench.sim.config import FLOW
from obsbench.store import Store

US = 1_000_000


def _poisson(rnd: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small per-second rates of the polling traffic
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p <= limit:
            return k
        k += 1


def peer_requests(cfg: SimConfig, day: int) -> pl.DataFrame:
    """The day's request stream built one row at a time (the naive approach)."""
    rnd = random.Random(cfg.seed * 1000 + day)
    day0 = int(cfg.day_start(day).timestamp()) * US
    o = cfg.session_open
    open_ = day0 + (o.hour * 3600 + o.minute * 60) * US
    session = cfg.session_seconds
    rows: list[tuple] = []
    # health checks
    for i, svc in enumerate(cfg.services):
        for k in range(86_400 // cfg.health_interval_s):
            ts = (
                day0 + (i * 997_000) % (cfg.health_interval_s * US) + k * cfg.health_interval_s * US
            )
            status = 503 if rnd.random() < 0.001 else 200
            rows.append(
                (ts, svc, "GET /healthz", rnd.lognormvariate(math.log(1.5), 0.3), status, None)
            )
    # web traffic, diurnal by rejection sampling
    webs = [s for s in cfg.services if s not in FLOW]
    endpoints = {"portal": ["GET /dashboard", "GET /positions", "GET /orders"],
                 "auth": ["POST /login", "POST /token/refresh"],
                 "reporting": ["GET /reports", "POST /reports/run"]}  # fmt: skip
    n_web = int(cfg.background_rps * 86_400)
    made = 0
    while made < n_web:
        h = rnd.uniform(0, 24)
        if rnd.random() > (0.25 + math.exp(-(((h - 15.5) / 3.5) ** 2))) / 1.25:
            continue
        svc = rnd.choices(webs, weights=[0.55, 0.30, 0.15][: len(webs)])[0]
        ep = rnd.choice(endpoints.get(svc, ["GET /api"]))
        status = 500 if rnd.random() < 0.002 else (404 if rnd.random() < 0.01 else 200)
        rows.append(
            (
                day0 + int(h * 3600 * US),
                svc,
                ep,
                rnd.lognormvariate(math.log(40), 0.6),
                status,
                None,
            )
        )
        made += 1
    # broker polling with per-window rate limits
    for b in cfg.brokers:
        for ep, rate, limit, svc in (
            ("quotes", cfg.broker_poll_rps, cfg.broker_quote_limit, "market-data"),
            ("orders", cfg.status_poll_rps, cfg.broker_order_limit, "broker-gateway"),
        ):
            for w in range(session):
                n = _poisson(rnd, rate)
                offsets = sorted(rnd.random() for _ in range(n))
                for rank, off in enumerate(offsets):
                    status = 429 if rank >= limit else 200
                    ts = open_ + w * US + int(off * US)
                    rows.append(
                        (
                            ts,
                            svc,
                            f"GET /brokers/{b}/{ep}",
                            rnd.lognormvariate(math.log(20), 0.5),
                            status,
                            None,
                        )
                    )
    # order flow: five nested hops per decision
    medians = (2.0, 5.0, 3.0, 2.0, 25.0)
    for _ in range(int(cfg.orders_per_strategy_day * cfg.n_strategies)):
        t0 = open_ + int(rnd.random() * (session - 900) * US)
        trace = f"{rnd.getrandbits(128):032x}"
        self_ms = [rnd.lognormvariate(math.log(m), 0.5) for m in medians]
        start = t0
        for i, svc in enumerate(FLOW):
            dur = sum(self_ms[i:])
            status = 503 if rnd.random() < 0.001 else 200
            rows.append((start, svc, f"hop-{i}", dur, status, trace))
            start += int(self_ms[i] * 500)
            if status != 200:
                break
    frame = pl.DataFrame(
        rows,
        schema={
            "ts": pl.Int64,
            "service": pl.String,
            "endpoint": pl.String,
            "latency_ms": pl.Float64,
            "status_code": pl.Int64,
            "trace_id": pl.String,
        },
        orient="row",
    )
    return frame.with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")),
        pl.col("status_code").cast(pl.Int32),
        ok=pl.col("status_code") < 400,
    ).sort("ts")


def main() -> None:
    quick = "--quick" in sys.argv
    cfg = SimConfig()
    print(f"# obsbench.sim benchmark ({threads()})")
    day = simulate_day(cfg, 0)
    total = sum(f.height for f in day.values())
    n_req = day["requests"].height
    peer_rows = peer_requests(cfg, 0).height
    print(
        f"# one default day: {total:_} rows over {len(day)} datasets, {n_req:_} requests "
        f"(peer builds {peer_rows:_} request rows)"
    )
    results = [
        compare("simulate_day (all datasets)", lambda: simulate_day(cfg, 0), None, rows=total),
        compare("day of requests vs row-by-row python", lambda: simulate_day(cfg, 0),
                lambda: peer_requests(cfg, 0), peer="pure python loop", rows=n_req, repeat=2),
    ]  # fmt: skip
    print_table(results)
    if quick:
        return

    print("\n# sim --days 30 (default sizes)")
    t0 = time.perf_counter()
    c0 = time.process_time()
    rows = 0
    req = 0
    for d in range(cfg.days):
        frames = simulate_day(cfg, d)
        rows += sum(f.height for f in frames.values())
        req += frames["requests"].height
    wall = time.perf_counter() - t0
    print(
        f"simulate 30 days (no store): {wall:.1f} s wall, {time.process_time() - c0:.1f} s CPU, "
        f"{rows:_} rows ({rows / wall:,.0f} rows/s), {req:_} requests ({req / wall:,.0f} rows/s)"
    )
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home))
        t0 = time.perf_counter()
        written = write_history(store, cfg)
        wall = time.perf_counter() - t0
        rows_w = sum(written.values())
        size = sum(p.stat().st_size for p in Path(home).rglob("*.parquet")) / 1e6
        print(
            f"write_history 30 days -> store: {wall:.1f} s wall, {rows_w:_} rows "
            f"({rows_w / wall:,.0f} rows/s incl. Parquet writes), {size:,.0f} MB on disk"
        )
        counts = store.counts()
        print("rows per dataset:", ", ".join(f"{k}={v:_}" for k, v in sorted(counts.items())))
        assert counts["requests"] >= 10_000_000, counts["requests"]


if __name__ == "__main__":
    main()
