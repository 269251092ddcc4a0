"""Benchmark harness: time obsbench and a peer in the same process and print ratios.

A benchmark script builds its data once, then calls :func:`compare` for each entry::

    from harness import compare, print_table

    rows = [compare("sharpe 2000x2520", obsbench_fn, peer_fn, peer="empyrical")]
    print_table(rows)

Each side runs ``repeat`` times after one warm-up; the best wall time and the CPU time
of that run are kept (the machine is shared: CPU time is the steadier figure). Peak memory
is the growth of the process's peak RSS during the side's first timed run, which is
meaningful only when the heavier side runs last or in a fresh process (``--isolate``
scripts can run each side in a subprocess).
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


@dataclass(frozen=True)
class Comparison:
    name: str
    obsbench: Timing
    peer: Timing | None
    peer_name: str
    rows: int | None = None

    @property
    def ratio(self) -> float | None:
        """peer wall time / obsbench wall time: > 1 means obsbench is faster."""
        return self.peer.wall_s / self.obsbench.wall_s if self.peer else None

    @property
    def cpu_ratio(self) -> float | None:
        return self.peer.cpu_s / self.obsbench.cpu_s if self.peer and self.obsbench.cpu_s else None


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], object], *, repeat: int = 3, warmup: int = 1) -> Timing:
    """Best-of-``repeat`` wall time with its CPU time, and peak RSS growth."""
    for _ in range(warmup):
        fn()
    best: tuple[float, float] | None = None
    before = _peak_rss_mb()
    for _ in range(repeat):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu)
    assert best is not None
    return Timing(best[0], best[1], max(_peak_rss_mb() - before, 0.0))


def compare(
    name: str,
    obsbench_fn: Callable[[], object],
    peer_fn: Callable[[], object] | None,
    *,
    peer: str = "",
    rows: int | None = None,
    repeat: int = 3,
    warmup: int = 1,
) -> Comparison:
    """Time ``obsbench_fn`` and ``peer_fn`` (if any) the same way."""
    ours = measure(obsbench_fn, repeat=repeat, warmup=warmup)
    theirs = measure(peer_fn, repeat=repeat, warmup=warmup) if peer_fn else None
    return Comparison(name, ours, theirs, peer, rows)


def print_table(results: list[Comparison]) -> None:
    """Print ``name, obsbench_s, peer_s, ratio`` (+ CPU, rows/s, peak memory) as CSV."""
    print(
        "name,peer,obsbench_s,peer_s,ratio,obsbench_cpu_s,peer_cpu_s,cpu_ratio,"
        "rows_per_s,obsbench_peak_mb"
    )
    for r in results:
        peer_s = f"{r.peer.wall_s:.4f}" if r.peer else ""
        peer_cpu = f"{r.peer.cpu_s:.4f}" if r.peer else ""
        ratio = f"{r.ratio:.2f}" if r.ratio else ""
        cpu_ratio = f"{r.cpu_ratio:.2f}" if r.cpu_ratio else ""
        rps = f"{r.rows / r.obsbench.wall_s:,.0f}".replace(",", "_") if r.rows else ""
        print(
            f"{r.name},{r.peer_name},{r.obsbench.wall_s:.4f},{peer_s},{ratio},"
            f"{r.obsbench.cpu_s:.4f},{peer_cpu},{cpu_ratio},{rps},{r.obsbench.peak_rss_mb:.0f}"
        )


def threads() -> str:
    """The thread settings in force, printed with every run for context."""
    keys = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")
    return ", ".join(f"{k}={os.environ.get(k, '-')}" for k in keys) + f", cpus={os.cpu_count()}"
