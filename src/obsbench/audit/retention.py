"""Retention: export old events to Parquet, verify the export, then (only then) prune.

The three steps, each refusing to go on if the one before did not verify:

1. :func:`export` writes the oldest events, a contiguous prefix of the chain whose every
   event is older than ``older_than_days``, to ``audit-<first>-<last>.parquet`` with a
   manifest (``.manifest.json``: rows, first and last ``seq``, the hash the export starts
   from and the one it ends at, the file's SHA-256). The stored chain is verified first.
2. :func:`verify_export` re-computes the exported chain from the file and checks its
   checksum, and that it ends exactly where the database chain continues.
3. :func:`prune` re-verifies the export, writes a **prune checkpoint** (the last pruned
   ``seq`` and its hash) and deletes the exported rows in the same transaction. The
   append-only trigger lets a DELETE through only for rows a checkpoint covers, and only
   on PostgreSQL inside a transaction that set ``obsbench.audit_prune``; the application
   role has no DELETE privilege at all, so pruning is a deliberate act of the owner or of
   ``obsbench_audit_admin``. Verification afterwards starts from the checkpoint, and
   :func:`verify_export` over the archived files proves the pruned part.

No record is lost: a row is deleted only if an export holding it verified against the
chain, and the checkpoint keeps the link the remaining chain starts from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obsbench.audit.chain import GENESIS_HASH, format_ts
from obsbench.audit.store import ChainHead
from obsbench.audit.verify import ChainProblem, VerifyResult, verify_rows
from obsbench.errors import AuditError, ChainBroken
from obsbench.log import get_logger

if TYPE_CHECKING:
    import polars as pl

    from obsbench.audit.store import AuditStore

log = get_logger(__name__)

EXPORT_COLUMNS = (
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


@dataclass(frozen=True)
class ExportManifest:
    """What an export holds; written next to its Parquet file."""

    parquet: str
    sha256: str
    rows: int
    first_seq: int
    last_seq: int
    start_hash: str
    last_hash: str
    cutoff: str
    created_at: str
    database: str

    @property
    def name(self) -> str:
        return Path(self.parquet).name

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def read(cls, path: Path | str) -> ExportManifest:
        """Read a ``.manifest.json`` (the Parquet path is resolved beside it)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["parquet"] = str(path.parent / Path(doc["parquet"]).name)
            return cls(**doc)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            msg = f"cannot read the export manifest {path}: {exc}"
            raise AuditError(msg, hint="give the .manifest.json that export() wrote.") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(
    store: AuditStore,
    dest: Path | str,
    *,
    older_than_days: int,
    now: datetime | None = None,
) -> ExportManifest | None:
    """Export the events older than ``older_than_days`` that have not been pruned yet.

    Returns
    -------
    The manifest, or None if no event is old enough.

    Raises
    ------
    ChainBroken
        If the stored chain up to the export does not verify (nothing is exported).
    """
    import polars as pl
    from sqlalchemy import text

    if older_than_days < 0:
        msg = f"older_than_days must be >= 0, got {older_than_days}"
        raise AuditError(msg, hint="give a number of days such as 365.")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    start = store.checkpoint() or ChainHead(0, GENESIS_HASH)
    with store.connect() as conn:
        bound = format_ts(cutoff) if store.dialect == "sqlite" else cutoff
        young = conn.execute(
            text("SELECT min(seq) FROM audit_events WHERE ts >= :c"), {"c": bound}
        ).scalar()
        last = store.head(conn).seq if young is None else int(young) - 1
    if last <= start.seq:
        return None
    batches = list(store.iter_rows(after_seq=start.seq, through_seq=last))
    result = verify_rows(batches, start_seq=start.seq, start_hash=start.hash)
    if not result.ok or result.head_seq != last:
        msg = f"not exporting: {result}"
        raise ChainBroken(msg, seq=result.problem.seq if result.problem else last)
    rows = [r for b in batches for r in b]
    frame = pl.DataFrame(rows, schema=list(EXPORT_COLUMNS), orient="row").with_columns(
        pl.col("ts")
        .str.strip_suffix("Z")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.6f", time_unit="us")
        .dt.replace_time_zone("UTC"),
        pl.col("prev_hash").str.strip_chars(),
        pl.col("hash").str.strip_chars(),
    )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"audit-{start.seq + 1:012d}-{last:012d}"
    parquet = dest / f"{stem}.parquet"
    tmp = dest / f".{stem}.parquet.tmp"
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, parquet)
    manifest = ExportManifest(
        parquet=str(parquet),
        sha256=_file_sha256(parquet),
        rows=frame.height,
        first_seq=start.seq + 1,
        last_seq=last,
        start_hash=start.hash,
        last_hash=result.head_hash,
        cutoff=cutoff.isoformat(),
        created_at=datetime.now(UTC).isoformat(),
        database=store.fingerprint(),
    )
    doc = json.loads(manifest.to_json()) | {"parquet": parquet.name}
    mpath = dest / f"{stem}.manifest.json"
    mtmp = dest / f".{stem}.manifest.json.tmp"
    mtmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(mtmp, mpath)
    check = verify_export(mpath, store=store)
    if not check.ok:
        msg = f"the export {parquet} does not verify: {check}"
        raise ChainBroken(msg)
    log.info(
        "audit export written",
        extra={"fields": {"file": str(parquet), "rows": frame.height, "last_seq": last}},
    )
    return ExportManifest.read(mpath)


def read_export(manifest: ExportManifest | Path | str) -> pl.DataFrame:
    """The exported events of a manifest (checksum verified first)."""
    import polars as pl

    m = manifest if isinstance(manifest, ExportManifest) else ExportManifest.read(manifest)
    path = Path(m.parquet)
    if not path.exists() or _file_sha256(path) != m.sha256:
        msg = f"the export file {path} is missing or its checksum does not match the manifest"
        raise ChainBroken(msg, seq=m.first_seq, kind="altered")
    return pl.read_parquet(path)


def verify_export(
    manifest: ExportManifest | Path | str, *, store: AuditStore | None = None
) -> VerifyResult:
    """Verify an export: checksum, contiguous ``seq`` and the re-computed chain.

    With ``store``, also that the database chain continues exactly where the export ends.
    """
    m = manifest if isinstance(manifest, ExportManifest) else ExportManifest.read(manifest)
    path = Path(m.parquet)

    def failed(seq: int, kind: str, message: str) -> VerifyResult:
        return VerifyResult(
            ok=False,
            checked=0,
            start_seq=m.first_seq - 1,
            start_hash=m.start_hash,
            head_seq=m.first_seq - 1,
            head_hash=m.start_hash,
            problem=ChainProblem(seq, kind, message),  # type: ignore[arg-type]
        )

    if not path.exists():
        return failed(m.first_seq, "missing", f"the export file {path} is missing")
    if _file_sha256(path) != m.sha256:
        return failed(m.first_seq, "altered", f"the export file {path} does not match its checksum")
    frame = read_export(m)
    from obsbench.audit.chain import format_ts as fmt

    rows = [(r[0], fmt(r[1]), *r[2:]) for r in frame.select(list(EXPORT_COLUMNS)).iter_rows()]
    result = verify_rows([rows], start_seq=m.first_seq - 1, start_hash=m.start_hash)
    if result.ok and (result.head_seq != m.last_seq or len(rows) != m.rows):
        return failed(
            result.head_seq + 1,
            "missing",
            f"the export ends at {result.head_seq} with {len(rows)} rows; its manifest says "
            f"{m.last_seq} and {m.rows}",
        )
    if result.ok and result.head_hash != m.last_hash:
        return failed(m.last_seq, "altered", "the export's last hash differs from its manifest")
    if result.ok and store is not None:
        link = _database_link(store, m.last_seq)
        if link is not None and link != m.last_hash:
            return failed(
                m.last_seq,
                "altered",
                f"the database chain does not continue from the export's last hash at {m.last_seq}",
            )
    return result


def _database_link(store: AuditStore, seq: int) -> str | None:
    """The hash the database holds for ``seq``: the row, a checkpoint, or the next prev_hash."""
    from sqlalchemy import text

    with store.connect() as conn:
        for sql in (
            "SELECT hash FROM audit_events WHERE seq = :s",
            "SELECT hash FROM audit_checkpoints WHERE kind = 'prune' AND seq = :s",
            "SELECT prev_hash FROM audit_events WHERE seq = :s + 1",
        ):
            value = conn.execute(text(sql), {"s": seq}).scalar()
            if value is not None:
                return str(value).strip()
    return None


def prune(store: AuditStore, manifest: ExportManifest | Path | str) -> int:
    """Delete the events of a verified export, keeping a checkpoint; return rows deleted.

    Needs DELETE on ``audit_events`` and INSERT on ``audit_checkpoints`` (the owner or
    ``obsbench_audit_admin`` on PostgreSQL; the application role has neither).

    Raises
    ------
    ChainBroken
        If the export does not verify, or does not start where the stored chain starts.
    AuditError
        If the database rows differ from the export (nothing is deleted).
    """
    from sqlalchemy import text

    m = manifest if isinstance(manifest, ExportManifest) else ExportManifest.read(manifest)
    check = verify_export(m, store=store)
    if not check.ok:
        msg = f"refusing to prune: {check}"
        raise ChainBroken(msg, seq=check.problem.seq if check.problem else None)
    with store._write() as conn:
        start = store.checkpoint(conn) or ChainHead(0, GENESIS_HASH)
        if m.first_seq != start.seq + 1 or m.start_hash != start.hash:
            msg = (
                f"refusing to prune: the export starts at {m.first_seq} but the stored chain "
                f"starts after {start.seq}"
            )
            raise ChainBroken(
                msg,
                seq=start.seq + 1,
                kind="missing",
                hint="prune exports in order, oldest first.",
            )
        n, last_hash = conn.execute(
            text(
                "SELECT count(*), max(CASE WHEN seq = :b THEN hash END) FROM audit_events "
                "WHERE seq >= :a AND seq <= :b"
            ),
            {"a": m.first_seq, "b": m.last_seq},
        ).one()
        if int(n) != m.rows or (last_hash or "").strip() != m.last_hash:
            msg = (
                f"the database holds {n} rows for seq {m.first_seq}..{m.last_seq}, the export "
                f"{m.rows}; nothing pruned"
            )
            raise AuditError(msg, hint="run `obsbench audit verify` and export again.")
        doc = json.dumps(
            {"parquet": m.name, "sha256": m.sha256, "rows": m.rows, "first_seq": m.first_seq},
            sort_keys=True,
        )
        conn.execute(
            text(
                "INSERT INTO audit_checkpoints (kind, seq, hash, manifest) "
                "VALUES ('prune', :s, :h, :m)"
            ),
            {"s": m.last_seq, "h": m.last_hash, "m": doc},
        )
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL obsbench.audit_prune = 'on'")
        deleted = conn.execute(
            text("DELETE FROM audit_events WHERE seq <= :b"), {"b": m.last_seq}
        ).rowcount
    log.info(
        "audit events pruned",
        extra={"fields": {"through_seq": m.last_seq, "rows": deleted, "export": m.name}},
    )
    return int(deleted)


def export_details(m: ExportManifest) -> dict[str, Any]:
    """The fields of a manifest worth recording in an ``export``/``prune`` audit event."""
    return {
        "file": m.name,
        "sha256": m.sha256,
        "rows": m.rows,
        "first_seq": m.first_seq,
        "last_seq": m.last_seq,
        "last_hash": m.last_hash,
    }
