"""Canonical JSON and the SHA-256 hash chain of the audit trail.

Each stored event carries ``hash = SHA-256(prev_hash || canonical JSON of the event)``, where
``prev_hash`` is the hash of the event before it (64 zeros for the first event) and ``||``
concatenates the 64-character hex digest and the JSON text before UTF-8 encoding.

The canonical JSON of an event is::

    json.dumps(
        {
            "seq": ...,
            "ts": ...,
            "actor": ...,
            "action": ...,
            "resource": ...,
            "details": {...},
            "correlation_id": ...,
            "source": ...,
            "event_id": ...,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )

with ``ts`` as ISO 8601 UTC with microseconds (``2026-01-05T09:30:00.000123Z``) and
``details`` the JSON object itself (not a string). The store keeps ``details`` as the
canonical JSON text of that object, so :func:`canonical_from_stored` can build the same bytes
by string concatenation, without parsing, which is what makes verifying a million events
fast. A test asserts both paths agree.

Examples
--------
>>> event = {
...     "seq": 1,
...     "ts": "2026-01-05T09:30:00.000000Z",
...     "actor": "alice",
...     "action": "login",
...     "resource": "dashboard",
...     "details": {"role": "compliance"},
...     "correlation_id": None,
...     "source": "portal",
...     "event_id": "e1",
... }
>>> canonical_json(event)
'{"action":"login","actor":"alice","correlation_id":null,"details":{"role":"compliance"},"event_id":"e1","resource":"dashboard","seq":1,"source":"portal","ts":"2026-01-05T09:30:00.000000Z"}'
>>> chain_hash(GENESIS_HASH, canonical_json(event))[:16]
'623d9d42903addc6'
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first event of a chain."""

HASHED_FIELDS: tuple[str, ...] = (
    "action",
    "actor",
    "correlation_id",
    "details",
    "event_id",
    "resource",
    "seq",
    "source",
    "ts",
)
"""The event fields covered by the hash, in canonical (sorted) order."""

_encode = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C encoder json.dumps uses


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, UTF-8 kept, no NaN.

    Raises
    ------
    ValueError
        If ``obj`` holds NaN or infinity (not JSON).
    TypeError
        If ``obj`` holds something JSON cannot represent.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_ts(ts: datetime) -> str:
    """``ts`` as ISO 8601 UTC with microseconds and a ``Z`` suffix.

    A naive ``ts`` is taken to be UTC already.

    Examples
    --------
    >>> from datetime import datetime, timezone, timedelta
    >>> format_ts(datetime(2026, 1, 5, 10, 30, tzinfo=timezone(timedelta(hours=1))))
    '2026-01-05T09:30:00.000000Z'
    """
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    """Inverse of :func:`format_ts` (an aware UTC datetime)."""
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def canonical_from_stored(
    seq: int,
    ts: str,
    actor: str,
    action: str,
    resource: str,
    details: str,
    correlation_id: str | None,
    source: str | None,
    event_id: str,
) -> str:
    """Canonical JSON of a stored event, by concatenation (``details`` is already canonical).

    Equal to ``canonical_json({... "details": json.loads(details) ...})`` whenever ``details``
    is canonical JSON text, which the store guarantees on write. If someone rewrites
    ``details`` in the database, even to equivalent JSON, the hash no longer matches.
    """
    return (
        '{"action":'
        + _encode(action)
        + ',"actor":'
        + _encode(actor)
        + ',"correlation_id":'
        + ("null" if correlation_id is None else _encode(correlation_id))
        + ',"details":'
        + details
        + ',"event_id":'
        + _encode(event_id)
        + ',"resource":'
        + _encode(resource)
        + ',"seq":'
        + str(seq)
        + ',"source":'
        + ("null" if source is None else _encode(source))
        + ',"ts":'
        + _encode(ts)
        + "}"
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``SHA-256(prev_hash || canonical)`` as 64 lowercase hex characters."""
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """The chain hash of one event given as a dict of :data:`HASHED_FIELDS`.

    ``details`` may be the JSON object or its canonical text; ``ts`` a datetime or the
    formatted string.
    """
    doc = {name: event.get(name) for name in HASHED_FIELDS}
    if isinstance(doc["details"], str):
        doc["details"] = json.loads(doc["details"])
    if isinstance(doc["ts"], datetime):
        doc["ts"] = format_ts(doc["ts"])
    return chain_hash(prev_hash, canonical_json(doc))
