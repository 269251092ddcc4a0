"""Versioned schema migrations of the audit store (a small migration table, not Alembic).

Each migration is a version number, a name and its SQL per dialect (PostgreSQL, SQLite).
``audit_schema_version`` records the versions applied. :func:`migrate` applies the missing
ones in order, each in its own transaction, holding an advisory lock on PostgreSQL so two
processes starting at once do not race.

Why not Alembic: the audit schema is three tables whose important parts (the append-only
triggers, the BRIN index, the role and its GRANTs) are dialect-specific raw SQL that Alembic
would only wrap in ``op.execute``; the store must migrate itself from an installed wheel,
with no ``alembic.ini`` or ``env.py`` to ship, under the same lock that serialises writers;
and it keeps obsbench free of another dependency. The table has the same shape as
Alembic's ``alembic_version`` history, so moving to Alembic later is a stamp, not a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from obsbench.log import get_logger

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = get_logger(__name__)

APP_ROLE = "obsbench_app"
"""PostgreSQL role of the applications: INSERT and SELECT on the audit events, nothing else."""
ADMIN_ROLE = "obsbench_audit_admin"
"""PostgreSQL role allowed to prune exported events (DELETE, guarded by a checkpoint)."""
LOCK_CLASS = 7_310_001
"""First key of the PostgreSQL advisory locks (the second is a hash of the schema)."""

VERSION_TABLE = "audit_schema_version"

_PG_V1 = """
CREATE TABLE audit_events (
    seq            BIGINT      PRIMARY KEY CHECK (seq >= 1),
    ts             TIMESTAMPTZ NOT NULL,
    actor          TEXT        NOT NULL CHECK (actor <> ''),
    action         TEXT        NOT NULL CHECK (action <> ''),
    resource       TEXT        NOT NULL,
    details        TEXT        NOT NULL,
    correlation_id TEXT,
    source         TEXT,
    event_id       TEXT        NOT NULL UNIQUE,
    prev_hash      CHAR(64)    NOT NULL,
    hash           CHAR(64)    NOT NULL
);
CREATE INDEX ix_audit_events_ts ON audit_events USING brin (ts);
CREATE INDEX ix_audit_events_actor_ts ON audit_events (actor, ts);
CREATE INDEX ix_audit_events_resource_ts ON audit_events (resource, ts);
CREATE INDEX ix_audit_events_correlation_id ON audit_events (correlation_id);
CREATE INDEX ix_audit_events_action_ts ON audit_events (action, ts);
CREATE TABLE audit_checkpoints (
    id          BIGSERIAL   PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (kind IN ('prune')),
    seq         BIGINT      NOT NULL,
    hash        CHAR(64)    NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT        NOT NULL DEFAULT current_user,
    manifest    TEXT        NOT NULL
);
"""

_SQLITE_V1 = """
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY CHECK (seq >= 1),
    ts             TEXT    NOT NULL,
    actor          TEXT    NOT NULL CHECK (actor <> ''),
    action         TEXT    NOT NULL CHECK (action <> ''),
    resource       TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    correlation_id TEXT,
    source         TEXT,
    event_id       TEXT    NOT NULL UNIQUE,
    prev_hash      TEXT    NOT NULL CHECK (length(prev_hash) = 64),
    hash           TEXT    NOT NULL CHECK (length(hash) = 64)
);
CREATE INDEX ix_audit_events_ts ON audit_events (ts);
CREATE INDEX ix_audit_events_actor_ts ON audit_events (actor, ts);
CREATE INDEX ix_audit_events_resource_ts ON audit_events (resource, ts);
CREATE INDEX ix_audit_events_correlation_id ON audit_events (correlation_id);
CREATE INDEX ix_audit_events_action_ts ON audit_events (action, ts);
CREATE TABLE audit_checkpoints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('prune')),
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_by  TEXT    NOT NULL DEFAULT 'sqlite',
    manifest    TEXT    NOT NULL
);
"""

# Append-only: UPDATE, DELETE and TRUNCATE are rejected for everyone, the owner included.
# The one exception is the deliberate prune (obsbench.audit.retention.prune): a DELETE is let
# through only inside a transaction that set obsbench.audit_prune = 'on' and only for rows
# covered by a prune checkpoint (which the application role cannot write).
_PG_V2 = """
CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events'
       AND coalesce(current_setting('obsbench.audit_prune', true), '') = 'on' THEN
        IF EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.kind = 'prune' AND c.seq >= OLD.seq)
        THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit records are never changed; see docs/audit.md (retention).';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"""

# SQLite has no roles or session settings: a DELETE needs a covering prune checkpoint.
_SQLITE_V2 = """
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE rejected'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.kind = 'prune' AND c.seq >= OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE rejected'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE rejected'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE rejected'); END;
"""

# The roles are cluster-wide, so they are created once (idempotently; a concurrent creator
# is tolerated) and granted per schema. Needs CREATEROLE; without it the grants are skipped
# with a notice and a DBA runs them (docs/audit.md lists them).
_PG_V3 = f"""
DO $do$
DECLARE
    s text := current_schema();
BEGIN
    BEGIN
        CREATE ROLE {APP_ROLE} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE {ADMIN_ROLE} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}, {ADMIN_ROLE}', s);
    EXECUTE format('REVOKE ALL ON %I.audit_events, %I.audit_checkpoints FROM PUBLIC', s, s);
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_events TO {APP_ROLE}', s);
    EXECUTE format('GRANT SELECT ON %I.audit_checkpoints, %I.{VERSION_TABLE} TO {APP_ROLE}', s, s);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I.audit_events TO {ADMIN_ROLE}', s);
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_checkpoints TO {ADMIN_ROLE}', s);
    EXECUTE format('GRANT USAGE ON SEQUENCE %I.audit_checkpoints_id_seq TO {ADMIN_ROLE}', s);
    EXECUTE format('GRANT SELECT ON %I.{VERSION_TABLE} TO {ADMIN_ROLE}', s);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'obsbench audit: no privilege to create roles; run the GRANTs in docs/audit.md';
END
$do$;
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    postgresql: str
    sqlite: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "audit events and checkpoints, indexes", _PG_V1, _SQLITE_V1),
    Migration(2, "append-only triggers", _PG_V2, _SQLITE_V2),
    Migration(3, "application and admin roles, grants", _PG_V3, ""),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The highest applied migration (0 for an empty database)."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table(VERSION_TABLE):
        return 0
    return int(
        conn.execute(text(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")).scalar()
    )


def migrate(engine: Engine, *, target: int = LATEST) -> list[int]:
    """Apply the missing migrations up to ``target``; return the versions applied.

    An up-to-date database is only read (so a role without DDL rights can open it).
    """
    from sqlalchemy import text

    with engine.connect() as conn:
        if current_version(conn) >= target:
            return []
    dialect = engine.dialect.name
    applied: list[int] = []
    with engine.connect() as raw:
        conn = raw.execution_options(obsbench_write=True) if dialect == "sqlite" else raw
        with conn.begin():
            _lock(conn)
            _execute_script(
                conn,
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            have = current_version(conn)
            for m in MIGRATIONS:
                if have < m.version <= target:
                    _execute_script(conn, m.postgresql if dialect == "postgresql" else m.sqlite)
                    conn.execute(
                        text(f"INSERT INTO {VERSION_TABLE} VALUES (:v, :n, :t)"),
                        {"v": m.version, "n": m.name, "t": datetime.now(UTC).isoformat()},
                    )
                    applied.append(m.version)
    if applied:
        log.info("audit schema migrated", extra={"fields": {"versions": applied}})
    return applied


def _lock(conn: Connection) -> None:
    """Serialise with other writers (PostgreSQL: advisory lock; SQLite: BEGIN IMMEDIATE)."""
    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema()))"), {"c": LOCK_CLASS}
        )


def _execute_script(conn: Connection, script: str) -> None:
    if not script.strip():
        return
    if conn.dialect.name == "sqlite":
        for statement in _split_sqlite(script):
            conn.exec_driver_sql(statement)
    else:  # no parameters: the driver sends the script as is (% is not a placeholder)
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(script)


def _split_sqlite(script: str) -> list[str]:
    """Split a SQLite script into statements (triggers end at ``END;``)."""
    statements, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        in_trigger = joined.upper().startswith("CREATE TRIGGER")
        if (in_trigger and joined.upper().endswith("END;")) or (
            not in_trigger and joined.endswith(";")
        ):
            statements.append(joined)
            buf = []
    if buf and "\n".join(buf).strip():
        statements.append("\n".join(buf).strip())
    return statements
