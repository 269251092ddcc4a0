from __future__ import annotations

from pathlib import Path

import pytest

from obsbench.dashboards import memory

linux = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


@linux
def test_rss_bytes_reads_the_kernel_s_figure():
    assert abs(memory.rss_bytes() / 1024 - _rss_kb()) < 2048  # within 2 MB of VmRSS


@linux
def test_release_free_memory_returns_freed_heap_pages():
    """Freed small allocations stay resident until the heap is trimmed (glibc)."""
    # 40 MB of malloc'd blocks (above pymalloc's 512 bytes), one in 50 kept: the heap's
    # top cannot shrink on its own.
    blocks = [bytearray(2000) for _ in range(20_000)]
    keep = blocks[::50]
    del blocks
    before = _rss_kb()
    assert memory.release_free_memory() is True
    assert _rss_kb() < before - 10_000  # more than 10 MB given back
    assert keep  # (held on purpose until now)


@linux
def test_heap_bytes_follows_glibc_allocations_and_frees():
    before = memory.heap_bytes()
    blocks = [bytearray(2000) for _ in range(10_000)]  # 20 MB from malloc
    during = memory.heap_bytes()
    del blocks
    after = memory.heap_bytes()
    grown = during["glibc", "in_use"] - before["glibc", "in_use"]
    assert 19e6 < grown < 25e6
    assert after["glibc", "in_use"] < during["glibc", "in_use"] - 19e6
    assert after["glibc", "free"] > 0


def test_heap_bytes_counts_the_arrow_pool():
    pa = pytest.importorskip("pyarrow")
    before = memory.heap_bytes()["arrow", "in_use"]
    array = pa.array(range(1_000_000), type=pa.int64())  # 8 MB from Arrow's pool
    assert memory.heap_bytes()["arrow", "in_use"] - before >= 8_000_000
    del array
    assert memory.heap_bytes()["arrow", "in_use"] == before


_SCANS = """
import os, sys, threading
import polars as pl
from obsbench.dashboards import memory

print(memory.bound_polars_io_threads(int(sys.argv[2])))
files = sorted(str(p) for p in __import__("pathlib").Path(sys.argv[1]).glob("*.parquet"))

def scan():
    for _ in range(10):
        pl.scan_parquet(files).select(pl.col("a").sum()).collect()

threads = [threading.Thread(target=scan) for _ in range(12)]
[t.start() for t in threads]
[t.join() for t in threads]
names = [open(f"/proc/self/task/{t}/comm").read() for t in os.listdir("/proc/self/task")]
print(sum(n.startswith("tokio") for n in names))
"""


@linux
@pytest.mark.parametrize(
    ("preset", "limit", "expected"),
    [
        pytest.param(None, 4, 4, id="set-before-the-first-scan"),
        pytest.param("6", 4, 6, id="an-operator-setting-wins"),
    ],
)
def test_polars_io_threads_are_bounded(tmp_path, preset, limit, expected):
    """Twelve threads scanning 40 files at once start about 55 I/O threads unbounded."""
    import os
    import subprocess
    import sys

    import polars as pl

    for i in range(40):
        pl.DataFrame({"a": range(100)}).write_parquet(tmp_path / f"p{i}.parquet")
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_BLOCKING_THREAD_COUNT"}
    if preset is not None:
        env["POLARS_MAX_BLOCKING_THREAD_COUNT"] = preset
    out = subprocess.run(
        [sys.executable, "-c", _SCANS, str(tmp_path), str(limit)],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    in_effect, tokio_threads = (int(x) for x in out.stdout.split())
    assert "may indicate a deadlock" not in out.stderr  # an intended limit is not a warning
    assert in_effect == expected
    # the runtime's async workers (one per core, at most 32) plus the bounded pool
    assert tokio_threads <= expected + min(os.cpu_count() or 1, 32)
