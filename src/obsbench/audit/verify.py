"""Verification of the audit hash chain: the first altered, inserted or missing record.

:func:`verify_rows` re-computes every hash from the stored fields, streaming rows in ``seq``
order, and stops at the first record that does not verify. It tells apart:

``missing``
    a sequence number is absent (a deleted record), or the records after a deleted one were
    renumbered (their hashes match one sequence number higher), or the chain ends before an
    anchor's sequence number (the tail was cut);
``inserted``
    a record that the next record's ``prev_hash`` skips over (a record slipped in between);
``altered``
    a record whose fields no longer give its hash, or whose hash was re-computed after the
    change (the next record's ``prev_hash`` still holds the original), or a chain that
    disagrees with an anchor.

An **anchor** is a ``(seq, hash)`` pair kept outside the database, e.g. in a report's
``manifest.json``: a chain re-written from some point on (every hash re-computed) still
fails against an anchor taken before the rewrite.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from obsbench.audit.chain import GENESIS_HASH, canonical_from_stored
from obsbench.errors import ChainBroken

if TYPE_CHECKING:
    from obsbench.audit.store import AuditStore

ProblemKind = Literal["altered", "inserted", "missing"]


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first record that does not verify."""

    seq: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verification.

    Attributes
    ----------
    ok
        True if every record checked verifies (and agrees with every anchor given).
    checked
        Records re-hashed.
    start_seq, start_hash
        Where the chain was taken up: 0 and 64 zeros, or the last prune checkpoint.
    head_seq, head_hash
        The last record that verified (the chain head when ``ok``).
    problem
        The first altered, inserted or missing record, if any.
    anchors_checked
        Anchors compared against the chain.
    elapsed_s
        Wall time.
    """

    ok: bool
    checked: int
    start_seq: int
    start_hash: str
    head_seq: int
    head_hash: str
    problem: ChainProblem | None = None
    anchors_checked: int = 0
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        if self.ok:
            return (
                f"audit chain OK: {self.checked:,} record(s) verified "
                f"(seq {self.start_seq + 1}..{self.head_seq}), head {self.head_hash}"
            )
        assert self.problem is not None
        return (
            f"audit chain BROKEN at seq {self.problem.seq} ({self.problem.kind}): "
            f"{self.problem.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what goes into a report manifest)."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "start_seq": self.start_seq,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problem": None
            if self.problem is None
            else {
                "seq": self.problem.seq,
                "kind": self.problem.kind,
                "message": self.problem.message,
            },
            "anchors_checked": self.anchors_checked,
        }

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        from html import escape

        return f'<div style="color:{colour};font-weight:600">{escape(str(self))}</div>'

    def raise_for_failure(self) -> VerifyResult:
        """Raise :class:`~obsbench.errors.ChainBroken` unless ``ok``; return self."""
        if not self.ok:
            assert self.problem is not None
            raise ChainBroken(str(self), seq=self.problem.seq, kind=self.problem.kind)
        return self


Row = tuple[
    Any, ...
]  # (seq, ts_text, actor, action, resource, details, cid, source, eid, prev, hash)


def _hash(prev: str, row: Row, seq: int | None = None) -> str:
    seq = row[0] if seq is None else seq
    canonical = canonical_from_stored(seq, *row[1:9])
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


def verify_rows(
    batches: Iterable[list[Row]],
    *,
    start_seq: int = 0,
    start_hash: str = GENESIS_HASH,
    anchors: Mapping[int, str] | Iterable[tuple[int, str]] = (),
) -> VerifyResult:
    """Verify a chain given as batches of stored rows in ``seq`` order.

    Parameters
    ----------
    batches
        Lists of rows ``(seq, ts_text, actor, action, resource, details, correlation_id,
        source, event_id, prev_hash, hash)`` (what :meth:`AuditStore.iter_rows` yields).
    start_seq, start_hash
        The link the first row must follow (genesis, or a prune checkpoint).
    anchors
        Known-good ``(seq, hash)`` pairs the chain must reproduce.
    """
    t0 = time.perf_counter()
    anchor_map = dict(anchors.items() if isinstance(anchors, Mapping) else anchors)
    anchors_checked = 0
    sha256 = hashlib.sha256
    canon = canonical_from_stored
    expected = start_seq + 1
    prev = start_hash
    prev_row: Row | None = None
    problem: ChainProblem | None = None
    rows = _flatten(batches)
    for row in rows:
        seq = row[0]
        if seq != expected:
            problem = ChainProblem(
                expected,
                "missing",
                f"record {expected} is missing (the next stored record is {seq})"
                if seq > expected
                else f"record {seq} appears out of order after {expected - 1}",
            )
            break
        h = sha256((prev + canon(seq, *row[1:9])).encode()).hexdigest()
        if h != row[10] or row[9] != prev:
            problem = _classify(row, prev, prev_row, next(rows, None))
            if problem.seq < seq and prev_row is not None:  # the record before is the bad one
                expected, prev = expected - 1, prev_row[9]
            break
        if anchor_map and seq in anchor_map:
            anchors_checked += 1
            if anchor_map[seq] != h:
                problem = ChainProblem(
                    seq,
                    "altered",
                    f"the chain up to record {seq} was re-written: its hash {h[:16]}... differs "
                    f"from the anchor {anchor_map[seq][:16]}...",
                )
                break
        prev, prev_row, expected = h, row, expected + 1
    last = expected - 1
    if problem is None:
        beyond = [s for s in anchor_map if s > last]
        if beyond:
            anchors_checked += len(beyond)
            problem = ChainProblem(
                last + 1,
                "missing",
                f"records {last + 1}..{max(beyond)} are missing: the chain ends at {last} but an "
                f"anchor holds record {max(beyond)}",
            )
    return VerifyResult(
        ok=problem is None,
        checked=last - start_seq,
        start_seq=start_seq,
        start_hash=start_hash,
        head_seq=last,
        head_hash=prev,
        problem=problem,
        anchors_checked=anchors_checked,
        elapsed_s=time.perf_counter() - t0,
    )


def _flatten(batches: Iterable[list[Row]]) -> Iterator[Row]:
    for batch in batches:
        yield from batch


def _classify(row: Row, prev: str, prev_row: Row | None, next_row: Row | None) -> ChainProblem:
    """Name the first bad record, given the row that failed and its neighbours."""
    seq, stored_prev, stored_hash = row[0], row[9], row[10]
    if stored_prev == prev:
        if next_row is not None and next_row[9] == stored_prev and next_row[0] == seq + 1:
            return ChainProblem(
                seq, "inserted", f"record {seq} was inserted: record {seq + 1} links past it"
            )
        return ChainProblem(
            seq, "altered", f"record {seq} was altered: its fields no longer give its hash"
        )
    if prev_row is not None and stored_prev == prev_row[9]:
        return ChainProblem(
            seq - 1,
            "inserted",
            f"record {seq - 1} was inserted: record {seq} links to record {seq - 2}",
        )
    if _hash(stored_prev, row) == stored_hash:
        return ChainProblem(
            seq - 1,
            "altered",
            f"record {seq - 1} was altered and re-hashed: record {seq} still links to its "
            "original hash",
        )
    if _hash(stored_prev, row, seq + 1) == stored_hash:
        return ChainProblem(
            seq,
            "missing",
            f"record {seq} was deleted and the later records renumbered (record {seq} "
            f"hashes as {seq + 1})",
        )
    if _hash(stored_prev, row, seq - 1) == stored_hash:
        return ChainProblem(
            seq - 1,
            "inserted",
            f"a record was inserted at {seq - 1} and the later records renumbered",
        )
    return ChainProblem(seq, "altered", f"record {seq} was altered (hash and link do not match)")


def verify_store(
    store: AuditStore,
    *,
    anchors: Mapping[int, str] | Iterable[tuple[int, str]] = (),
    batch_size: int = 20_000,
    fast: bool = True,
) -> VerifyResult:
    """Verify the chain stored in ``store``, from its last prune checkpoint (or genesis).

    On PostgreSQL with ``fast`` the server formats each row's canonical JSON (string
    concatenation with ``pg_catalog.to_json``, which escapes strings exactly as Python's
    ``json`` does) and streams ``(seq, prev_hash, hash, canonical)``; the client hashes.
    The hashing, the comparison and the chain state stay on the client. At the first row
    that does not verify, verification is handed to the field-by-field Python path from the
    last good record, which names the problem, so a formatting difference can never produce
    a false alarm.
    """
    start = store.checkpoint()
    start_seq, start_hash = (start.seq, start.hash) if start else (0, GENESIS_HASH)
    anchor_map = dict(anchors.items() if isinstance(anchors, Mapping) else anchors)
    if fast and store.dialect == "postgresql":
        return _verify_postgres(store, start_seq, start_hash, anchor_map, batch_size)
    return verify_rows(
        store.iter_rows(after_seq=start_seq, batch_size=batch_size),
        start_seq=start_seq,
        start_hash=start_hash,
        anchors=anchor_map,
    )


CANONICAL_SQL = """
SELECT seq, prev_hash, hash,
    '{"action":' || pg_catalog.to_json(action)::text
    || ',"actor":' || pg_catalog.to_json(actor)::text
    || ',"correlation_id":' || coalesce(pg_catalog.to_json(correlation_id)::text, 'null')
    || ',"details":' || details
    || ',"event_id":' || pg_catalog.to_json(event_id)::text
    || ',"resource":' || pg_catalog.to_json(resource)::text
    || ',"seq":' || seq::text
    || ',"source":' || coalesce(pg_catalog.to_json(source)::text, 'null')
    || ',"ts":"' || pg_catalog.to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '"}'
FROM audit_events WHERE seq > %(after)s ORDER BY seq
"""
"""The server-side canonical JSON of each stored event (see :func:`verify_store`)."""


def _verify_postgres(
    store: AuditStore,
    start_seq: int,
    start_hash: str,
    anchor_map: dict[int, str],
    batch_size: int,
) -> VerifyResult:
    t0 = time.perf_counter()
    sha256 = hashlib.sha256
    expected, prev, before = start_seq + 1, start_hash, start_hash
    anchors_checked = 0
    suspect = False
    with store.connect() as conn:
        driver = conn.connection.driver_connection
        with driver.cursor() as cur:  # type: ignore[union-attr]
            for seq, stored_prev, stored_hash, canonical in cur.stream(
                CANONICAL_SQL, {"after": start_seq}, size=batch_size
            ):
                h = sha256((prev + canonical).encode()).hexdigest()
                if seq != expected or stored_prev != prev or h != stored_hash:
                    suspect = True
                    break
                if anchor_map and seq in anchor_map:
                    anchors_checked += 1
                    if anchor_map[seq] != h:
                        suspect = True
                        break
                before, prev, expected = prev, h, expected + 1
        if suspect:
            conn.invalidate()  # drop the half-read stream with the connection
    last = expected - 1
    if not suspect:
        result = verify_rows(
            [],
            start_seq=last,
            start_hash=prev,
            anchors={s: a for s, a in anchor_map.items() if s > last},
        )
    else:
        # Field by field from the record before the last good one (so the classification
        # sees both neighbours): names the problem, or clears a false alarm.
        if last > start_seq:
            last, prev = last - 1, before
        result = verify_rows(
            store.iter_rows(after_seq=last, batch_size=batch_size),
            start_seq=last,
            start_hash=prev,
            anchors={s: a for s, a in anchor_map.items() if s > last},
        )
    return VerifyResult(
        ok=result.ok,
        checked=last - start_seq + result.checked,
        start_seq=start_seq,
        start_hash=start_hash,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        problem=result.problem,
        anchors_checked=anchors_checked + result.anchors_checked,
        elapsed_s=time.perf_counter() - t0,
    )
