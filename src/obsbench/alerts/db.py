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
from typing import TYPE_CHECKING

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
