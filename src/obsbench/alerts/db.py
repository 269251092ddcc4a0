"""The alert tables (SQLAlchemy Core).

State, history, notification groups, silences, acks, escalations and the delivery outbox.

One schema for SQLite (the default, under ``OBSBENCH_HOME``) and PostgreSQL (by URL). All
timestamps are stored as UTC; :func:`utc` turns what a driver returns back into aware
datetimes.

==========================  ================================================================
table                       one row per
==========================  ================================================================
``alert_state``             pending or firing alert (rule, series, severity): restart resumes
``alert_history``           state transition (the audit trail of every alert)
``alert_rule_health``       rule: last evaluation, ok / nodata / error and the error text
``alert_groups``            notification group and route: timers and the last digest sent
``alert_escalations``       escalation step already sent for an alert episode
``alert_silences``          silence: matchers, time range, author, comment
``alert_acks``              acknowledged alert episode
``alert_outbox``            notification to deliver to one channel (retries, backoff)
==========================  ================================================================
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

metadata = MetaData()


def _ts(name: str, *, nullable: bool = True, primary_key: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable, primary_key=primary_key)


alert_state = Table(
    "alert_state",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("series", String(2000), primary_key=True),
    Column("severity", String(16), primary_key=True),
    Column("fingerprint", String(16), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    _ts("active_at", nullable=False),
    _ts("fired_at"),
    _ts("keep_since"),
    Column("value", Float),
    _ts("updated_at", nullable=False),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("ts", nullable=False),
    Column("rule", String(200), nullable=False, index=True),
    Column("series", String(2000), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("fingerprint", String(16), nullable=False, index=True),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("value", Float),
    _ts("active_at"),
)

alert_rule_health = Table(
    "alert_rule_health",
    metadata,
    Column("rule", String(200), primary_key=True),
    _ts("last_eval", nullable=False),
    Column("health", String(16), nullable=False),
    Column("error", Text),
    Column("series", Integer, nullable=False, default=0),
)

alert_groups = Table(
    "alert_groups",
    metadata,
    Column("route", String(100), primary_key=True),
    Column("group_key", String(2000), primary_key=True),
    _ts("first_seen", nullable=False),
    _ts("last_flush"),
    _ts("last_sent"),
    Column("digest", Text),
    Column("seq", Integer, nullable=False, default=0),
)

alert_escalations = Table(
    "alert_escalations",
    metadata,
    Column("fingerprint", String(16), primary_key=True),
    _ts("active_at", nullable=False, primary_key=True),
    Column("step", Integer, primary_key=True),
    _ts("sent_at", nullable=False),
)

alert_silences = Table(
    "alert_silences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("matchers", Text, nullable=False),
    _ts("starts_at", nullable=False),
    _ts("ends_at", nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False, default=""),
)

alert_acks = Table(
    "alert_acks",
    metadata,
    Column("fingerprint", String(16), primary_key=True),
    _ts("active_at", nullable=False, primary_key=True),
    Column("acked_by", String(200), nullable=False),
    _ts("acked_at", nullable=False),
    Column("comment", Text, nullable=False, default=""),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(100), nullable=False, index=True),
    Column("dedup_key", String(500), nullable=False),
    Column("payload", Text, nullable=False),
    _ts("created_at", nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    _ts("next_attempt_at", nullable=False),
    _ts("delivered_at"),
    Column("last_error", Text),
    UniqueConstraint("dedup_key", name="uq_alert_outbox_dedup"),
)


def create_tables(engine: Engine) -> None:
    """Create every alert table that does not exist yet (idempotent)."""
    metadata.create_all(engine)


def utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime from what a driver returned (SQLite gives naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fingerprint(rule: str, series: str, severity: str) -> str:
    """A short stable id of an alert (rule, series, severity), for acks and the CLI."""
    return hashlib.sha1(f"{rule}\x00{series}\x00{severity}".encode()).hexdigest()[:16]


def is_postgres(engine: Engine) -> bool:
    """Whether ``engine`` talks to PostgreSQL (LISTEN/NOTIFY available)."""
    return engine.dialect.name == "postgresql"


def active_alerts(engine: Engine, *, at: datetime | None = None) -> tuple[Any, list[dict]]:
    """The active alerts (with who acknowledged them) and the active silences.

    Returns a polars frame (fingerprint, rule, series, severity, state, value, active_at,
    fired_at, acked_by) and a list of silence dicts.
    """
    import json

    import polars as pl
    from sqlalchemy import and_, select

    create_tables(engine)
    now = at or datetime.now(UTC)
    q = (
        select(
            alert_state.c.fingerprint,
            alert_state.c.rule,
            alert_state.c.series,
            alert_state.c.severity,
            alert_state.c.state,
            alert_state.c.value,
            alert_state.c.active_at,
            alert_state.c.fired_at,
            alert_acks.c.acked_by,
        )
        .select_from(
            alert_state.outerjoin(
                alert_acks,
                and_(
                    alert_acks.c.fingerprint == alert_state.c.fingerprint,
                    alert_acks.c.active_at == alert_state.c.active_at,
                ),
            )
        )
        .order_by(alert_state.c.rule, alert_state.c.series, alert_state.c.severity)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
        sil = [
            dict(r._mapping)
            for r in conn.execute(
                select(alert_silences).where(
                    alert_silences.c.starts_at <= now, alert_silences.c.ends_at > now
                )
            )
        ]
    for r in rows:
        r["active_at"], r["fired_at"] = utc(r["active_at"]), utc(r["fired_at"])
    for s in sil:
        s["matchers"] = json.loads(s["matchers"])
    schema = {
        "fingerprint": pl.String,
        "rule": pl.String,
        "series": pl.String,
        "severity": pl.String,
        "state": pl.String,
        "value": pl.Float64,
        "active_at": pl.Datetime("us", "UTC"),
        "fired_at": pl.Datetime("us", "UTC"),
        "acked_by": pl.String,
    }
    return pl.DataFrame(rows, schema=schema), sil


def history_frame(engine: Engine) -> Any:
    """The alert history as the canonical ``alerts`` dataset (one row per alert episode).

    Columns: rule, severity, state (the last state reached), labels (JSON), value,
    active_at, fired_at, resolved_at.
    """
    import polars as pl
    from sqlalchemy import select

    create_tables(engine)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(alert_history).order_by("id"))]
    schema = {
        "ts": pl.Datetime("us", "UTC"),
        "rule": pl.String,
        "series": pl.String,
        "severity": pl.String,
        "to_state": pl.String,
        "value": pl.Float64,
        "active_at": pl.Datetime("us", "UTC"),
    }
    hist = pl.DataFrame(
        [{k: (utc(r[k]) if k in ("ts", "active_at") else r[k]) for k in schema} for r in rows],
        schema=schema,
    )
    if hist.is_empty():
        from obsbench import schemas

        return schemas.empty("alerts")
    hist = hist.with_columns(
        pl.col("active_at").fill_null(strategy="forward").over("rule", "series", "severity")
    )
    out = hist.group_by("rule", "series", "severity", "active_at", maintain_order=True).agg(
        state=pl.col("to_state").last(),
        value=pl.col("value").drop_nulls().last(),
        fired_at=pl.col("ts").filter(pl.col("to_state") == "firing").first(),
        resolved_at=pl.col("ts").filter(pl.col("to_state") == "inactive").first(),
    )
    state = (
        pl.when(pl.col("state") == "inactive")
        .then(
            pl.when(pl.col("fired_at").is_not_null())
            .then(pl.lit("resolved"))
            .otherwise(pl.lit("inactive"))
        )
        .otherwise(pl.col("state"))
    )
    return out.select(
        "rule",
        "severity",
        state.alias("state"),
        pl.col("series").alias("labels"),
        "value",
        "active_at",
        "fired_at",
        "resolved_at",
    )
