"""Benchmark: return/risk metrics for many strategies, obsbench versus its peers.

Data: S strategies x T daily returns (default 2,000 x 2,520 = 5.04M rows) in the canonical
long frame [strategy, ts, ret] (student-t returns, seeded). Five metrics per strategy:
Sharpe, Sortino, max drawdown, 95% historical VaR, annual volatility.

Stages (each in a fresh subprocess, so peak memory is the stage's own):

  a    empyrical-reloaded per strategy on pandas Series (pandas groupby, as its users work)
  a2   empyrical-reloaded on one T x S array (its best case; VaR via np.percentile axis=0)
  c    a minimal hand-written polars group_by of the five metrics (the floor to beat)
  o    obsbench: group_by("strategy").agg(...) of its own five expressions
  o_all  obsbench: strategy_summary (every metric: 16 columns)
  jqs  jquantstats (polars port of quantstats) on its wide frame, if installed

Usage::

    .venv/bin/python benchmarks/bench_returns.py            # full size
    .venv/bin/python benchmarks/bench_returns.py --quick    # 200 x 504, seconds

Wall time is best of ``--repeat`` runs after a warm-up; CPU time is that run's process
time (steadier on a shared machine); peak MB is the growth of peak RSS over the stage's
first run, measured after the data were built.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import measure, threads  # the shared harness next to this file

STAGES = ("a", "a2", "c", "o", "o_all", "jqs")
LABELS = {
    "a": "empyrical per-strategy (pandas Series)",
    "a2": "empyrical 2-D array",
    "c": "hand-written polars group_by",
    "o": "obsbench group_by(5 expressions)",
    "o_all": "obsbench strategy_summary (all)",
    "jqs": "jquantstats (wide polars frame)",
}
SQRT_252 = math.sqrt(252)


def make_long(strategies: int, periods: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ret = rng.standard_t(4, size=(strategies, periods)) * 0.01 + 0.0003
    ts = pl.datetime_range(
        pl.datetime(2014, 1, 1, time_zone="UTC"),
        pl.datetime(2014, 1, 1, time_zone="UTC") + pl.duration(days=periods - 1),
        "1d",
        eager=True,
    ).dt.cast_time_unit("us")
    names = pl.Series([f"s{i:05d}" for i in range(strategies)])
    return pl.DataFrame(
        {
            "strategy": names.gather(np.repeat(np.arange(strategies), periods)),
            "ts": pl.concat([ts] * strategies),
            "ret": ret.ravel(),
        }
    )


# ---------------------------------------------------------------------------- stages


def stage_fn(stage: str, long: pl.DataFrame) -> Callable[[], object]:
    """Prepare a stage's input outside the timing and return the timed callable."""
    if stage == "a":
        import empyrical as ep

        pdf = long.to_pandas().set_index("ts")

        def run_a() -> object:
            out = {}
            for name, s in pdf.groupby("strategy")["ret"]:
                out[name] = (
                    ep.sharpe_ratio(s),
                    ep.sortino_ratio(s),
                    ep.max_drawdown(s),
                    ep.value_at_risk(s, 0.05),
                    ep.annual_volatility(s),
                )
            return out

        return run_a
    if stage == "a2":
        import empyrical as ep

        wide = long.pivot(on="strategy", index="ts", values="ret").drop("ts").to_numpy()

        def run_a2() -> object:
            return (
                ep.sharpe_ratio(wide),
                ep.sortino_ratio(wide),
                ep.max_drawdown(wide),
                np.percentile(wide, 5, axis=0),
                ep.annual_volatility(wide),
            )

        return run_a2
    if stage == "c":
        r = pl.col("ret")
        wealth = (1 + r).cum_prod()
        exprs = [
            (r.mean() / r.std() * SQRT_252).alias("sharpe_ratio"),
            (r.mean() * 252 / ((r.clip(upper_bound=0) ** 2).mean().sqrt() * SQRT_252)).alias(
                "sortino_ratio"
            ),
            (wealth / wealth.cum_max() - 1).min().alias("max_drawdown"),
            r.quantile(0.05, interpolation="linear").alias("value_at_risk"),
            (r.std() * SQRT_252).alias("annual_volatility"),
        ]
        return lambda: long.group_by("strategy").agg(exprs)
    if stage == "o":
        import obsbench.metrics as obm

        exprs = [
            obm.sharpe_ratio("ret"),
            obm.sortino_ratio("ret"),
            obm.max_drawdown("ret"),
            obm.value_at_risk("ret", 0.95),
            obm.annual_volatility("ret"),
        ]
        return lambda: long.group_by("strategy").agg(exprs)
    if stage == "o_all":
        import obsbench.metrics as obm

        return lambda: obm.strategy_summary(long)
    if stage == "jqs":
        from jquantstats import Data

        wide = long.pivot(on="strategy", index="ts", values="ret").rename({"ts": "date"})
        wide = wide.with_columns(pl.col("date").dt.replace_time_zone(None))

        def run_jqs() -> object:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = Data.from_returns(wide).stats
                return (
                    st.sharpe(periods=252),
                    st.sortino(periods=252),
                    st.max_drawdown(),
                    st.value_at_risk(),
                    st.volatility(periods=252),
                )

        return run_jqs
    raise SystemExit(f"unknown stage {stage!r}; use one of {STAGES}")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stage(stage: str, strategies: int, periods: int, repeat: int) -> dict[str, float]:
    """Run one stage in this process; return timings and peak memory growth."""
    long = make_long(strategies, periods)
    fn = stage_fn(stage, long)
    base = _rss_mb()
    fn()  # first run: peak memory, and the warm-up
    peak = _rss_mb() - base
    timing = measure(fn, repeat=repeat, warmup=0)
    return {"wall_s": timing.wall_s, "cpu_s": timing.cpu_s, "peak_mb": peak}


def check_agreement(strategies: int, periods: int) -> dict[str, float]:
    """Largest relative difference from empyrical's 2-D results, per contender."""
    import empyrical as ep

    long = make_long(strategies, periods)
    wide = long.pivot(on="strategy", index="ts", values="ret").drop("ts").to_numpy()
    ref = {
        "sharpe_ratio": ep.sharpe_ratio(wide),
        "sortino_ratio": ep.sortino_ratio(wide),
        "max_drawdown": ep.max_drawdown(wide),
        "value_at_risk": np.percentile(wide, 5, axis=0),
        "annual_volatility": ep.annual_volatility(wide),
    }
    worst = {}
    for stage in ("o", "c"):
        got = stage_fn(stage, long)().sort("strategy")
        worst[stage] = max(
            float(np.max(np.abs(got[col].to_numpy() - expected) / np.abs(expected)))
            for col, expected in ref.items()
        )
    return worst


def available(stage: str) -> bool:
    if stage != "jqs":
        return True
    try:
        import jquantstats  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 strategies x 504 days")
    parser.add_argument("--strategies", type=int)
    parser.add_argument("--periods", type=int)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage
    args = parser.parse_args()
    strategies = args.strategies or (200 if args.quick else 2000)
    periods = args.periods or (504 if args.quick else 2520)

    if args.stage:
        print(json.dumps(run_stage(args.stage, strategies, periods, args.repeat)))
        return

    rows = strategies * periods
    print(f"bench_returns: {strategies} strategies x {periods} periods = {rows:_} rows")
    print(f"threads: {threads()}, polars {pl.__version__}")
    agreement = check_agreement(50, 300)
    print(
        f"max relative difference from empyrical: obsbench {agreement['o']:.1e}, "
        f"polars sketch {agreement['c']:.1e} (its drawdown ignores a first-day loss)"
    )
    results: dict[str, dict[str, float]] = {}
    for stage in args.stages.split(","):
        if not available(stage):
            print(f"{stage}: skipped ({LABELS[stage]} not installed)")
            continue
        cmd = [sys.executable, __file__, "--stage", stage, "--repeat", str(args.repeat)]
        cmd += ["--strategies", str(strategies), "--periods", str(periods)]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(f"{stage}: FAILED\n{proc.stderr[-2000:]}")
            continue
        results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[stage]
        print(
            f"  {stage:6s} {LABELS[stage]:42s} wall {r['wall_s']:8.3f} s  "
            f"cpu {r['cpu_s']:8.3f} s  peak +{r['peak_mb']:7.0f} MB"
        )

    print("\nname,peer,obsbench_s,peer_s,ratio,obsbench_cpu_s,peer_cpu_s,cpu_ratio")
    for ours in ("o", "o_all"):
        for peer in ("a", "a2", "c", "jqs"):
            if ours in results and peer in results:
                o, p = results[ours], results[peer]
                print(
                    f"{ours},{peer},{o['wall_s']:.4f},{p['wall_s']:.4f},"
                    f"{p['wall_s'] / o['wall_s']:.2f},{o['cpu_s']:.4f},{p['cpu_s']:.4f},"
                    f"{p['cpu_s'] / o['cpu_s']:.2f}"
                )
    if {"o", "a", "a2", "c"} <= results.keys():
        o = results["o"]
        print("\ntargets (wall | cpu):")
        for peer, goal in (("a", ">= 5x"), ("a2", "> 1x"), ("c", ">= 1x")):
            p = results[peer]
            print(
                f"  o vs {peer} {goal}: {p['wall_s'] / o['wall_s']:.2f}x | "
                f"{p['cpu_s'] / o['cpu_s']:.2f}x"
            )


if __name__ == "__main__":
    main()
