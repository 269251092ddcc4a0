"""Tampering with the stored rows directly in SQL (as a superuser) is caught by verify().

On PostgreSQL the append-only trigger is bypassed with ``session_replication_role =
replica`` (superuser only); on SQLite the triggers are dropped and re-created around the
edit. Also: the trigger and the application role's GRANTs refuse UPDATE and DELETE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from obsbench import audit
from obsbench.audit import migrations
from obsbench.audit.chain import canonical_from_stored, canonical_json, chain_hash, format_ts
from obsbench.audit.store import AuditStore
from obsbench.errors import ChainBroken

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
N = 10


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[str]:
    value = (
        f"sqlite:///{tmp_path / 'audit.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema")
    )
    for i in range(N):
        audit.record(
            f"user:u{i % 3}",
            "config_change",
            f"service/s{i}/config",
            {"before": {"timeout_ms": i}, "after": {"timeout_ms": i + 1}},
            ts=T0 + timedelta(minutes=i),
            event_id=f"e{i + 1}",
            url=value,
        )
    yield value
    audit.close_store(value)


def tamper(url: str, *statements: str) -> None:
    """Run SQL past the append-only triggers, as the database superuser would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                for sql in statements:
                    conn.exec_driver_sql(sql)
            else:
                for name in (
                    "audit_events_no_update",
                    "audit_events_no_delete",
                ):
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
                for sql in statements:
                    conn.exec_driver_sql(sql)
                for statement in migrations._split_sqlite(migrations._SQLITE_V2)[:2]:
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def row(url: str, seq: int) -> tuple:
    store = audit.open_store(url)
    return next(r for batch in store.iter_rows(after_seq=seq - 1, through_seq=seq) for r in batch)


def forged_hash(prev: str, fields: tuple) -> str:
    return chain_hash(prev, canonical_from_stored(*fields))


def _ts_sql(url: str, ts: datetime) -> str:
    return f"'{format_ts(ts)}'" if url.startswith("sqlite") else f"'{ts.isoformat()}'"


def insert_sql(url: str, seq: int, prev: str, h: str, event_id: str) -> str:
    ts = _ts_sql(url, T0 + timedelta(minutes=4, seconds=30))
    details = canonical_json({"before": 1, "after": 2})
    return (
        "INSERT INTO audit_events VALUES "
        f"({seq}, {ts}, 'user:mallory', 'config_change', 'service/x', '{details}', NULL, NULL, "
        f"'{event_id}', '{prev}', '{h}')"
    )


def edit_content(url: str) -> None:
    tamper(url, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 5")


def edit_and_rehash(url: str) -> None:
    r = row(url, 5)
    fields = (5, r[1], "user:mallory", *r[3:9])
    tamper(
        url,
        f"UPDATE audit_events SET actor = 'user:mallory', hash = '{forged_hash(r[9], fields)}' "
        "WHERE seq = 5",
    )


def edit_details_equivalent_json(url: str) -> None:
    tamper(url, "UPDATE audit_events SET details = replace(details, ':', ': ') WHERE seq = 3")


def delete_middle(url: str) -> None:
    tamper(url, "DELETE FROM audit_events WHERE seq = 5")


def delete_and_renumber(url: str) -> None:
    tamper(
        url,
        "DELETE FROM audit_events WHERE seq = 5",
        "UPDATE audit_events SET seq = seq + 1000000 WHERE seq > 5",
        "UPDATE audit_events SET seq = seq - 1000001 WHERE seq > 1000000",
    )


def insert_with_renumbering(url: str) -> None:
    prev = row(url, 4)[10]
    ts = format_ts(T0 + timedelta(minutes=4, seconds=30))
    details = '{"after":2,"before":1}'
    fields = (5, ts, "user:mallory", "config_change", "service/x", details, None, None, "forged")
    tamper(
        url,
        "UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= 5",
        "UPDATE audit_events SET seq = seq - 999999 WHERE seq > 1000000",
        insert_sql(url, 5, prev, forged_hash(prev, fields), "forged"),
    )


def insert_with_bad_hash(url: str) -> None:
    prev = row(url, 4)[10]
    tamper(
        url,
        "UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= 5",
        "UPDATE audit_events SET seq = seq - 999999 WHERE seq > 1000000",
        insert_sql(url, 5, prev, "f" * 64, "forged"),
    )


def append_forged_tail(url: str) -> None:
    tamper(url, insert_sql(url, N + 1, row(url, N)[10], "a" * 64, "forged"))


def swap_timestamps(url: str) -> None:
    a, b = _ts_sql(url, T0 + timedelta(minutes=7)), _ts_sql(url, T0 + timedelta(minutes=8))
    tamper(
        url,
        f"UPDATE audit_events SET ts = {b} WHERE seq = 8",
        f"UPDATE audit_events SET ts = {a} WHERE seq = 9",
    )


TAMPERING: list = [
    pytest.param(edit_content, 5, "altered", id="edit_field"),
    pytest.param(edit_and_rehash, 5, "altered", id="edit_and_recompute_hash"),
    pytest.param(edit_details_equivalent_json, 3, "altered", id="equivalent_json_rewrite"),
    pytest.param(delete_middle, 5, "missing", id="delete_row"),
    pytest.param(delete_and_renumber, 5, "missing", id="delete_and_renumber"),
    pytest.param(insert_with_renumbering, 5, "inserted", id="insert_forged_link"),
    pytest.param(insert_with_bad_hash, 5, "inserted", id="insert_bad_hash"),
    pytest.param(append_forged_tail, N + 1, "altered", id="append_forged_tail"),
    pytest.param(swap_timestamps, 8, "altered", id="swap_timestamps"),
]


@pytest.mark.parametrize(("attack", "seq", "kind"), TAMPERING)
def test_verify_names_the_first_bad_record(
    url: str, attack: Callable[[str], None], seq: int, kind: str
) -> None:
    assert audit.verify(url=url).ok
    attack(url)
    result = audit.verify(url=url)
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (seq, kind), result.problem.message
    assert result.head_seq == seq - 1
    with pytest.raises(ChainBroken, match=f"seq {seq}") as info:
        result.raise_for_failure()
    assert info.value.seq == seq


def test_both_verification_paths_agree(url: str) -> None:
    from obsbench.audit.verify import verify_store

    edit_and_rehash(url)
    store = audit.open_store(url)
    fast, slow = verify_store(store, fast=True), verify_store(store, fast=False)
    assert fast.problem == slow.problem
    assert fast.head_hash == slow.head_hash


def test_tail_deletion_is_caught_by_an_anchor(url: str) -> None:
    anchor = audit.anchor(url=url)
    assert anchor["verified"]
    assert anchor["seq"] == N
    tamper(url, f"DELETE FROM audit_events WHERE seq >= {N - 1}")
    assert audit.verify(url=url).ok  # the chain alone cannot see a cut tail...
    result = audit.verify(url=url, anchors=[(anchor["seq"], anchor["hash"])])
    assert not result.ok  # ...the anchor kept outside the database can
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (N - 1, "missing")


def test_rewritten_chain_is_caught_by_an_earlier_anchor(url: str) -> None:
    anchor = audit.anchor(url=url)
    # Re-write record 3 and re-hash everything after it: the chain verifies on its own.
    store = audit.open_store(url)
    rows = [r for b in store.iter_rows() for r in b]
    prev, updates = rows[1][10], []
    for r in rows[2:]:
        actor = "user:mallory" if r[0] == 3 else r[2]
        h = forged_hash(prev, (r[0], r[1], actor, *r[3:9]))
        updates.append(
            f"UPDATE audit_events SET actor = '{actor}', prev_hash = '{prev}', hash = '{h}' "
            f"WHERE seq = {r[0]}"
        )
        prev = h
    tamper(url, *updates)
    assert audit.verify(url=url).ok
    result = audit.verify(url=url, anchors={anchor["seq"]: anchor["hash"]})
    assert not result.ok
    assert result.problem is not None
    assert result.problem.kind == "altered"


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE audit_events SET actor = 'x' WHERE seq = 1", id="update"),
        pytest.param("DELETE FROM audit_events WHERE seq = 1", id="delete"),
        pytest.param("UPDATE audit_checkpoints SET seq = 0", id="update_checkpoint"),
    ],
)
def test_trigger_rejects_update_and_delete_even_for_the_owner(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        if "checkpoint" in sql:  # give the trigger a row to fire on
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO audit_checkpoints (kind, seq, hash, manifest) "
                        "VALUES ('prune', 0, :h, '{}')"
                    ),
                    {"h": "0" * 64},
                )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()
    assert audit.verify(url=url).ok


def test_truncate_is_rejected_on_postgresql(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE")
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    finally:
        engine.dispose()


def _as_role(url: str, role: str) -> str:
    return url.replace("options=", f"options=-crole%3D{role}%20")


@pytest.mark.parametrize(
    ("sql", "allowed"),
    [
        pytest.param("SELECT count(*) FROM audit_events", True, id="select"),
        pytest.param("UPDATE audit_events SET actor = 'x' WHERE seq = 1", False, id="update"),
        pytest.param("DELETE FROM audit_events WHERE seq = 1", False, id="delete"),
        pytest.param("TRUNCATE audit_events", False, id="truncate"),
        pytest.param(
            "INSERT INTO audit_checkpoints (kind, seq, hash, manifest) "
            "VALUES ('prune', 99, 'x', '')",
            False,
            id="forge_checkpoint",
        ),
        pytest.param("DROP TABLE audit_events", False, id="drop"),
    ],
)
def test_application_role_has_insert_and_select_only(
    pg_schema: str, home: Path, sql: str, *, allowed: bool
) -> None:
    audit.record("user:alice", "login", url=pg_schema)  # migrates, creates the role, grants
    app_url = _as_role(pg_schema, migrations.APP_ROLE)
    engine = create_engine(app_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == migrations.APP_ROLE
        if allowed:
            with engine.begin() as conn:
                conn.execute(text(sql))
        else:
            with (
                pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
                engine.begin() as conn,
            ):
                conn.execute(text(sql))
    finally:
        engine.dispose()
    audit.close_store(pg_schema)


def test_application_role_can_record_and_verify(pg_schema: str, home: Path) -> None:
    audit.record("user:alice", "login", url=pg_schema)
    app = AuditStore(_as_role(pg_schema, migrations.APP_ROLE), migrate=True)
    try:
        event = app.record("user:bob", "access", "page/audit", {"role": "compliance"})
        assert event.seq == 2
        from obsbench.audit.verify import verify_store

        assert verify_store(app).ok
    finally:
        app.close()
        audit.close_store(pg_schema)


def test_grants_are_as_documented(pg_schema: str, home: Path) -> None:
    audit.record("user:alice", "login", url=pg_schema)
    engine = create_engine(pg_schema)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT grantee, table_name, privilege_type "
                    "FROM information_schema.role_table_grants "
                    "WHERE table_schema = current_schema() AND grantee IN (:a, :b)"
                ),
                {"a": migrations.APP_ROLE, "b": migrations.ADMIN_ROLE},
            ).all()
    finally:
        engine.dispose()
    grants: dict[tuple[str, str], set[str]] = {}
    for grantee, table, privilege in rows:
        grants.setdefault((grantee, table), set()).add(privilege)
    app, admin = migrations.APP_ROLE, migrations.ADMIN_ROLE
    assert grants[(app, "audit_events")] == {"INSERT", "SELECT"}
    assert grants[(app, "audit_checkpoints")] == {"SELECT"}
    assert grants[(admin, "audit_events")] == {"INSERT", "SELECT", "DELETE"}
    assert grants[(admin, "audit_checkpoints")] == {"INSERT", "SELECT"}
    audit.close_store(pg_schema)


def test_store_lock_serialises_a_writer_started_mid_transaction(url: str) -> None:
    """A writer blocked on the chain lock sees the head the first writer committed."""
    import threading

    store = audit.open_store(url)
    done: list[int] = []
    with store._write() as conn:  # hold the chain lock
        head = store.head(conn)
        t = threading.Thread(target=lambda: done.append(store.record("u", "login").seq or 0))
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive()  # blocked behind us
        store._insert(conn, [store.prepare(actor="v", action="logout")])
    t.join(timeout=30)
    assert done == [head.seq + 2]
    assert audit.verify(url=url).ok
