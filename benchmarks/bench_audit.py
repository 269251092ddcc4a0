"""Audit store on PostgreSQL: append throughput, verification of 1M events, search on 10M.

Targets (issue #7): bulk append >= 5,000 events/s with the hash chain, single writer and 8
writers; ``verify`` of 1 million events < 10 s; a search by actor and time range on 10
million events < 200 ms.

Each measurement runs in its own fresh schema of the test database (dropped afterwards):

1. single writer: ``record_many`` of 200,000 events (validation, masking, hashing, COPY);
2. 8 writer processes, each appending 50,000 events in chunks of 5,000 (they interleave on
   the chain lock); throughput = all events / (last finish - first start), measured after
   the imports;
3. ``verify`` of 1,000,000 events (the chain built by ``record_many``), fast path (server
   formats canonical JSON, client hashes) and the field-by-field path for reference;
4. search: 10,000,000 events generated in SQL (``generate_series``; hashes computed in
   bulk with ``sha256()``, so that table is not a valid chain; it measures the indexes),
   indexes built after the load, then ``audit.search(actor=..., start=..., end=...)`` for
   a day and a week, median of 25 queries over different actors and days.

Usage: ``python benchmarks/bench_audit.py [--quick]`` (``--quick``: 10x smaller, for CI).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
from sqlalchemy import create_engine, text

sys.path.insert(0, os.path.dirname(__file__))
from harness import threads

BASE = os.environ.get(
    "OBSBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Schema:
    def __init__(self, tag: str) -> None:
        self.name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(BASE)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.url = f"{BASE}?options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        from obsbench import audit

        audit.close_store(self.url)
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def frame(n: int, start: int = 0) -> pl.DataFrame:
    i = pl.int_range(start, start + n, eager=True)
    return pl.DataFrame(
        {
            "ts": pl.datetime_range(
                T0, T0 + timedelta(milliseconds=n - 1), "1ms", eager=True, time_zone="UTC"
            ),
            "actor": "strategy:s" + (i % 50).cast(pl.String),
            "action": pl.Series(["decision", "order", "execution"] * (n // 3 + 1))[:n],
            "resource": "order/O" + (i // 3).cast(pl.String).str.zfill(9),
            "details": '{"symbol":"AAPL","qty":'
            + (100 + i % 900).cast(pl.String)
            + ',"px":'
            + (100 + i % 7).cast(pl.String)
            + ',"venue":"XNAS"}',
            "correlation_id": "c" + (i // 3).cast(pl.String),
        }
    )


def single_writer(n: int) -> float:
    from obsbench import audit

    s = Schema("single")
    try:
        data = frame(n)
        audit.open_store(s.url)  # migrate outside the timing
        t0 = time.perf_counter()
        result = audit.record_many(data, url=s.url)
        elapsed = time.perf_counter() - t0
        assert result.count == n
        assert audit.verify(url=s.url).ok
    finally:
        s.drop()
    return n / elapsed


WRITER = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
from bench_audit import frame
from obsbench.audit.store import AuditStore
url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = AuditStore(url)
chunks = [frame(5000, start=worker * n + k) for k in range(0, n, 5000)]
t0 = time.time()
for chunk in chunks:
    store.record_many(chunk)
print(json.dumps({"start": t0, "end": time.time(), "n": n}))
"""


def eight_writers(per_writer: int) -> tuple[float, bool]:
    from obsbench import audit

    s = Schema("eight")
    try:
        audit.open_store(s.url)
        here = os.path.dirname(os.path.abspath(__file__))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, s.url, str(w), str(per_writer), here],
                stdout=subprocess.PIPE,
                text=True,
            )
            for w in range(8)
        ]
        reports = [json.loads(p.communicate()[0]) for p in procs]
        total = sum(r["n"] for r in reports)
        span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        ok = audit.verify(url=s.url).ok and audit.open_store(s.url).count() == total
    finally:
        s.drop()
    return total / span, ok


def verify_million(n: int) -> tuple[float, float, float, float]:
    from obsbench import audit
    from obsbench.audit.verify import verify_store

    s = Schema("verify")
    try:
        t0 = time.perf_counter()
        for start in range(0, n, 250_000):
            audit.record_many(frame(min(250_000, n - start), start=start), url=s.url)
        build = time.perf_counter() - t0
        store = audit.open_store(s.url)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE audit_events")
        times, cpu = [], []
        for _ in range(3):
            c0 = time.process_time()
            r = verify_store(store)
            cpu.append(time.process_time() - c0)
            assert r.ok, str(r)
            assert r.checked == n
            times.append(r.elapsed_s)
        slow = verify_store(store, fast=False)
        assert slow.ok
    finally:
        s.drop()
    return min(times), slow.elapsed_s, n / build, min(cpu)


INDEXES = [
    "CREATE INDEX ix_audit_events_ts ON audit_events USING brin (ts)",
    "CREATE INDEX ix_audit_events_actor_ts ON audit_events (actor, ts)",
    "CREATE INDEX ix_audit_events_resource_ts ON audit_events (resource, ts)",
    "CREATE INDEX ix_audit_events_correlation_id ON audit_events (correlation_id)",
    "CREATE INDEX ix_audit_events_action_ts ON audit_events (action, ts)",
]

GENERATE = """
INSERT INTO audit_events
SELECT g,
       timestamptz '2025-01-01 00:00:00+00' + (g * interval '3 seconds'),
       'user:u' || lpad((hashint % 200)::text, 3, '0'),
       (ARRAY['decision','order','execution','login','access','config_change'])[1 + g % 6],
       'order/O' || lpad((g / 3)::text, 9, '0'),
       '{"qty":' || (100 + g % 900) || ',"venue":"XNAS"}',
       'c' || (g / 3),
       NULL,
       md5(g::text),
       encode(sha256(int8send(g - 1)), 'hex'),
       encode(sha256(int8send(g)), 'hex')
FROM (SELECT g, abs(hashint8(g)) AS hashint FROM generate_series(:a, :b) AS g) AS s
"""


def search_ten_million(n: int) -> dict[str, float]:
    from obsbench import audit

    s = Schema("search")
    try:
        audit.open_store(s.url)
        engine = create_engine(s.url)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for name in [i.split()[2] for i in INDEXES]:
                conn.exec_driver_sql(f"DROP INDEX {name}")
            conn.exec_driver_sql(
                "ALTER TABLE audit_events DROP CONSTRAINT audit_events_event_id_key"
            )
        step = 2_000_000
        for a in range(1, n + 1, step):
            with engine.begin() as conn:
                conn.execute(text(GENERATE), {"a": a, "b": min(a + step - 1, n)})
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
            for ddl in INDEXES:
                conn.exec_driver_sql(ddl)
            conn.exec_driver_sql(
                "ALTER TABLE audit_events "
                "ADD CONSTRAINT audit_events_event_id_key UNIQUE (event_id)"
            )
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE audit_events"
            )
        index = time.perf_counter() - t0
        engine.dispose()
        audit.search(actor="user:u001", limit=10, url=s.url)  # warm the pool
        out = {"load_s": load, "index_s": index}
        span_days = n * 3 / 86400
        for label, width in (("day", timedelta(days=1)), ("week", timedelta(days=7))):
            times = []
            for q in range(25):
                day = T0 + timedelta(days=(q * 13) % max(int(span_days) - 8, 1))
                t0 = time.perf_counter()
                page = audit.search(
                    actor=f"user:u{(q * 37) % 200:03d}", start=day, end=day + width, url=s.url
                )
                times.append(time.perf_counter() - t0)
                assert page.height > 0
            out[f"{label}_median_ms"] = statistics.median(times) * 1000
            out[f"{label}_p95_ms"] = sorted(times)[int(len(times) * 0.95) - 1] * 1000
    finally:
        s.drop()
    return out


def main() -> None:
    print(f"# audit benchmark on PostgreSQL ({threads()}){' [quick]' if QUICK else ''}")
    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    single = single_writer(200_000 // SCALE)
    print(f"append_single_writer_events_per_s,{single:,.0f}")
    eight, ok = eight_writers(50_000 // SCALE)
    print(f"append_8_writers_events_per_s,{eight:,.0f},chain_ok={ok}")
    fast, slow, build_rate, cpu = verify_million(1_000_000 // SCALE)
    print(
        f"verify_{1_000_000 // SCALE}_events_s,{fast:.2f},client_cpu_s,{cpu:.2f}"
        f",field_by_field_path_s,{slow:.2f}"
    )
    print(f"append_bulk_1M_build_events_per_s,{build_rate:,.0f}")
    search = search_ten_million(10_000_000 // SCALE)
    n = 10_000_000 // SCALE
    print(f"search_{n}_load_s,{search['load_s']:.1f},index_s,{search['index_s']:.1f}")
    for label in ("day", "week"):
        print(
            f"search_actor_{label}_median_ms,{search[f'{label}_median_ms']:.1f},"
            f"p95_ms,{search[f'{label}_p95_ms']:.1f}"
        )
    print(f"# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
