"""Search the audit trail into polars frames, a page at a time.

Results are ordered by ``ts`` then ``seq`` (oldest first, or newest first with
``descending=True``) and carry the canonical ``audit`` columns (see
:mod:`obsbench.schemas`) plus ``source`` and ``event_id``. Display values are masked again
with the current rules, so a pattern added after an event was stored still hides it.

Filters are combined with AND; ``actor``, ``action``, ``resource`` and ``correlation_id``
accept one value or a list. ``text`` is a case-insensitive substring match over actor,
resource and details. An actor + time range search uses the ``(actor, ts)`` index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from obsbench.audit.chain import canonical_json, format_ts, parse_ts
from obsbench.audit.masking import Masker, mask

TIMESTAMP = pl.Datetime("us", "UTC")  # as obsbench.schemas (not imported: it loads dataframely)

if TYPE_CHECKING:
    from obsbench.audit.store import AuditStore

SEARCH_SCHEMA = pl.Schema(
    {
        "seq": pl.Int64,
        "ts": TIMESTAMP,
        "actor": pl.String,
        "action": pl.String,
        "resource": pl.String,
        "details": pl.String,
        "correlation_id": pl.String,
        "prev_hash": pl.String,
        "hash": pl.String,
        "source": pl.String,
        "event_id": pl.String,
    }
)
"""Columns and dtypes of a search result (canonical ``audit`` columns, then extras)."""

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100_000

StrFilter = str | Sequence[str] | None


@dataclass(frozen=True)
class Query:
    """A search: filters, order and page. Frozen; :meth:`page` gives another page."""

    actor: StrFilter = None
    action: StrFilter = None
    resource: StrFilter = None
    correlation_id: StrFilter = None
    start: datetime | None = None
    end: datetime | None = None
    text: str | None = None
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    descending: bool = False

    def page(self, number: int) -> Query:
        """The same query at page ``number`` (0-based)."""
        from dataclasses import replace

        return replace(self, offset=number * self.limit)


def _as_list(value: StrFilter) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _where(store: AuditStore, q: Query) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for name in ("actor", "action", "resource", "correlation_id"):
        values = _as_list(getattr(q, name))
        if values is None:
            continue
        if len(values) == 1:
            clauses.append(f"{name} = :{name}_0")
        else:
            clauses.append(f"{name} IN ({', '.join(f':{name}_{i}' for i in range(len(values)))})")
        params.update({f"{name}_{i}": v for i, v in enumerate(values)})
    sqlite = store.dialect == "sqlite"
    if q.start is not None:
        clauses.append("ts >= :start")
        params["start"] = format_ts(q.start) if sqlite else _utc(q.start)
    if q.end is not None:
        clauses.append("ts < :end")
        params["end"] = format_ts(q.end) if sqlite else _utc(q.end)
    if q.text:
        like = "LIKE" if sqlite else "ILIKE"  # SQLite LIKE is case-insensitive for ASCII
        clauses.append(
            f"(actor {like} :text ESCAPE '\\' OR resource {like} :text ESCAPE '\\' "
            f"OR details {like} :text ESCAPE '\\')"
        )
        escaped = q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["text"] = f"%{escaped}%"
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _check(q: Query) -> None:
    from obsbench.errors import AuditError

    if not 1 <= q.limit <= MAX_PAGE_SIZE:
        msg = f"limit must be between 1 and {MAX_PAGE_SIZE}, got {q.limit}"
        raise AuditError(msg, hint="page through larger results with offset or iter_search().")
    if q.offset < 0:
        msg = f"offset must be >= 0, got {q.offset}"
        raise AuditError(msg, hint="offsets count rows from the first result (0).")
    if q.start is not None and q.end is not None and _utc(q.end) < _utc(q.start):
        msg = f"end {q.end} is before start {q.start}"
        raise AuditError(msg, hint="give start <= end.")


def run(store: AuditStore, q: Query, *, masker: Masker | None = None) -> pl.DataFrame:
    """One page of ``q`` as a polars frame with :data:`SEARCH_SCHEMA`."""
    from sqlalchemy import text

    _check(q)
    where, params = _where(store, q)
    order = "DESC" if q.descending else "ASC"
    sql = (
        "SELECT seq, ts, actor, action, resource, details, correlation_id, prev_hash, hash, "
        f"source, event_id FROM audit_events{where} ORDER BY ts {order}, seq {order} "
        "LIMIT :limit OFFSET :offset"
    )
    params.update(limit=q.limit, offset=q.offset)
    with store.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    return _frame(rows, sqlite=store.dialect == "sqlite", masker=masker)


def count(store: AuditStore, q: Query) -> int:
    """Number of events matching ``q``'s filters (ignoring its page)."""
    from sqlalchemy import text

    where, params = _where(store, q)
    with store.connect() as conn:
        return int(
            conn.execute(text(f"SELECT count(*) FROM audit_events{where}"), params).scalar_one()
        )


def iter_pages(
    store: AuditStore, q: Query, *, masker: Masker | None = None
) -> Iterator[pl.DataFrame]:
    """Every page of ``q`` from its offset on, until a short page."""
    while True:
        page = run(store, q, masker=masker)
        if page.height:
            yield page
        if page.height < q.limit:
            return
        q = Query(**{**q.__dict__, "offset": q.offset + q.limit})


def _frame(rows: Sequence[Any], *, sqlite: bool, masker: Masker | None) -> pl.DataFrame:
    columns: list[list[Any]] = [[] for _ in SEARCH_SCHEMA]
    for row in rows:
        for i, value in enumerate(row):
            columns[i].append(value)
    if sqlite:
        columns[1] = [parse_ts(v) for v in columns[1]]
    else:
        columns[1] = [_utc(v) for v in columns[1]]
    # actor, resource, details: masked again for display (details as the JSON object).
    columns[2] = [mask(v, masker) for v in columns[2]]
    columns[4] = [mask(v, masker) for v in columns[4]]
    columns[5] = [canonical_json(mask(json.loads(v), masker)) for v in columns[5]]
    columns[7] = [v.strip() if v else v for v in columns[7]]
    columns[8] = [v.strip() if v else v for v in columns[8]]
    return pl.DataFrame(dict(zip(SEARCH_SCHEMA, columns, strict=True)), schema=SEARCH_SCHEMA)
