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
