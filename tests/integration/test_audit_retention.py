"""Retention: export to Parquet, verify the export, prune with a checkpoint; nothing lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from obsbench import audit
from obsbench.audit import migrations, retention
from obsbench.audit.store import AuditStore
from obsbench.errors import AuditError, ChainBroken

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[str]:
    value = (
        f"sqlite:///{tmp_path / 'audit.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema")
    )
    # 40 events, one per day, ending the day before NOW
    frame = pl.DataFrame(
        {
            "ts": [NOW - timedelta(days=40 - i) for i in range(40)],
            "actor": ["user:alice"] * 40,
            "action": ["access"] * 40,
            "resource": [f"page/p{i}" for i in range(40)],
            "details": [json.dumps({"i": i}) for i in range(40)],
        }
    )
    audit.record_many(frame, url=value)
    yield value
    audit.close_store(value)


def test_export_verify_prune_then_the_chain_still_verifies(url: str, tmp_path: Path) -> None:
    store = audit.open_store(url)
    head_before = store.head()
    m = retention.export(store, tmp_path / "archive", older_than_days=30, now=NOW)
    assert m is not None
    assert (m.first_seq, m.last_seq, m.rows) == (1, 10, 10)
    assert m.start_hash == audit.GENESIS_HASH
    assert retention.verify_export(m, store=store).ok
    exported = retention.read_export(m)
    assert exported["seq"].to_list() == list(range(1, 11))

    deleted = retention.prune(store, m)
    assert deleted == 10
    assert store.count() == 30
    assert store.checkpoint() == audit.ChainHead(10, m.last_hash)
    assert store.head() == head_before
    result = audit.verify(url=url)
    assert result.ok
    assert (result.start_seq, result.checked, result.head_seq) == (10, 30, 40)
    # the export still proves the pruned part, and links to what remains
    assert retention.verify_export(m, store=store).ok
    # the next export continues from the checkpoint
    m2 = retention.export(store, tmp_path / "archive", older_than_days=20, now=NOW)
    assert m2 is not None
    assert (m2.first_seq, m2.last_seq, m2.start_hash) == (11, 20, m.last_hash)
    assert retention.prune(store, m2) == 10
    assert audit.verify(url=url).ok
    # writing continues on the same chain
    assert audit.record("user:bob", "login", url=url).seq == 41
    assert audit.verify(url=url).ok


def test_nothing_old_enough_exports_nothing(url: str, tmp_path: Path) -> None:
    store = audit.open_store(url)
    assert retention.export(store, tmp_path, older_than_days=100, now=NOW) is None


def test_a_tampered_export_file_is_never_pruned(url: str, tmp_path: Path) -> None:
    store = audit.open_store(url)
    m = retention.export(store, tmp_path, older_than_days=30, now=NOW)
    assert m is not None
    frame = pl.read_parquet(m.parquet).with_columns(
        pl.when(pl.col("seq") == 3).then(pl.lit("user:mallory")).otherwise("actor").alias("actor")
    )
    frame.write_parquet(m.parquet)
    result = retention.verify_export(m, store=store)
    assert not result.ok
    assert result.problem is not None
    assert result.problem.kind == "altered"
    with pytest.raises(ChainBroken, match="refusing to prune"):
        retention.prune(store, m)
    assert store.count() == 40


def test_a_tampered_manifest_is_never_pruned(url: str, tmp_path: Path) -> None:
    store = audit.open_store(url)
    m = retention.export(store, tmp_path, older_than_days=30, now=NOW)
    assert m is not None
    path = Path(m.parquet).with_name(Path(m.parquet).stem + ".manifest.json")
    doc = json.loads(path.read_text())
    doc["rows"], doc["last_seq"] = 12, 12  # claim more than the file holds
    path.write_text(json.dumps(doc))
    with pytest.raises(ChainBroken):
        retention.prune(store, path)
    assert store.count() == 40


def test_a_broken_chain_is_not_exported(url: str, tmp_path: Path) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2")
    engine.dispose()
    with pytest.raises(ChainBroken, match="not exporting"):
        retention.export(audit.open_store(url), tmp_path, older_than_days=30, now=NOW)
    assert not list(tmp_path.glob("*.parquet"))


def test_delete_without_a_covering_checkpoint_is_rejected(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET obsbench.audit_prune = 'on'")
            with pytest.raises(DBAPIError, match="append-only"):
                conn.exec_driver_sql("DELETE FROM audit_events WHERE seq <= 5")
    finally:
        engine.dispose()
    assert audit.open_store(url).count() == 40


def test_prune_needs_the_admin_role_not_the_application_role(
    pg_schema: str, home: Path, tmp_path: Path
) -> None:
    audit.record("user:alice", "login", ts=NOW - timedelta(days=90), url=pg_schema)
    audit.record("user:alice", "logout", ts=NOW - timedelta(days=1), url=pg_schema)
    owner = audit.open_store(pg_schema)
    m = retention.export(owner, tmp_path, older_than_days=30, now=NOW)
    assert m is not None
    app = AuditStore(pg_schema.replace("options=", f"options=-crole%3D{migrations.APP_ROLE}%20"))
    try:
        with pytest.raises(DBAPIError, match="permission denied"):
            retention.prune(app, m)
    finally:
        app.close()
    admin = AuditStore(
        pg_schema.replace("options=", f"options=-crole%3D{migrations.ADMIN_ROLE}%20")
    )
    try:
        assert retention.prune(admin, m) == 1
        with admin.connect() as conn:
            who = conn.execute(text("SELECT created_by FROM audit_checkpoints")).scalar()
        assert who == migrations.ADMIN_ROLE
    finally:
        admin.close()
    assert audit.verify(url=pg_schema).ok
    audit.close_store(pg_schema)


def test_out_of_order_prune_is_refused(url: str, tmp_path: Path) -> None:
    store = audit.open_store(url)
    m1 = retention.export(store, tmp_path / "a", older_than_days=30, now=NOW)
    assert m1 is not None
    retention.prune(store, m1)
    with pytest.raises((ChainBroken, AuditError)):
        retention.prune(store, m1)  # the same export again: it no longer starts the chain
    assert store.count() == 30
