"""Benchmark: execution summary over N fills with their orders and quotes, obsbench vs pandas.

Data (seeded, vectorised numpy): N fills (default 10,000,000) of N/2 orders (Poisson
number of fills per order, so ~13% of orders have none and ~20% stay partially filled),
50 strategies, 200 symbols, 4 venues, 3 brokers, and one quote per symbol per second over
a 6.5-hour session (4.68 M quotes). Both sides compute the same thing:

- validation: sides in {buy, sell}, positive prices/quantities, no nulls, unique ids,
  fills of unknown orders, side/symbol mismatches, fills before the decision, overfill;
- the mid at each fill's time (backward as-of join by symbol);
- per order: fill totals, first fill time, arrival and fill-mid slippage, execution and
  opportunity cost (unfilled quantity at the symbol's last mid), implementation shortfall;
- per (strategy, symbol, venue): counts, quantities, fill rates, notional, fees,
  quantity-weighted slippage (arrival and mid), IS in currency and bps, and the p50/p95/p99
  of decision -> first fill latency.

The pandas side is written the way an analyst would (``merge_asof``, ``groupby().agg``,
``groupby().quantile``), vectorised throughout. Before the timed runs both sides are run on a
small sample and their outputs compared column by column.

Each side runs in a fresh subprocess that builds the data, then times the computation
(harness ``measure``: best of ``--repeat`` after ``--warmup``). Peak memory is the highest
RSS sampled every 5 ms during the first timed run minus the RSS just before it, compared
with the input's in-memory size (polars ``estimated_size``, pandas ``memory_usage(deep)``).

Usage::

    .venv/bin/python benchmarks/bench_execution.py               # 10 M fills
    .venv/bin/python benchmarks/bench_execution.py --fills 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Comparison, Timing, measure, print_table, threads

N_STRATEGIES, N_SYMBOLS, VENUES, BROKERS = (
    50,
    200,
    ("XNAS", "XNYS", "BATS", "IEXG"),
    (
        "ibkr",
        "alpaca",
        "tradier",
    ),
)
SESSION_S = 6 * 3600 + 1800
OPEN_US = 1_704_202_200_000_000  # 2024-01-02 13:30 UTC
KEY = ["strategy", "symbol", "venue"]


# --------------------------------------------------------------------------- data


def make_arrays(n_fills: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_orders = max(n_fills // 2, 1)
    # quotes: one per symbol per second, a random walk per symbol
    n_q = SESSION_S
    px0 = np.exp(np.log(100.0) + 0.6 * rng.standard_normal(N_SYMBOLS))
    steps = rng.standard_normal((N_SYMBOLS, n_q)) * 2e-4
    mid = px0[:, None] * np.exp(np.cumsum(steps, axis=1))
    half = mid * 2e-4
    q_sym = np.repeat(np.arange(N_SYMBOLS), n_q)
    q_ts = OPEN_US + np.tile(np.arange(n_q, dtype=np.int64) * 1_000_000, N_SYMBOLS)
    quotes = {
        "symbol": q_sym,
        "ts": q_ts,
        "bid": (mid - half).ravel(),
        "ask": (mid + half).ravel(),
        "mid": mid.ravel(),
    }
    # orders
    o_sym = rng.integers(0, N_SYMBOLS, n_orders)
    o_sec = rng.integers(1, n_q - 120, n_orders)
    o_ts = OPEN_US + o_sec * 1_000_000 + rng.integers(0, 1_000_000, n_orders)
    o_side = rng.integers(0, 2, n_orders)  # 0 buy, 1 sell
    arrival = mid[o_sym, o_sec]
    # fills: order of each fill (sorted), Poisson-like counts
    f_order = np.sort(rng.integers(0, n_orders, n_fills))
    f_qty = np.round(rng.lognormal(np.log(200.0), 0.6, n_fills)) + 1.0
    per_order = np.bincount(f_order, weights=f_qty, minlength=n_orders)
    partial = rng.random(n_orders) < 0.2
    o_qty = per_order + np.where(partial | (per_order == 0), 100.0, 0.0)
    f_ts = o_ts[f_order] + rng.exponential(50_000.0, n_fills).astype(np.int64) + 1
    sign = np.where(o_side[f_order] == 0, 1.0, -1.0)
    f_px = arrival[f_order] * (1.0 + sign * (2.0 + rng.standard_normal(n_fills)) / 1e4)
    orders = {
        "order_id": np.arange(n_orders),
        "ts": o_ts,
        "strategy": rng.integers(0, N_STRATEGIES, n_orders),
        "symbol": o_sym,
        "side": o_side,
        "qty": o_qty,
        "arrival_px": arrival,
        "venue": rng.integers(0, len(VENUES), n_orders),
        "broker": rng.integers(0, len(BROKERS), n_orders),
        "status": np.where(partial, 1, 2),
    }
    fills = {
        "fill_id": np.arange(n_fills),
        "order_id": f_order,
        "ts": f_ts,
        "symbol": o_sym[f_order],
        "side": o_side[f_order],
        "qty": f_qty,
        "px": f_px,
        "fee": 0.3 * f_qty * f_px / 1e4,
        "venue": orders["venue"][f_order],
    }
    return {"orders": orders, "fills": fills, "quotes": quotes}


def _labels(codes: np.ndarray, names: list[str]) -> pl.Series:
    return pl.Series(np.asarray(names, dtype=object)[codes], dtype=pl.String)


def _ids(prefix: str, ints: np.ndarray) -> pl.Series:
    return pl.Series(ints).cast(pl.String).str.zfill(9).str.replace(r"^", prefix)


def to_polars(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, pl.DataFrame]:
    syms = [f"S{i:03d}" for i in range(N_SYMBOLS)]
    strategies = [f"strat-{i:02d}" for i in range(N_STRATEGIES)]
    ts = pl.Datetime("us", "UTC")
    o, f, q = arrays["orders"], arrays["fills"], arrays["quotes"]
    orders = pl.DataFrame(
        {
            "order_id": _ids("O", o["order_id"]),
            "ts": pl.Series(o["ts"]).cast(ts),
            "strategy": _labels(o["strategy"], strategies),
            "symbol": _labels(o["symbol"], syms),
            "side": _labels(o["side"], ["buy", "sell"]),
            "qty": o["qty"],
            "arrival_px": o["arrival_px"],
            "limit_px": pl.Series([None] * len(o["qty"]), dtype=pl.Float64),
            "venue": _labels(o["venue"], list(VENUES)),
            "broker": _labels(o["broker"], list(BROKERS)),
            "status": _labels(o["status"], ["new", "partially_filled", "filled"]),
        }
    )
    fills = pl.DataFrame(
        {
            "fill_id": _ids("F", f["fill_id"]),
            "order_id": _ids("O", f["order_id"]),
            "ts": pl.Series(f["ts"]).cast(ts),
            "symbol": _labels(f["symbol"], syms),
            "side": _labels(f["side"], ["buy", "sell"]),
            "qty": f["qty"],
            "px": f["px"],
            "fee": f["fee"],
            "venue": _labels(f["venue"], list(VENUES)),
        }
    )
    quotes = pl.DataFrame(
        {
            "symbol": _labels(q["symbol"], syms),
            "ts": pl.Series(q["ts"]).cast(ts),
            "bid": q["bid"],
            "ask": q["ask"],
            "mid": q["mid"],
        }
    )
    return {"orders": orders, "fills": fills, "quotes": quotes}


def to_pandas(frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    # pandas' own default string dtype (pandas >= 3: "str", Arrow-backed), as an analyst
    # reading the same Parquet files with pd.read_parquet would get.
    return {k: v.to_pandas() for k, v in frames.items()}


# --------------------------------------------------------------------------- the two sides


def run_obsbench(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    from obsbench.metrics.execution import execution_summary

    return execution_summary(frames["orders"], frames["fills"], frames["quotes"])


def run_pandas(frames: dict[str, Any]) -> Any:
    import pandas as pd

    orders, fills, quotes = frames["orders"], frames["fills"], frames["quotes"]
    problems: list[str] = []
    # schema-level checks (what schemas.validate checks on these columns)
    for name, df, pos in (
        ("orders", orders, ["qty", "arrival_px"]),
        ("fills", fills, ["qty", "px"]),
        ("quotes", quotes, ["bid", "ask", "mid"]),
    ):
        if df.drop(columns=["limit_px"], errors="ignore").isna().any().any():
            problems.append(f"nulls in {name}")
        problems.extend(f"{name}.{c} not > 0" for c in pos if not (df[c] > 0).all())
    if not (fills["fee"] >= 0).all():
        problems.append("negative fee")
    for name, df in (("orders", orders), ("fills", fills)):
        if not df["side"].isin(["buy", "sell"]).all():
            problems.append(f"{name}.side")
    if orders["order_id"].duplicated().any() or fills["fill_id"].duplicated().any():
        problems.append("duplicate ids")
    if not (quotes["ask"] >= quotes["bid"]).all():
        problems.append("ask < bid")
    # per-order fill stats and cross checks
    f = fills.assign(notional=fills["qty"] * fills["px"])
    g = f.groupby("order_id", sort=False)
    stats = g.agg(
        n_fills=("qty", "size"),
        filled_qty=("qty", "sum"),
        fill_notional=("notional", "sum"),
        fees=("fee", "sum"),
        first_fill_ts=("ts", "min"),
        fill_side=("side", "first"),
        n_sides=("side", "nunique"),
        fill_symbol=("symbol", "first"),
        n_symbols=("symbol", "nunique"),
    )
    o = orders.merge(stats, left_on="order_id", right_index=True, how="left", indicator=True)
    if len(stats) != (o["_merge"] == "both").sum():
        problems.append("fills without orders")
    has = o["_merge"] == "both"
    if ((o["n_sides"] > 1) | (has & (o["fill_side"] != o["side"]))).any():
        problems.append("side mismatch")
    if ((o["n_symbols"] > 1) | (has & (o["fill_symbol"] != o["symbol"]))).any():
        problems.append("symbol mismatch")
    if (o["first_fill_ts"] < o["ts"]).any():
        problems.append("fill before decision")
    if (o["filled_qty"] > o["qty"] * (1 + 1e-9)).any():
        problems.append("overfill")
    if problems:
        raise ValueError(problems)
    o = o.drop(columns=["_merge", "fill_side", "n_sides", "fill_symbol", "n_symbols"])
    for c in ("n_fills", "filled_qty", "fill_notional", "fees"):
        o[c] = o[c].fillna(0)
    # mid at fill time -> per-order quantity-weighted fill-mid slippage
    fq = pd.merge_asof(
        f[["order_id", "ts", "symbol", "side", "qty", "px"]].sort_values("ts"),
        quotes[["symbol", "ts", "mid"]].sort_values("ts"),
        on="ts",
        by="symbol",
        direction="backward",
    )
    sgn = np.where(fq["side"] == "buy", 1.0, -1.0)
    slip = sgn * (fq["px"] - fq["mid"]) / fq["mid"] * 1e4
    fq["w"] = fq["qty"].where(slip.notna(), 0.0)
    fq["sw"] = (slip * fq["qty"]).fillna(0.0)
    mid_slip = fq.groupby("order_id", sort=False)[["sw", "w"]].sum()
    o = o.merge(mid_slip, left_on="order_id", right_index=True, how="left")
    o["slippage_mid_bps"] = o["sw"] / o["w"].where(o["w"] > 0)
    # per-order costs
    end_px = quotes.sort_values("ts").groupby("symbol")["mid"].last().rename("end_px")
    o = o.merge(end_px, left_on="symbol", right_index=True, how="left")
    s = np.where(o["side"] == "buy", 1.0, -1.0)
    filled = o["filled_qty"] > 0
    o["avg_px"] = (o["fill_notional"] / o["filled_qty"]).where(filled)
    o["slippage_bps"] = s * (o["avg_px"] - o["arrival_px"]) / o["arrival_px"] * 1e4
    o["decision_notional"] = o["qty"] * o["arrival_px"]
    o["execution_cost"] = s * (o["fill_notional"] - o["filled_qty"] * o["arrival_px"])
    unfilled = o["qty"] - o["filled_qty"]
    o["opportunity_cost"] = np.where(
        unfilled == 0, 0.0, s * unfilled * (o["end_px"] - o["arrival_px"])
    )
    o["implementation_shortfall"] = o["execution_cost"] + o["opportunity_cost"] + o["fees"]
    o["latency_ms"] = (o["first_fill_ts"] - o["ts"]).dt.total_seconds() * 1000.0
    o["full"] = o["filled_qty"] >= o["qty"] * (1 - 1e-9)
    o["w_arr"] = o["filled_qty"].where(o["slippage_bps"].notna(), 0.0)
    o["sw_arr"] = (o["slippage_bps"] * o["filled_qty"]).fillna(0.0)
    o["w_mid"] = o["filled_qty"].where(o["slippage_mid_bps"].notna(), 0.0)
    o["sw_mid"] = (o["slippage_mid_bps"] * o["filled_qty"]).fillna(0.0)
    grouped = o.groupby(KEY, sort=True)
    out = grouped.agg(
        orders=("order_id", "size"),
        filled_orders=("full", "sum"),
        fills=("n_fills", "sum"),
        ordered_qty=("qty", "sum"),
        filled_qty=("filled_qty", "sum"),
        fill_notional=("fill_notional", "sum"),
        fees=("fees", "sum"),
        sw_arr=("sw_arr", "sum"),
        w_arr=("w_arr", "sum"),
        sw_mid=("sw_mid", "sum"),
        w_mid=("w_mid", "sum"),
        execution_cost=("execution_cost", "sum"),
        opportunity_cost=("opportunity_cost", "sum"),
        implementation_shortfall=("implementation_shortfall", "sum"),
        decision_notional=("decision_notional", "sum"),
    )
    out["fill_rate"] = out["filled_qty"] / out["ordered_qty"]
    out["order_fill_rate"] = out["filled_orders"] / out["orders"]
    out["slippage_bps"] = out["sw_arr"] / out["w_arr"]
    out["slippage_mid_bps"] = out["sw_mid"] / out["w_mid"]
    out["implementation_shortfall_bps"] = (
        out["implementation_shortfall"] / out["decision_notional"] * 1e4
    )
    lat = grouped["latency_ms"].quantile([0.5, 0.95, 0.99]).unstack()
    lat.columns = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
    out = out.join(lat).drop(columns=["sw_arr", "w_arr", "sw_mid", "w_mid", "decision_notional"])
    return out.reset_index()


# --------------------------------------------------------------------------- measurement


class PeakRss:
    """Highest RSS of this process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def child(side: str, n_fills: int, repeat: int, warmup: int) -> dict[str, Any]:
    frames = to_polars(make_arrays(n_fills))
    if side == "pandas":
        data: Any = to_pandas(frames)
        del frames
        input_mb = sum(df.memory_usage(deep=True).sum() for df in data.values()) / 2**20
        fn = lambda: run_pandas(data)  # noqa: E731
    else:
        data = frames
        input_mb = sum(df.estimated_size() for df in data.values()) / 2**20
        fn = lambda: run_obsbench(data)  # noqa: E731
    gc.collect()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
    timing = measure(fn, repeat=repeat, warmup=warmup) if repeat else Timing(first, first, 0.0)
    return {
        "wall_s": timing.wall_s,
        "cpu_s": timing.cpu_s,
        "first_s": first,
        "peak_mb": rss.growth_mb,
        "input_mb": input_mb,
    }


def check_agreement(n_fills: int = 20_000) -> None:
    """Both sides give the same table on a small sample (else the timing is meaningless)."""
    import pandas as pd

    frames = to_polars(make_arrays(n_fills, seed=1))
    ours = run_obsbench(frames).to_pandas()
    theirs = run_pandas(to_pandas(frames))
    assert list(ours[KEY].itertuples(index=False)) == list(theirs[KEY].itertuples(index=False))
    for col in ours.columns.difference(KEY):
        pd.testing.assert_series_equal(
            ours[col].astype(float), theirs[col].astype(float), check_names=False, rtol=1e-9
        )
    print(f"# agreement check on {n_fills:,} fills: {len(ours)} groups, all columns equal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per side (best kept)")
    parser.add_argument("--peer-repeat", type=int, default=1)
    parser.add_argument("--child", choices=["obsbench", "pandas"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        repeat = args.repeat if args.child == "obsbench" else args.peer_repeat
        print(json.dumps(child(args.child, args.fills, repeat, warmup=0)))
        return

    print(f"# threads: {threads()}")
    check_agreement()
    results = {}
    for side in ("obsbench", "pandas"):
        cmd = [sys.executable, __file__, "--child", side, "--fills", str(args.fills)]
        cmd += ["--repeat", str(args.repeat), "--peer-repeat", str(args.peer_repeat)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"# {side}: {results[side]}", flush=True)
    ours, theirs = results["obsbench"], results["pandas"]
    row = Comparison(
        f"execution_summary {args.fills:_} fills",
        Timing(ours["wall_s"], ours["cpu_s"], ours["peak_mb"]),
        Timing(theirs["wall_s"], theirs["cpu_s"], theirs["peak_mb"]),
        "pandas",
        rows=args.fills,
    )
    print_table([row])
    print("side,input_mb,peak_growth_mb,peak_over_input")
    for side, r in results.items():
        print(f"{side},{r['input_mb']:.0f},{r['peak_mb']:.0f},{r['peak_mb'] / r['input_mb']:.2f}")
    ratio = row.ratio or 0.0
    print(
        f"# speed-up {ratio:.1f}x (target >= 10x); obsbench peak {ours['peak_mb']:.0f} MB = "
        f"{ours['peak_mb'] / ours['input_mb']:.2f}x its input (target <= 2x)"
    )


if __name__ == "__main__":
    main()
