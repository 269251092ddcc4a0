"""The audit store on both backends: record, bad input, search, bulk ingest, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from obsbench import audit
from obsbench.audit.store import AuditStore
from obsbench.errors import AuditError

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[str]:
    """An empty audit database on each backend (PostgreSQL: a fresh schema)."""
    value = (
        f"sqlite:///{tmp_path / 'audit.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema")
    )
    yield value
    audit.close_store(value)


def _events(n: int, *, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=i) for i in range(start, start + n)],
            "actor": [f"strategy:s{i % 3}" for i in range(start, start + n)],
            "action": ["decision", "order", "execution"] * (n // 3) + ["decision"] * (n % 3),
            "resource": [f"order/O{i // 3:06d}" for i in range(start, start + n)],
            "details": [json.dumps({"i": i, "qty": 100 + i}) for i in range(start, start + n)],
            "correlation_id": [f"c{i // 3}" for i in range(start, start + n)],
        }
    )


def test_record_assigns_seq_and_chains_hashes(url: str) -> None:
    first = audit.record("user:alice", "login", "service/auth", {"role": "compliance"}, url=url)
    second = audit.record(
        "user:alice",
        "config_change",
        "strategy/m1/risk_limits",
        {"before": {"max_position": 100}, "after": {"max_position": 150}},
        correlation_id="chg-1",
        source="portal",
        url=url,
    )
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == audit.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert second.hash == audit.event_hash(first.hash, _as_dict(second))
    assert audit.chain_head(url=url) == audit.ChainHead(2, second.hash)
    result = audit.verify(url=url)
    assert result.ok
    assert (result.checked, result.head_seq, result.head_hash) == (2, 2, second.hash)


def _as_dict(event: audit.RecordedEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__slots__}


BAD_EVENTS = [
    pytest.param({"actor": None, "action": "login"}, "actor is missing", id="missing_actor"),
    pytest.param({"actor": "  ", "action": "login"}, "actor is empty", id="blank_actor"),
    pytest.param({"actor": "u", "action": None}, "action is missing", id="missing_action"),
    pytest.param({"actor": "u", "action": "launch_missiles"}, "unknown action", id="unknown"),
    pytest.param(
        {"actor": "u", "action": "login", "details": "{not json"}, "not valid JSON", id="non_json"
    ),
    pytest.param(
        {"actor": "u", "action": "login", "details": "[1, 2]"}, "JSON object", id="json_list"
    ),
    pytest.param(
        {"actor": "u", "action": "login", "details": {"x": float("nan")}}, "NaN", id="nan"
    ),
    pytest.param(
        {"actor": "u", "action": "login", "details": {"x": object()}}, "serialisable", id="object"
    ),
    pytest.param({"actor": 42, "action": "login"}, "must be a string", id="actor_not_str"),
]


@pytest.mark.parametrize(("event", "message"), BAD_EVENTS)
def test_bad_event_is_rejected_and_nothing_written(url: str, event: dict, message: str) -> None:
    audit.record("user:alice", "login", url=url)
    with pytest.raises(AuditError, match=message):
        audit.record(**event, url=url)
    assert audit.open_store(url).count() == 1
    assert audit.verify(url=url).ok


def test_bad_row_in_bulk_frame_writes_nothing(url: str) -> None:
    frame = _events(6).with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("actor")).alias("actor"),
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit("{oops"))
        .otherwise(pl.col("details"))
        .alias("details"),
    )
    with pytest.raises(AuditError, match=r"2 invalid audit event\(s\)") as info:
        audit.record_many(frame, url=url)
    assert "row 4: actor is missing" in info.value.message
    assert "row 5: details is not valid JSON" in info.value.message
    assert audit.open_store(url).count() == 0


def test_duplicate_event_id_is_rejected(url: str) -> None:
    audit.record("u", "login", event_id="same", url=url)
    with pytest.raises(AuditError, match="duplicate event_id"):
        audit.record("u", "logout", event_id="same", url=url)
    assert audit.open_store(url).count() == 1


def test_record_many_appends_in_frame_order(url: str) -> None:
    audit.record("user:alice", "login", url=url)
    result = audit.record_many(_events(30), url=url)
    assert (result.count, result.first_seq, result.last_seq) == (30, 2, 31)
    stored = audit.search(limit=100, url=url).sort("seq")
    assert stored["seq"].to_list() == list(range(1, 32))
    assert stored["details"][1:].map_elements(
        lambda d: json.loads(d)["i"], pl.Int64
    ).to_list() == list(range(30))
    assert audit.verify(url=url).ok


SEARCHES = [
    pytest.param({"actor": "strategy:s1"}, [1, 4, 7, 10], id="actor"),
    pytest.param({"action": "execution"}, [2, 5, 8, 11], id="action"),
    pytest.param(
        {"action": ["order", "execution"], "correlation_id": "c1"}, [4, 5], id="list_and_cid"
    ),
    pytest.param({"resource": "order/O000002"}, [6, 7, 8], id="resource"),
    pytest.param(
        {"start": T0 + timedelta(seconds=3), "end": T0 + timedelta(seconds=5)}, [3, 4], id="range"
    ),
    pytest.param(
        {"actor": "strategy:s0", "start": T0 + timedelta(seconds=1)}, [3, 6, 9], id="actor_range"
    ),
    pytest.param({"text": '"i":7,'}, [7], id="text"),
    pytest.param({"text": "STRATEGY:S2"}, [2, 5, 8, 11], id="text_case_insensitive"),
    pytest.param({"text": "%"}, [], id="text_wildcard_is_literal"),
]


@pytest.mark.parametrize(("filters", "expected"), SEARCHES)
def test_search_filters(url: str, filters: dict, expected: list[int]) -> None:
    audit.record_many(_events(12), url=url)
    found = audit.search(**filters, url=url)
    assert [s - 1 for s in found["seq"].to_list()] == expected
    assert found.schema == audit.SEARCH_SCHEMA
    assert audit.count(**filters, url=url) == len(expected)


def test_search_pages_and_order(url: str) -> None:
    audit.record_many(_events(25), url=url)
    pages = [audit.search(limit=10, offset=o, url=url)["seq"].to_list() for o in (0, 10, 20)]
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    newest = audit.search(limit=3, descending=True, url=url)["seq"].to_list()
    assert newest == [25, 24, 23]
    assert audit.iter_search(url=url).height == 25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"limit": 0}, "limit must be", id="limit"),
        pytest.param({"offset": -1}, "offset must be", id="offset"),
        pytest.param({"start": T0, "end": T0 - timedelta(days=1)}, "before start", id="range"),
    ],
)
def test_search_rejects_bad_arguments(url: str, kwargs: dict, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        audit.search(**kwargs, url=url)


def test_simulator_stream_ingests_and_verifies(url: str) -> None:
    from obsbench.sim import SimConfig, simulate

    stream = simulate(SimConfig.small(days=1))["audit"]
    result = audit.record_many(stream, url=url)
    assert result.count == stream.height
    actions = set(audit.iter_search(url=url)["action"].unique())
    assert {"decision", "order", "execution", "login", "config_change"} <= actions
    assert audit.verify(url=url).ok


WRITER = """
import json, sys
from datetime import UTC, datetime
import polars as pl
from obsbench.audit.store import AuditStore

url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = AuditStore(url)
for i in range(n):
    store.record(f"worker:{worker}", "order", f"order/{worker}-{i}", {"i": i})
frame = pl.DataFrame(
    {
        "ts": [datetime.now(UTC)] * n,
        "actor": [f"worker:{worker}"] * n,
        "action": ["execution"] * n,
        "resource": [f"fill/{worker}-{i}" for i in range(n)],
        "details": [json.dumps({"i": i}) for i in range(n)],
    }
)
store.record_many(frame)
store.close()
"""


def test_eight_concurrent_writer_processes_keep_one_valid_chain(url: str) -> None:
    AuditStore(url).close()  # migrate once up front (migrations are locked too, but faster)
    n = 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(w), str(n)], stderr=subprocess.PIPE, text=True
        )
        for w in range(8)
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    result = audit.verify(url=url)
    assert result.ok, str(result)
    assert result.checked == 8 * 2 * n
    events = audit.iter_search(url=url)
    assert events["seq"].sort().to_list() == list(range(1, 8 * 2 * n + 1))
    per_worker = events.group_by("actor").len()
    assert per_worker["len"].to_list() == [2 * n] * 8
    # each writer's own events keep their order in the chain
    for worker in range(8):
        mine = events.filter(pl.col("actor") == f"worker:{worker}", pl.col("action") == "order")
        seqs = mine.sort("seq")["resource"].to_list()
        assert seqs == [f"order/{worker}-{i}" for i in range(n)]


def test_schema_version_and_indexes(url: str) -> None:
    store = audit.open_store(url)
    with store.engine.connect() as conn:
        version = conn.execute(text("SELECT max(version) FROM audit_schema_version")).scalar()
        if store.dialect == "postgresql":
            rows = conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_events'")
            ).all()
        else:
            rows = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE type = 'index' AND tbl_name = 'audit_events'"
                )
            ).all()
    defs = {name: str(sql) for name, sql in rows}
    assert version == 3
    for name in (
        "ix_audit_events_ts",
        "ix_audit_events_actor_ts",
        "ix_audit_events_resource_ts",
        "ix_audit_events_correlation_id",
        "ix_audit_events_action_ts",
    ):
        assert name in defs
    if store.dialect == "postgresql":
        assert "USING brin (ts)" in defs["ix_audit_events_ts"]
    again = AuditStore(url)  # re-opening does not migrate again
    assert again.count() == 0
    again.close()
