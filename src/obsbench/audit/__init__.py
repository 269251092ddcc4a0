"""The tamper-evident audit trail: record, search, verify, mask, retain.

Every trading decision, order and execution, every login and access, every configuration
change and every report is recorded as an event in an append-only, SHA-256 hash-chained
table (SQLite under ``OBSBENCH_HOME`` by default, PostgreSQL by ``OBSBENCH_DATABASE_URL``).
Sensitive values are masked before storage. ``verify()`` re-computes the chain and names the
first altered, inserted or missing record. See ``docs/audit.md``.

The functions below use the configured database unless given ``url=``; they open one
:class:`AuditStore` per URL and keep it (migrating its schema on first use).

Examples
--------
>>> import obsbench as ob
>>> ob.audit.record(
...     "alice",
...     "config_change",
...     "risk.max_position",
...     {"before": 100, "after": 150},
...     url=url,
... ).seq  # doctest: +SKIP
1
>>> ob.audit.verify(url=url).ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from obsbench.audit.chain import GENESIS_HASH, canonical_json, chain_hash, event_hash
from obsbench.audit.events import ACTIONS, PreparedEvent
from obsbench.audit.masking import DEFAULT_RULES, Masker, MaskRule, mask
from obsbench.audit.search import DEFAULT_PAGE_SIZE, SEARCH_SCHEMA, Query, StrFilter
from obsbench.audit.search import count as _count
from obsbench.audit.search import iter_pages as _iter_pages
from obsbench.audit.search import run as _run
from obsbench.audit.spool import Spool
from obsbench.audit.store import AppendResult, AuditStore, ChainHead, RecordedEvent
from obsbench.audit.verify import ChainProblem, VerifyResult, verify_rows
from obsbench.errors import SourceUnavailable

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "ACTIONS",
    "DEFAULT_RULES",
    "GENESIS_HASH",
    "SEARCH_SCHEMA",
    "AppendResult",
    "AuditStore",
    "ChainHead",
    "ChainProblem",
    "MaskRule",
    "Masker",
    "PreparedEvent",
    "Query",
    "RecordedEvent",
    "Spool",
    "VerifyResult",
    "anchor",
    "canonical_json",
    "chain_hash",
    "chain_head",
    "close_store",
    "count",
    "event_hash",
    "iter_search",
    "mask",
    "open_store",
    "record",
    "record_many",
    "replay_spool",
    "search",
    "verify",
    "verify_rows",
]

_stores: dict[str, AuditStore] = {}
_stores_lock = threading.Lock()


def open_store(url: str | None = None) -> AuditStore:
    """The process-wide :class:`AuditStore` of ``url`` (default: the configured database).

    Raises
    ------
    SourceUnavailable
        If the database cannot be reached (nothing is cached then; the next call retries).
    """
    from obsbench.config import get_settings

    key = url or get_settings().database
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = AuditStore(key)
        return store


def close_store(url: str | None = None) -> None:
    """Dispose of the cached store of ``url`` (its connections); the next use reopens it."""
    from obsbench.config import get_settings

    with _stores_lock:
        store = _stores.pop(url or get_settings().database, None)
    if store is not None:
        store.close()


def record(
    actor: str,
    action: str,
    resource: str = "",
    details: Mapping[str, Any] | str | None = None,
    *,
    correlation_id: str | None = None,
    source: str | None = None,
    ts: datetime | None = None,
    event_id: str | None = None,
    url: str | None = None,
    spool: bool = False,
) -> RecordedEvent:
    """Record one audit event.

    Parameters
    ----------
    actor
        Who: a user, a service account or a strategy. Required.
    action
        What: one of :data:`ACTIONS` (decision, order, execution, login, logout, access,
        access_denied, config_change, report_generated, alert_ack, ...). Required.
    resource
        What was acted on (strategy, order id, page, setting).
    details
        A JSON object (``dict`` or JSON text); ``before`` and ``after`` for config changes.
        Sensitive values are masked before storage.
    correlation_id
        Ties a decision to its orders and executions.
    source
        The service that emitted the event.
    ts
        Event time (default now, UTC).
    event_id
        Unique id (default a random UUID); a replayed or retried event keeps its id.
    url
        Database URL (default ``OBSBENCH_DATABASE_URL`` or SQLite under ``OBSBENCH_HOME``).
    spool
        If the database is down, append the (validated, masked) event to the local spool
        instead of raising; it is written, in order, by the next successful ``record`` or
        :func:`replay_spool`. The returned event then has ``spooled=True`` and no ``seq``.

    Returns
    -------
    The event as stored, with ``seq``, ``prev_hash`` and ``hash``.

    Raises
    ------
    AuditError
        On a missing actor or action, an unknown action or non-JSON details (nothing written).
    SourceUnavailable
        If the database is down and ``spool`` is false.
    """
    from obsbench.audit.events import prepare

    event = prepare(
        actor=actor,
        action=action,
        resource=resource,
        details=details,
        correlation_id=correlation_id,
        source=source,
        ts=ts,
        event_id=event_id,
    )
    buffer = Spool.for_url(url) if spool else None
    try:
        return open_store(url).append([event], spool=buffer)[-1]
    except SourceUnavailable:
        if buffer is None:
            raise
        buffer.append([event])
        from obsbench.log import get_logger

        get_logger(__name__).warning(
            "audit database unavailable; event spooled",
            extra={"fields": {"event_id": event.event_id, "spool": str(buffer.path)}},
        )
        return RecordedEvent(
            seq=None,
            ts=event.ts,
            actor=event.actor,
            action=event.action,
            resource=event.resource,
            details=event.details,
            correlation_id=event.correlation_id,
            source=event.source,
            event_id=event.event_id,
            prev_hash=None,
            hash=None,
            spooled=True,
        )


def record_many(frame: pl.DataFrame | pl.LazyFrame, *, url: str | None = None) -> AppendResult:
    """Append every row of an ``audit`` frame (e.g. the simulator's audit stream), in order.

    All rows are validated first; one bad row raises ``AuditError`` and nothing is written.
    """
    return open_store(url).record_many(frame)


def replay_spool(url: str | None = None) -> int:
    """Write the events spooled for ``url`` while it was down; return how many."""
    return open_store(url).replay_spool(Spool.for_url(url))


def search(
    actor: StrFilter = None,
    action: StrFilter = None,
    resource: StrFilter = None,
    correlation_id: StrFilter = None,
    start: datetime | None = None,
    end: datetime | None = None,
    text: str | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    offset: int = 0,
    descending: bool = False,
    url: str | None = None,
) -> pl.DataFrame:
    """One page of audit events matching every given filter, as a polars frame.

    ``start <= ts < end``; ``text`` is a case-insensitive substring of actor, resource or
    details. Ordered by ``ts`` then ``seq`` (newest first with ``descending``). See
    :mod:`obsbench.audit.search` for the columns.
    """
    q = Query(actor, action, resource, correlation_id, start, end, text, limit, offset, descending)
    return _run(open_store(url), q)


def iter_search(
    actor: StrFilter = None,
    action: StrFilter = None,
    resource: StrFilter = None,
    correlation_id: StrFilter = None,
    start: datetime | None = None,
    end: datetime | None = None,
    text: str | None = None,
    *,
    page_size: int = 10_000,
    url: str | None = None,
) -> pl.DataFrame:
    """Every matching event (all pages concatenated)."""
    import polars as pl

    q = Query(actor, action, resource, correlation_id, start, end, text, page_size)
    pages = list(_iter_pages(open_store(url), q))
    return pl.concat(pages) if pages else pl.DataFrame(schema=SEARCH_SCHEMA)


def count(
    actor: StrFilter = None,
    action: StrFilter = None,
    resource: StrFilter = None,
    correlation_id: StrFilter = None,
    start: datetime | None = None,
    end: datetime | None = None,
    text: str | None = None,
    *,
    url: str | None = None,
) -> int:
    """Number of events matching the filters."""
    q = Query(actor, action, resource, correlation_id, start, end, text)
    return _count(open_store(url), q)


def verify(
    *,
    url: str | None = None,
    anchors: Mapping[int, str] | Iterable[tuple[int, str]] = (),
) -> VerifyResult:
    """Re-compute the hash chain; report the first altered, inserted or missing record.

    ``anchors`` are ``(seq, hash)`` pairs recorded earlier (e.g. in report manifests); the
    chain must reproduce each, and must reach the highest.
    """
    from obsbench.audit.verify import verify_store

    return verify_store(open_store(url), anchors=anchors)


def chain_head(*, url: str | None = None) -> ChainHead:
    """The current chain head (last ``seq`` and its hash) without verifying."""
    return open_store(url).head()


def anchor(*, url: str | None = None) -> dict[str, Any]:
    """Verify the chain and return an anchor for a report manifest.

    Returns
    -------
    ``{"seq", "hash", "verified", "checked", "problem", "at"}``: the verified head (the
    last good record if the chain is broken) and when it was taken. Keep it outside the
    database; ``verify(anchors=[(seq, hash)])`` later proves the log was not re-written.
    """
    from datetime import UTC

    result = verify(url=url)
    return {
        "seq": result.head_seq,
        "hash": result.head_hash,
        "verified": result.ok,
        "checked": result.checked,
        "problem": result.as_dict()["problem"],
        "at": datetime.now(UTC).isoformat(),
    }
