"""The append-only, hash-chained audit store over SQLAlchemy (SQLite or PostgreSQL).

Writers serialise on the chain head: on PostgreSQL a transaction-scoped advisory lock
(``pg_advisory_xact_lock``; a ``SELECT ... FOR UPDATE`` would need the UPDATE privilege the
application role must not have), on SQLite ``BEGIN IMMEDIATE`` (the database write lock).
Inside the lock a writer reads the head (the last event, or the last prune checkpoint),
numbers and hashes its events from it and inserts them (``COPY`` for bulk on PostgreSQL), so
writers in any number of processes extend one valid chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obsbench.audit import migrations
from obsbench.audit.chain import GENESIS_HASH, canonical_from_stored, chain_hash, format_ts
from obsbench.audit.events import ACTIONS, PreparedEvent, prepare
from obsbench.audit.masking import Masker
from obsbench.errors import AuditError, SourceUnavailable
from obsbench.log import get_logger

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy.engine import Connection, Engine

    from obsbench.audit.spool import Spool

log = get_logger(__name__)

COLUMNS: tuple[str, ...] = (
    "seq",
    "ts",
    "actor",
    "action",
    "resource",
    "details",
    "correlation_id",
    "source",
    "event_id",
    "prev_hash",
    "hash",
)
"""Columns of ``audit_events`` in table order."""

COPY_THRESHOLD = 64
"""Batches at least this large use ``COPY`` on PostgreSQL."""
WRITE_CHUNK = 50_000
"""Events per write transaction in :meth:`AuditStore.record_many` (the lock is held per chunk)."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last link of the chain: its sequence number and hash (0 and zeros when empty)."""

    seq: int
    hash: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored (``spooled`` if it waits in the local spool: ``seq`` is then None)."""

    seq: int | None
    ts: datetime
    actor: str
    action: str
    resource: str
    details: str
    correlation_id: str | None
    source: str | None
    event_id: str
    prev_hash: str | None
    hash: str | None
    spooled: bool = False

    @property
    def details_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.details)
        return out


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one bulk append wrote."""

    count: int
    first_seq: int | None
    last_seq: int | None
    head: ChainHead
    replayed: int = 0


def _is_connection_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@contextlib.contextmanager
def _unavailable_as_source_error(url: str) -> Iterator[None]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        if not _is_connection_error(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        msg = f"the audit database {_redact(url)} is unavailable: {reason}"
        raise SourceUnavailable(
            msg,
            hint="start the database (or fix OBSBENCH_DATABASE_URL); record(..., spool=True) "
            "buffers events locally until it is back.",
        ) from exc


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class AuditStore:
    """The audit trail in one database.

    Parameters
    ----------
    url
        SQLAlchemy URL; default ``OBSBENCH_DATABASE_URL`` or SQLite under ``OBSBENCH_HOME``.
    masker
        Masking rules applied to every event before storage (default rules if not given).
    actions
        Accepted actions (default :data:`~obsbench.audit.events.ACTIONS`).
    migrate
        Bring the schema to the latest version on open (needs DDL rights; pass ``False``
        when connecting as the application role to an already migrated database).

    Raises
    ------
    SourceUnavailable
        If the database cannot be reached.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        masker: Masker | None = None,
        actions: Sequence[str] = ACTIONS,
        migrate: bool = True,
    ) -> None:
        from obsbench.config import get_settings

        self.url = url or get_settings().database
        self.masker = masker
        self.actions = tuple(actions)
        self.engine = _make_engine(self.url)
        self.dialect = self.engine.dialect.name
        if migrate:
            with _unavailable_as_source_error(self.url):
                migrations.migrate(self.engine)

    def __repr__(self) -> str:
        return f"AuditStore({_redact(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction holding the chain lock."""
        with _unavailable_as_source_error(self.url), self.engine.connect() as raw:
            conn = raw.execution_options(obsbench_write=True) if self.dialect == "sqlite" else raw
            with conn.begin():
                migrations._lock(conn)
                yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read connection (errors reaching the database become ``SourceUnavailable``)."""
        with _unavailable_as_source_error(self.url), self.engine.connect() as conn:
            yield conn

    # -- head ----------------------------------------------------------------------------

    def head(self, conn: Connection | None = None) -> ChainHead:
        """The chain head: the last event, else the last prune checkpoint, else genesis."""
        if conn is None:
            with self.connect() as c:
                return self.head(c)
        from sqlalchemy import text

        row = conn.execute(
            text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        ).first()
        if row is None:
            row = conn.execute(
                text(
                    "SELECT seq, hash FROM audit_checkpoints WHERE kind = 'prune' "
                    "ORDER BY seq DESC LIMIT 1"
                )
            ).first()
        return ChainHead(int(row[0]), str(row[1]).strip()) if row else ChainHead(0, GENESIS_HASH)

    def checkpoint(self, conn: Connection | None = None) -> ChainHead | None:
        """The last prune checkpoint (where the stored chain starts), if any."""
        if conn is None:
            with self.connect() as c:
                return self.checkpoint(c)
        from sqlalchemy import text

        row = conn.execute(
            text(
                "SELECT seq, hash FROM audit_checkpoints WHERE kind = 'prune' "
                "ORDER BY seq DESC LIMIT 1"
            )
        ).first()
        return ChainHead(int(row[0]), str(row[1]).strip()) if row else None

    def count(self) -> int:
        """Number of stored events."""
        from sqlalchemy import text

        with self.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one())

    # -- writing -------------------------------------------------------------------------

    def prepare(self, **event: Any) -> PreparedEvent:
        """Validate and mask one event with this store's actions and masker."""
        return prepare(**event, actions=self.actions, masker=self.masker)

    def record(
        self,
        actor: str,
        action: str,
        resource: str = "",
        details: dict[str, Any] | str | None = None,
        *,
        correlation_id: str | None = None,
        source: str | None = None,
        ts: datetime | None = None,
        event_id: str | None = None,
        spool: Spool | None = None,
    ) -> RecordedEvent:
        """Validate, mask, chain and store one event; see :func:`obsbench.audit.record`."""
        event = self.prepare(
            actor=actor,
            action=action,
            resource=resource,
            details=details,
            correlation_id=correlation_id,
            source=source,
            ts=ts,
            event_id=event_id,
        )
        return self.append([event], spool=spool)[-1]

    def append(
        self, events: Sequence[PreparedEvent], *, spool: Spool | None = None
    ) -> list[RecordedEvent]:
        """Chain and insert prepared events in one transaction; return them as stored.

        If ``spool`` holds events (buffered while the database was down), they are replayed
        first, in order, in the same transaction, and the spool is emptied after the commit.
        Spooled events already in the database (same ``event_id``) are skipped.
        """
        with contextlib.ExitStack() as stack:
            pending: list[PreparedEvent] = []
            replaying = spool is not None and len(spool) > 0
            if replaying:
                stack.enter_context(spool.locked())  # type: ignore[union-attr]
                pending = spool.read()  # type: ignore[union-attr]
            with self._write() as conn:
                if pending:
                    pending = self._not_yet_stored(conn, pending)
                rows = self._insert(conn, [*pending, *events])
            if replaying:
                spool.clear()  # type: ignore[union-attr]
        if pending:
            log.info("audit spool replayed", extra={"fields": {"events": len(pending)}})
        return rows[len(pending) :]

    def replay_spool(self, spool: Spool) -> int:
        """Write the spooled events (if any); return how many were written."""
        before = len(spool)
        if not before:
            return 0
        with spool.locked():
            pending = spool.read()
            with self._write() as conn:
                pending = self._not_yet_stored(conn, pending)
                self._insert(conn, pending)
            spool.clear()
        log.info("audit spool replayed", extra={"fields": {"events": len(pending)}})
        return len(pending)

    def record_many(self, frame: pl.DataFrame | pl.LazyFrame) -> AppendResult:
        """Validate, mask and append every row of an ``audit`` frame, in frame order.

        The frame needs ``ts``, ``actor``, ``action`` and ``details`` (``resource``,
        ``correlation_id``, ``source``, ``event_id`` optional; ``seq``, ``prev_hash`` and
        ``hash`` are ignored, the store assigns them). Every row is validated before anything
        is written; a bad row raises :class:`AuditError` naming the rows and problems.
        Events are written in transactions of :data:`WRITE_CHUNK` rows.
        """
        prepared = self.prepare_frame(frame)
        if not prepared:
            return AppendResult(0, None, None, self.head())
        first: int | None = None
        for start in range(0, len(prepared), WRITE_CHUNK):
            with self._write() as conn:
                first_seq, head = self._insert(
                    conn, prepared[start : start + WRITE_CHUNK], keep=False
                )
            first = first if first is not None else first_seq
        return AppendResult(len(prepared), first, head.seq, head)

    def prepare_frame(self, frame: pl.DataFrame | pl.LazyFrame) -> list[PreparedEvent]:
        """Validate and mask every row of an audit frame (all problems reported together)."""
        import polars as pl

        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        missing = [c for c in ("ts", "actor", "action", "details") if c not in df.columns]
        if missing:
            msg = f"audit frame lacks column(s) {', '.join(missing)}"
            raise AuditError(msg, hint="give ts, actor, action and details (see schemas 'audit').")
        if not isinstance(df.schema["ts"], pl.Datetime):
            msg = f"audit frame column 'ts' has dtype {df.schema['ts']}, expected Datetime"
            raise AuditError(msg, hint="parse the timestamps first (UTC).")
        naive = df.schema["ts"].time_zone is None  # type: ignore[union-attr]
        names = (
            "ts",
            "actor",
            "action",
            "resource",
            "details",
            "correlation_id",
            "source",
            "event_id",
        )
        exprs = [pl.col(c) if c in df.columns else pl.lit(None).alias(c) for c in names]
        out: list[PreparedEvent] = []
        problems: list[str] = []
        actions, masker = self.actions, self.masker
        for i, (ts, actor, action, resource, details, cid, source, eid) in enumerate(
            df.select(exprs).iter_rows()
        ):
            if ts is None:
                problems.append(f"row {i}: ts is missing")
                continue
            try:
                out.append(
                    prepare(
                        actor=actor,
                        action=action,
                        resource=resource or "",
                        details=details,
                        correlation_id=cid,
                        source=source,
                        ts=ts.replace(tzinfo=UTC) if naive else ts,
                        event_id=eid,
                        actions=actions,
                        masker=masker,
                    )
                )
            except AuditError as exc:
                problems.append(f"row {i}: {exc.message.removeprefix('invalid audit event: ')}")
        if problems:
            shown = problems[:20] + (
                [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
            )
            msg = f"{len(problems)} invalid audit event(s); nothing was written:\n  " + "\n  ".join(
                shown
            )
            raise AuditError(
                msg, hint="fix or drop the listed rows (actor, action, details) and ingest again."
            )
        ids = [e.event_id for e in out]
        if len(set(ids)) != len(ids):
            msg = "audit frame has duplicate event_id values; nothing was written"
            raise AuditError(msg, hint="event_id must be unique (leave it out to generate one).")
        return out

    def _not_yet_stored(self, conn: Connection, events: list[PreparedEvent]) -> list[PreparedEvent]:
        from sqlalchemy import bindparam, text

        ids = [e.event_id for e in events]
        stmt = text("SELECT event_id FROM audit_events WHERE event_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        seen: set[str] = set()
        for start in range(0, len(ids), 1000):
            seen.update(r[0] for r in conn.execute(stmt, {"ids": ids[start : start + 1000]}))
        return [e for e in events if e.event_id not in seen]

    def _insert(
        self, conn: Connection, events: Sequence[PreparedEvent], *, keep: bool = True
    ) -> Any:
        """Number, hash and insert ``events`` after the head (the caller holds the lock).

        Returns the stored events (``keep``), or ``(first_seq, head)`` for bulk writes.
        """
        from sqlalchemy.exc import IntegrityError

        head = self.head(conn)
        seq, prev = head.seq, head.hash
        rows: list[tuple[Any, ...]] = []
        for e in events:
            seq += 1
            ts_text = format_ts(e.ts)
            h = chain_hash(
                prev,
                canonical_from_stored(
                    seq,
                    ts_text,
                    e.actor,
                    e.action,
                    e.resource,
                    e.details,
                    e.correlation_id,
                    e.source,
                    e.event_id,
                ),
            )
            ts_value = ts_text if self.dialect == "sqlite" else e.ts
            rows.append(
                (
                    seq,
                    ts_value,
                    e.actor,
                    e.action,
                    e.resource,
                    e.details,
                    e.correlation_id,
                    e.source,
                    e.event_id,
                    prev,
                    h,
                )
            )
            prev = h
        if rows:
            try:
                self._write_rows(conn, rows)
            except IntegrityError as exc:
                msg = "audit event rejected by the database (duplicate event_id?); nothing written"
                raise AuditError(
                    msg, hint="event_id must be unique; leave it out to generate one."
                ) from exc
        if not keep:
            return (rows[0][0] if rows else None, ChainHead(seq, prev))
        return [
            RecordedEvent(
                seq=r[0],
                ts=e.ts,
                actor=e.actor,
                action=e.action,
                resource=e.resource,
                details=e.details,
                correlation_id=e.correlation_id,
                source=e.source,
                event_id=e.event_id,
                prev_hash=r[9],
                hash=r[10],
            )
            for r, e in zip(rows, events, strict=True)
        ]

    def _write_rows(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        cols = ", ".join(COLUMNS)
        if self.dialect == "postgresql" and len(rows) >= COPY_THRESHOLD:
            driver = conn.connection.driver_connection
            with driver.cursor() as cur, cur.copy(f"COPY audit_events ({cols}) FROM STDIN") as cp:  # type: ignore[union-attr]
                for row in rows:
                    cp.write_row(row)
            return
        marks = ", ".join(["?" if self.dialect == "sqlite" else "%s"] * len(COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO audit_events ({cols}) VALUES ({marks})", rows)  # type: ignore[arg-type]

    # -- reading -------------------------------------------------------------------------

    def iter_rows(
        self, *, after_seq: int = 0, through_seq: int | None = None, batch_size: int = 20_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Stream stored rows in ``seq`` order, in batches, ``ts`` as canonical text.

        Each row is ``(seq, ts_text, actor, action, resource, details, correlation_id,
        source, event_id, prev_hash, hash)``. PostgreSQL uses a server-side cursor.
        """
        ts_expr = (
            "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            if self.dialect == "postgresql"
            else "ts"
        )
        where = "seq > %(a)s" + (" AND seq <= %(b)s" if through_seq is not None else "")
        sql = (
            f"SELECT seq, {ts_expr}, actor, action, resource, details, correlation_id, source, "
            f"event_id, prev_hash, hash FROM audit_events WHERE {where} ORDER BY seq"
        )
        params = {"a": after_seq, "b": through_seq}
        with self.connect() as conn:
            driver = conn.connection.driver_connection
            if self.dialect == "postgresql":
                with conn.begin(), driver.cursor(name="obsbench_audit_verify") as cur:  # type: ignore[union-attr]
                    cur.itersize = batch_size
                    cur.execute(sql, params)
                    while batch := cur.fetchmany(batch_size):
                        yield batch
            else:
                cur = driver.cursor()  # type: ignore[union-attr]
                try:
                    cur.execute(sql.replace("%(a)s", ":a").replace("%(b)s", ":b"), params)
                    while batch := cur.fetchmany(batch_size):
                        yield batch
                finally:
                    cur.close()

    def fingerprint(self) -> str:
        """A short stable id of the database (for spool and export names)."""
        return hashlib.sha256(_redact(self.url).encode()).hexdigest()[:12]


def _make_engine(url: str) -> Engine:
    """An engine tuned for the audit store (SQLite: WAL, busy timeout, BEGIN IMMEDIATE)."""
    from sqlalchemy import event

    from obsbench.store import engine

    if url.startswith("sqlite"):
        try:
            eng = engine(url, connect_args={"timeout": 60, "isolation_level": None})
        except OSError as exc:  # the database folder cannot be created or is not a folder
            msg = f"the audit database {url} cannot be opened: {exc}"
            raise SourceUnavailable(
                msg,
                hint="check OBSBENCH_HOME (a writable folder); record(..., spool=True) buffers "
                "events locally until it is back.",
            ) from exc

        @event.listens_for(eng, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(eng, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("obsbench_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        eng.dispose()  # the connection opened by the reachability check lacks the pragmas
        return eng
    return engine(url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other URLs)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
