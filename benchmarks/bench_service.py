"""Benchmark: per-service, per-minute service health over request logs.

Query (the same in every contender): per service and 1-minute bucket of ``requests`` —
request count, error rate, exact p50/p95/p99 latency (linear interpolation) and SLA
attainment (``ok and latency_ms <= 250``).

Stages (each in a fresh subprocess, reading the same Parquet file outside the timing, so
peak memory is the stage's own):

  obsbench  ``obsbench.metrics.service_buckets(df, every="1m")`` on an eager polars frame
  pandas    ``groupby([service, Grouper(ts, "1min")])`` + ``quantile([.5, .95, .99])``
            (service as ``category``, ``observed=True``: pandas at its best)
  floor     polars ``group_by([service, ts.dt.truncate("1m")]).agg(pl.len())`` and one
            ``service == s`` comparison per service: the grouping alone, no metric (what any
            polars query of the same groups pays before computing anything)
  duckdb    SQL ``GROUP BY service, date_trunc('minute', ts)`` with
            ``quantile_cont(latency_ms, [0.5, 0.95, 0.99])`` on the Arrow table (zero copy)
  ooc_sliced  obsbench on ``pl.scan_parquet`` of ``--out-of-core-rows`` rows written in
            chunks: ``collect_by_time(scan, service_buckets, slice="1d")`` (one streaming
            collect per day); peak RSS from ``RUSAGE_CHILDREN`` of a wrapper process
  ooc_single  the same query as one ``collect(engine="streaming")`` (for comparison: exact
            quantiles keep every latency of a group, so this holds the whole column)

Every stage's result is checked against obsbench's (same groups; values to 1e-9).

Usage::

    .venv/bin/python benchmarks/bench_service.py                 # 10M rows, 100M out-of-core
    .venv/bin/python benchmarks/bench_service.py --rows 1000000 --out-of-core-rows 0
    .venv/bin/python benchmarks/bench_service.py --anomaly-days 30  # + detector scores

With ``--anomaly-days N`` it also simulates N days with the seeded simulator (one history
with 2 random incidents a day, one clean) and prints the precision and recall of the
anomaly detectors against the injected incidents.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import measure, threads

SERVICES = (
    "market-data", "signal", "risk-check", "order-router", "broker-gateway",
    "portal", "auth", "reporting",
)  # fmt: skip
MEDIAN_MS = np.array([37.0, 35.0, 30.0, 27.0, 25.0, 45.0, 15.0, 300.0])
WEIGHTS = np.array([0.40, 0.05, 0.05, 0.05, 0.15, 0.15, 0.10, 0.05])
THRESHOLD_MS = 250.0
QS = (0.5, 0.95, 0.99)
START = datetime(2024, 1, 1, tzinfo=UTC)
ROWS_PER_SECOND = 20.0  # time span of the data: rows / this rate


def make_requests(rows: int, *, seed: int, t0_s: float = 0.0) -> pl.DataFrame:
    """``rows`` canonical request rows, time-ordered from ``START + t0_s`` at ~20 rows/s."""
    rng = np.random.default_rng(seed)
    svc = rng.choice(len(SERVICES), size=rows, p=WEIGHTS)
    offsets = t0_s + np.sort(rng.uniform(0, rows / ROWS_PER_SECOND, rows))
    latency = MEDIAN_MS[svc] * rng.lognormal(0.0, 0.6, rows)
    status = np.where(rng.random(rows) < 0.01, 503, 200).astype(np.int32)
    start_us = int(START.timestamp() * 1_000_000)
    return pl.DataFrame(
        {
            "ts": pl.Series(start_us + (offsets * 1e6).astype(np.int64)).cast(
                pl.Datetime("us", "UTC")
            ),
            "service": pl.Series(SERVICES).gather(svc),
            "endpoint": "POST /x",
            "latency_ms": latency,
            "status_code": status,
            "ok": status < 500,
            "trace_id": None,
        },
        schema_overrides={"trace_id": pl.String},
    )


# ---------------------------------------------------------------------------- stages


def run_obsbench(path: Path, repeat: int) -> tuple[dict, pl.DataFrame]:
    import obsbench.metrics as obm

    df = pl.read_parquet(path)

    def fn() -> pl.DataFrame:
        return obm.service_buckets(df, every="1m", qs=QS, threshold_ms=THRESHOLD_MS)

    timing = measure(fn, repeat=repeat)
    return timing.__dict__, fn().select(_COLS)


def run_pandas(path: Path, repeat: int) -> tuple[dict, pl.DataFrame]:
    import pandas as pd

    pdf = pd.read_parquet(path, columns=["ts", "service", "latency_ms", "ok"])
    pdf["service"] = pdf["service"].astype("category")

    def fn() -> pd.DataFrame:
        met = pdf["ok"] & (pdf["latency_ms"] <= THRESHOLD_MS)
        g = pdf.assign(met=met).groupby(
            ["service", pd.Grouper(key="ts", freq="1min")], observed=True, sort=True
        )
        q = g["latency_ms"].quantile(list(QS)).unstack()
        q.columns = ["p50", "p95", "p99"]
        out = pd.DataFrame(
            {
                "requests": g.size(),
                "error_rate": 1.0 - g["ok"].mean(),
                "sla_attainment": g["met"].mean(),
            }
        )
        return out.join(q).reset_index()

    timing = measure(fn, repeat=repeat)
    res = pl.from_pandas(fn()).with_columns(
        pl.col("service").cast(pl.String), pl.col("requests").cast(pl.UInt32)
    )
    return timing.__dict__, res.select(_COLS)


def run_floor(path: Path, repeat: int) -> tuple[dict, None]:
    """Grouping costs with no metric: the hash group_by, and one equality pass per service."""
    df = pl.read_parquet(path, columns=["ts", "service"])
    services = df["service"].unique().to_list()
    group = measure(lambda: df.group_by("service", pl.col("ts").dt.truncate("1m")).agg(pl.len()),
                    repeat=repeat)  # fmt: skip
    compare = measure(lambda: [df.select(pl.col("service") == s) for s in services],
                      repeat=repeat)  # fmt: skip
    return {"wall_s": group.wall_s, "cpu_s": group.cpu_s,
            "compare_wall_s": compare.wall_s, "services": len(services)}, None  # fmt: skip


def run_duckdb(path: Path, repeat: int) -> tuple[dict, pl.DataFrame]:
    import duckdb
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["ts", "service", "latency_ms", "ok"])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("requests", table)
    sql = f"""
        SELECT service, date_trunc('minute', ts) AS ts, count(*) AS requests,
               1.0 - avg(ok::DOUBLE) AS error_rate,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q,
               avg((ok AND latency_ms <= {THRESHOLD_MS})::DOUBLE) AS sla_attainment
        FROM requests GROUP BY ALL ORDER BY service, ts
    """

    def fn() -> object:
        return con.execute(sql).to_arrow_table()

    timing = measure(fn, repeat=repeat)
    res = pl.from_arrow(fn())
    res = res.with_columns(
        pl.col("ts").dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        if res.schema["ts"].time_zone is None  # type: ignore[union-attr]
        else pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        pl.col("requests").cast(pl.UInt32),
        *(pl.col("q").list.get(i).alias(f"p{int(q * 100)}") for i, q in enumerate(QS)),
    )
    return timing.__dict__, res.select(_COLS)


def run_ooc(data_dir: Path, sliced: bool) -> tuple[dict, pl.DataFrame]:
    import obsbench.metrics as obm

    def query(lf: pl.LazyFrame) -> pl.LazyFrame:
        return obm.service_buckets(lf, every="1m", qs=QS, threshold_ms=THRESHOLD_MS)

    t0, c0 = time.perf_counter(), time.process_time()
    scan = pl.scan_parquet(data_dir / "*.parquet")
    if sliced:
        out = obm.collect_by_time(scan, query, slice="1d")
    else:
        out = query(scan).collect(engine="streaming")
    timing = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    return timing, out.select(_COLS)


_COLS = ["service", "ts", "requests", "error_rate", "p50", "p95", "p99", "sla_attainment"]
RUNNERS = {"obsbench": run_obsbench, "pandas": run_pandas, "duckdb": run_duckdb,
           "floor": run_floor}  # fmt: skip


def child(stage: str, data: Path, out: Path, repeat: int) -> None:
    """Run one stage in this (fresh) process and write its timing and result."""
    if stage.startswith("ooc"):
        timing, result = run_ooc(data, sliced=stage == "ooc_sliced")
    else:
        timing, result = RUNNERS[stage](data, repeat)
    if result is not None:
        result.write_parquet(out / f"{stage}.parquet")
    (out / f"{stage}.json").write_text(json.dumps(timing))


def spawn(
    stage: str, data: Path, out: Path, repeat: int
) -> tuple[dict, pl.DataFrame | None, float]:
    """Run ``stage`` in a grandchild; return its timing, result and peak RSS (MB).

    The peak is ``RUSAGE_CHILDREN.ru_maxrss`` read by a wrapper process whose only child
    is the stage, so earlier stages cannot inflate it.
    """
    cmd = [sys.executable, __file__, "--child", stage, "--data", str(data), "--out", str(out),
           "--repeat", str(repeat)]  # fmt: skip
    wrapper = (
        "import resource, subprocess, sys; "
        f"subprocess.run({cmd!r}, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    peak_mb = int(proc.stdout.strip().splitlines()[-1]) / 1024
    timing = json.loads((out / f"{stage}.json").read_text())
    result = out / f"{stage}.parquet"
    return timing, pl.read_parquet(result) if result.exists() else None, peak_mb


def max_diff(a: pl.DataFrame, b: pl.DataFrame) -> float:
    """Largest absolute difference of the metric columns; inf if the groups differ."""
    a, b = a.sort("service", "ts"), b.sort("service", "ts")
    if a.height != b.height or not a.select("service", "ts").equals(b.select("service", "ts")):
        return float("inf")
    if not a["requests"].equals(b["requests"]):
        return float("inf")
    cols = ["error_rate", "p50", "p95", "p99", "sla_attainment"]
    return max(float((a[c] - b[c]).abs().max() or 0.0) for c in cols)


def write_chunks(rows: int, directory: Path, chunk: int = 5_000_000) -> int:
    """Write ``rows`` request rows as Parquet files of ``chunk`` rows (never all in memory)."""
    directory.mkdir(parents=True, exist_ok=True)
    done, i = 0, 0
    while done < rows:
        n = min(chunk, rows - done)
        make_requests(n, seed=1000 + i, t0_s=done / ROWS_PER_SECOND).write_parquet(
            directory / f"part-{i:04d}.parquet"
        )
        done, i = done + n, i + 1
    return i


# ---------------------------------------------------------------------------- anomalies


def score_anomalies(days: int) -> None:
    """Precision/recall of the detectors on seeded ``days``-day simulator histories."""
    import obsbench.metrics as obm
    from obsbench.sim import SimConfig, simulate_day

    for label, rate in (("2 incidents/day", 2.0), ("clean", 0.0)):
        cfg = SimConfig(days=days, incident_rate=rate)
        t0 = time.perf_counter()
        parts = [simulate_day(cfg, d) for d in range(cfg.days)]
        requests = pl.concat(
            [
                p["requests"].select("ts", "service", "endpoint", "latency_ms", "status_code")
                for p in parts
            ]
        )
        incidents = pl.concat([p["incidents"] for p in parts])
        sim_s = time.perf_counter() - t0
        warmup = cfg.day_start(1)  # one day of history for the seasonal baseline
        print(f"\n# anomaly detection, {days}-day seeded history ({label}, seed {cfg.seed}): "
              f"{requests.height:_} requests, {incidents.height} incidents, simulated in "
              f"{sim_s:.0f}s; scored from day 2 (warm-up)")  # fmt: skip
        print("detector,signal,kind,incidents,detected,recall,precision,event_precision,"
              "flagged,alarms,seconds")  # fmt: skip
        cases = [
            ("robust", "error_rate", "error_burst", obm.error_rate_anomalies, {}),
            ("ewma", "error_rate", "error_burst", obm.error_rate_anomalies, {"method": "ewma"}),
            ("robust", "latency_p50", "latency_spike", obm.latency_anomalies, {}),
            ("ewma", "latency_p50", "latency_spike", obm.latency_anomalies, {"method": "ewma"}),
        ]
        for name, signal, kind, fn, kw in cases:
            t0 = time.perf_counter()
            flags = fn(requests, **kw)
            s = obm.score_detections(flags, incidents, kinds=[kind], every="5m", start=warmup)
            print(f"{name},{signal},{kind},{s.incidents},{s.detected},{s.recall:.3f},"
                  f"{s.precision:.3f},{s.event_precision:.3f},{s.flagged},{s.alarms},"
                  f"{time.perf_counter() - t0:.1f}")  # fmt: skip


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out-of-core-rows", type=int, default=100_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default="obsbench,pandas,duckdb,floor")
    ap.add_argument("--ooc-stages", default="ooc_sliced,ooc_single")
    ap.add_argument("--anomaly-days", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.data), Path(args.out), args.repeat)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_service_", dir=args.tmp))
    try:
        print(f"# bench_service: {threads()}, polars {pl.__version__}")
        results: dict[str, tuple[dict, pl.DataFrame | None, float]] = {}
        if args.rows:
            path = tmp / "requests.parquet"
            make_requests(args.rows, seed=0).write_parquet(path)
            for stage in args.stages.split(","):
                results[stage] = spawn(stage, path, tmp, args.repeat)
            base = results["obsbench"][1] if "obsbench" in results else None
            print(f"\n# {args.rows:_} rows, {base.height if base is not None else '?':_} "
                  "(service, minute) groups; best of --repeat after a warm-up")  # fmt: skip
            print("stage,wall_s,cpu_s,peak_rss_mb,speedup_vs_stage,max_abs_diff_vs_obsbench")
            ours = results.get("obsbench")
            for stage, (timing, res, peak) in results.items():
                if res is None:
                    continue
                ratio = timing["wall_s"] / ours[0]["wall_s"] if ours else float("nan")
                diff = max_diff(res, ours[1]) if ours else float("nan")
                print(f"{stage},{timing['wall_s']:.3f},{timing['cpu_s']:.3f},{peak:.0f},"
                      f"{ratio:.2f},{diff:.2e}")  # fmt: skip
            if "floor" in results and "pandas" in results:
                floor, pandas_s = results["floor"][0], results["pandas"][0]["wall_s"]
                print(f"\n# floor: polars group_by of the same groups with no metric "
                      f"{floor['wall_s']:.3f} s wall "
                      f"({floor['cpu_s']:.3f} s CPU); one `service == s` pass per service "
                      f"({floor['services']}) {floor['compare_wall_s']:.3f} s; 10x pandas = "
                      f"{pandas_s / 10:.3f} s")  # fmt: skip
        if args.out_of_core_rows:
            data = tmp / "ooc"
            t0 = time.perf_counter()
            files = write_chunks(args.out_of_core_rows, data)
            gen_s = time.perf_counter() - t0
            size_gb = sum(f.stat().st_size for f in data.iterdir()) / 1e9
            print(f"\n# out-of-core: {args.out_of_core_rows:_} rows in {files} Parquet files "
                  f"({size_gb:.1f} GB, written in {gen_s:.0f}s); ooc_sliced = "
                  "collect_by_time(scan_parquet, slice='1d'), ooc_single = one "
                  "collect(engine='streaming')")  # fmt: skip
            print("stage,rows,groups,wall_s,cpu_s,peak_rss_mb,rows_per_s,same_result")
            first = None
            for stage in args.ooc_stages.split(","):
                timing, res, peak = spawn(stage, data, tmp, 1)
                same = "" if first is None else str(max_diff(res, first) == 0.0)
                first = res if first is None else first
                print(f"{stage},{args.out_of_core_rows},{res.height},{timing['wall_s']:.2f},"
                      f"{timing['cpu_s']:.2f},{peak:.0f},"
                      f"{args.out_of_core_rows / timing['wall_s']:_.0f},{same}")  # fmt: skip
        if args.anomaly_days:
            score_anomalies(args.anomaly_days)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
