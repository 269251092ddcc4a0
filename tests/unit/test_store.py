from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from obsbench import schemas
from obsbench.errors import SchemaError, SourceUnavailable
from obsbench.store import Store, engine

T0 = datetime(2026, 1, 5, 23, 59, 58, tzinfo=UTC)
BATCH = 2_000


def requests(n: int, start: datetime = T0, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [start + timedelta(milliseconds=i) for i in range(n)],
            "service": ["api"] * n,
            "endpoint": ["/orders"] * n,
            "latency_ms": [float(offset + i) for i in range(n)],
            "status_code": [200] * n,
            "ok": [True] * n,
            "trace_id": [f"t{offset + i}" for i in range(n)],
        },
        schema_overrides={"status_code": pl.Int32},
    )


def test_round_trip_is_exact(home: Path) -> None:
    store = Store()
    df = requests(10)
    store.append("requests", df)
    assert store.read("requests").equals(df)
    assert store.counts() == {"requests": 10}


def test_one_file_per_day_and_range_reads(home: Path) -> None:
    store = Store()
    df = requests(3_000)  # crosses midnight 2026-01-05 -> 06
    paths = store.append("requests", df)
    assert sorted(p.parent.name for p in paths) == ["day=2026-01-05", "day=2026-01-06"]
    midnight = datetime(2026, 1, 6, tzinfo=UTC)
    after = store.read("requests", start=midnight)
    assert after.height == df.filter(pl.col("ts") >= midnight).height
    before = store.read("requests", end=midnight)
    assert before.height + after.height == df.height


def test_empty_dataset_reads_as_canonical_empty_frame(home: Path) -> None:
    home.mkdir(parents=True)
    store = Store()
    assert store.append("quotes", schemas.empty("quotes")) == []
    out = store.read("requests")
    assert out.height == 0
    assert out.schema == schemas.schema_of("requests")


def test_invalid_frame_writes_nothing(home: Path) -> None:
    store = Store()
    bad = requests(5).with_columns(latency_ms=pl.lit(-1.0))
    with pytest.raises(SchemaError, match="latency_ms"):
        store.append("requests", bad)
    assert store.files("requests") == []


def test_missing_home_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="obsbench sim"):
        Store(tmp_path / "nowhere").scan("requests")


READER = """
import json, sys, pathlib
import polars as pl
from obsbench.store import Store
home, batch, stop = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
ready = stop.with_name("ready")
store, seen, bad = Store(home), 0, []
while not stop.exists():
    try:
        query = store.scan("requests").select(pl.len(), pl.col("trace_id").n_unique())
        n, unique = query.collect().row(0)
    except Exception as exc:
        bad.append(repr(exc))
        continue
    seen += 1
    ready.touch()
    if n % batch:
        bad.append(f"partial read: {n} rows")
    if unique != n:
        bad.append(f"duplicate rows: {n} rows, {unique} unique")
print(json.dumps({"seen": seen, "bad": bad[:5]}))
"""


def test_concurrent_reader_never_sees_a_partial_partition(home: Path) -> None:
    home.mkdir(parents=True)
    stop = home / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(home), str(BATCH), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    store = Store()
    start = datetime(2026, 1, 5, 12, tzinfo=UTC)
    deadline = time.monotonic() + 60
    while not (home / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # let the reader start polling
    for i in range(40):
        store.append("requests", requests(BATCH, start + timedelta(seconds=10 * i), BATCH * i))
        time.sleep(0.05)  # a tick's pace, so the reader overlaps many writes
        if i % 10 == 9:  # live mode compacts while readers read
            store.compact("requests", min_age_s=0, grace_s=0.2)
    stop.touch()
    out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["bad"] == []
    assert result["seen"] > 5  # the reader really overlapped the writes
    assert store.read("requests").height == 40 * BATCH


def test_compaction_merges_parts_without_losing_or_repeating_rows(home: Path) -> None:
    store = Store()
    start = datetime(2026, 1, 5, 12, tzinfo=UTC)
    frames = [requests(10, start + timedelta(seconds=i), 10 * i) for i in range(12)]
    for f in frames:
        store.append("requests", f)
    assert len(store.files("requests")) == 12
    assert store.compact("requests", min_age_s=0, grace_s=3600) == 12
    assert [p.name.split("-")[0] for p in store.files("requests")] == ["compact"]
    assert store.read("requests").equals(pl.concat(frames))
    # superseded parts stay on disk during the grace period, then go
    assert len(list(store.files("requests")[0].parent.glob("part-*"))) == 12
    store.append("requests", requests(10, start + timedelta(minutes=5), 999))
    store.append("requests", requests(10, start + timedelta(minutes=6), 1999))
    assert store.compact("requests", min_age_s=0, grace_s=0) == 2  # the new parts only
    assert store.compact("requests", min_age_s=0, grace_s=0) == 0  # deletes what was merged
    folder = store.files("requests")[0].parent
    assert sorted(p.name.split("-")[0] for p in folder.glob("*.parquet")) == ["compact"] * 2
    assert store.read("requests").height == 140
    assert store.counts() == {"requests": 140}


def test_compaction_leaves_young_files_alone(home: Path) -> None:
    store = Store()
    for i in range(3):
        store.append("requests", requests(5, T0 - timedelta(hours=1), 5 * i))
    assert store.compact("requests", min_age_s=3600) == 0
    assert len(store.files("requests")) == 3


def test_sqlite_engine_under_home(home: Path) -> None:
    from sqlalchemy import text

    eng = engine()
    with eng.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    assert (home / "obsbench.db").exists()


def test_unwritable_sqlite_folder_is_source_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SourceUnavailable, match="writable folder"):
        engine(f"sqlite:///{tmp_path / 'file' / 'sub' / 'obsbench.db'}")


def test_unreachable_database_is_source_unavailable() -> None:
    with pytest.raises(SourceUnavailable, match=r"(?s)cannot connect.*Hint: start the database"):
        engine(
            "postgresql+psycopg://nobody:secret@127.0.0.1:1/none",
            connect_args={"connect_timeout": 2},
        )
