"""The embedded default store: Parquet datasets under ``OBSBENCH_HOME`` and a database engine.

Layout::

    $OBSBENCH_HOME/data/<dataset>/day=YYYY-MM-DD/part-<ns>-<uuid>.parquet

Each append writes one file per touched day. A file is written under a hidden temporary name
in its final folder and then renamed with :func:`os.replace`, which is atomic on POSIX: a
reader globbing ``*.parquet`` sees either the whole file or nothing. Readers get polars
``LazyFrame`` objects, so queries push filters down and can stream.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from obsbench import schemas
from obsbench.config import get_settings
from obsbench.errors import SourceUnavailable, StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# The column each dataset is partitioned (and range-filtered) by; "ts" where not listed.
TIME_COLUMNS: dict[str, str] = {
    "spans": "start",
    "costs": "ChargePeriodStart",
    "alerts": "active_at",
    "incidents": "start",
}


def time_column(dataset: str) -> str:
    """The timestamp column that partitions ``dataset``."""
    return TIME_COLUMNS.get(dataset, "ts")


class Store:
    """Parquet datasets partitioned by dataset and UTC day.

    Parameters
    ----------
    home
        The obsbench home; defaults to ``OBSBENCH_HOME`` (see :mod:`obsbench.config`).
    """

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else get_settings().home
        self.root = self.home / "data"

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    def append(self, dataset: str, frame: pl.DataFrame, *, validate: bool = True) -> list[Path]:
        """Append ``frame`` to ``dataset``, one atomic file per UTC day it touches.

        Returns
        -------
        The paths written (empty for an empty frame).

        Raises
        ------
        SchemaError
            If ``validate`` and the frame does not match the dataset; nothing is written.
        StoreError
            If the file system refuses the write; no partial file is left visible.
        """
        if validate:
            frame = schemas.validate(frame, dataset)
        else:
            schemas.schema_of(dataset)  # still reject an unknown dataset name
        if frame.is_empty():
            return []
        tcol = time_column(dataset)
        days = frame.get_column(tcol).dt.date()
        written: list[Path] = []
        for (day,), part in (
            frame.with_columns(_day=days)
            .partition_by("_day", as_dict=True, maintain_order=True)
            .items()
        ):
            written.append(self._write_atomic(dataset, day, part.drop("_day")))
        return written

    def _write_atomic(
        self, dataset: str, day: date | None, part: pl.DataFrame, *, name: str | None = None
    ) -> Path:
        folder = self.root / dataset / f"day={day.isoformat() if day else 'none'}"
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            part.write_parquet(tmp, compression="zstd", statistics=True)
            # The name's timestamp is taken after the write, just before the rename, so
            # compaction (which only takes files older than its min_age) never misses a
            # file that was still being written when it listed the folder.
            final = folder / (name or f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet")
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            msg = f"could not write {dataset} partition {folder}: {exc}"
            raise StoreError(
                msg, hint="check that OBSBENCH_HOME is writable and the disk is not full."
            ) from exc
        return final

    def files(self, dataset: str) -> list[Path]:
        """The visible Parquet files of ``dataset``, oldest day first.

        Files a compaction has merged are hidden as soon as the merged file exists (and
        deleted a little later), so a listing never holds the same rows twice.
        """
        schemas.schema_of(dataset)
        visible: list[Path] = []
        for folder in sorted((self.root / dataset).glob("day=*")):
            visible.extend(_visible(list(folder.glob("*.parquet"))))
        return visible

    def merged_parts(self, compacted: Path) -> list[Path]:
        """The part files a compacted file merged that are still on disk, oldest first.

        They stay ``grace_s`` seconds after the merge (:meth:`compact`): a tailing reader
        that had read some of them reads the others from there.
        """
        lo, hi = file_span(compacted)
        parts = (f for f in compacted.parent.glob("part-*.parquet") if lo <= file_span(f)[0] <= hi)
        return sorted(parts, key=file_span)

    def compact(self, dataset: str, *, min_age_s: float = 10.0, grace_s: float = 60.0) -> int:
        """Merge each day's small part files of ``dataset`` into one file; return files merged.

        Live mode appends one small file per tick; compaction keeps scans fast. The merged
        file ``compact-<first>-<last>-<id>.parquet`` is written atomically and covers every
        part whose timestamp lies in ``[first, last]``; readers hide those parts at once.
        The parts are deleted on a later call, ``grace_s`` after they were superseded, so
        a reader that listed them a moment before can still open them. Only files older
        than ``min_age_s`` are merged. One compactor runs per dataset at a time (file lock).
        """
        import fcntl

        schemas.schema_of(dataset)
        root = self.root / dataset
        if not root.exists():
            return 0
        merged = 0
        with open(root / ".compact.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            now_ns = time.time_ns()
            for folder in sorted(root.glob("day=*")):
                files = list(folder.glob("*.parquet"))
                _delete_superseded(files, now_ns - int(grace_s * 1e9))
                visible = _visible([f for f in files if f.exists()])
                # Only plain parts are merged: each call costs what was appended since the
                # last one, never a rewrite of the day (it runs inside the live tick loop).
                old = [
                    f
                    for f in visible
                    if f.name.startswith("part-")
                    and file_span(f)[1] < now_ns - int(min_age_s * 1e9)
                ]
                if len(old) < 2:
                    continue
                lo, hi = min(file_span(f)[0] for f in old), max(file_span(f)[1] for f in old)
                frame = pl.read_parquet(old, schema=schemas.schema_of(dataset))
                day_text = folder.name.removeprefix("day=")
                day = None if day_text == "none" else date.fromisoformat(day_text)
                name = f"compact-{lo:020d}-{hi:020d}-{uuid.uuid4().hex[:8]}.parquet"
                self._write_atomic(dataset, day, frame, name=name)
                merged += len(old)
        return merged

    def scan(
        self,
        dataset: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.LazyFrame:
        """Lazily read ``dataset``, optionally limited to ``start <= time < end``.

        Only the day folders that can hold rows in range are opened. A dataset with no
        files yet gives an empty frame with the canonical schema.
        """
        if not self.root.exists() and not self.home.exists():
            msg = f"the obsbench home {self.home} does not exist"
            raise SourceUnavailable(
                msg, hint="run `obsbench sim` (or `obsbench demo`) first, or set OBSBENCH_HOME."
            )
        files = [f for f in self.files(dataset) if _day_in_range(f.parent.name, start, end)]
        if not files:
            return schemas.empty(dataset).lazy()
        lf = pl.scan_parquet(files, schema=schemas.schema_of(dataset), hive_partitioning=False)
        tcol = pl.col(time_column(dataset))
        if start is not None:
            lf = lf.filter(tcol >= _utc(start))
        if end is not None:
            lf = lf.filter(tcol < _utc(end))
        return lf

    def read(
        self, dataset: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> pl.DataFrame:
        """Eager :meth:`scan`."""
        return self.scan(dataset, start=start, end=end).collect()

    def counts(self) -> dict[str, int]:
        """Row count per dataset present in the store (read from Parquet metadata)."""
        out: dict[str, int] = {}
        for dataset in schemas.DATASETS:
            files = self.files(dataset)
            if files:
                out[dataset] = sum(_parquet_rows(f) for f in files)
        return out

    def clear(self, dataset: str | None = None) -> None:
        """Delete one dataset, or every dataset, from the store."""
        target = self.root / dataset if dataset else self.root
        if dataset:
            schemas.schema_of(dataset)
        shutil.rmtree(target, ignore_errors=True)


def file_span(path: Path) -> tuple[int, int]:
    """The (first, last) write timestamps, in ns, of the rows a store file holds.

    A part file ``part-<ns>-<id>.parquet`` was written at ``ns``; a compacted file
    ``compact-<first>-<last>-<id>.parquet`` merged the parts written in ``[first, last]``.
    ``(0, 0)`` for a name of neither form.
    """
    parts = path.name.split("-")
    try:
        if parts[0] == "compact":
            return int(parts[1]), int(parts[2])
        return int(parts[1]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def _visible(files: list[Path]) -> list[Path]:
    """Drop files whose span lies inside a compacted file's span; order by span."""
    compacted = [file_span(f) for f in files if f.name.startswith("compact-")]

    def covered(f: Path) -> bool:
        lo, hi = file_span(f)
        return any(
            c_lo <= lo and hi <= c_hi and (lo, hi) != (c_lo, c_hi) for c_lo, c_hi in compacted
        )

    return sorted((f for f in files if not covered(f)), key=file_span)


def _delete_superseded(files: list[Path], before_ns: int) -> None:
    """Delete hidden files whose covering compacted file was written before ``before_ns``."""
    visible = set(_visible(files))
    compacted = [f for f in visible if f.name.startswith("compact-")]
    for f in files:
        if f in visible:
            continue
        lo, hi = file_span(f)
        covers = [c for c in compacted if file_span(c)[0] <= lo and hi <= file_span(c)[1]]
        if covers and all(c.stat().st_mtime_ns < before_ns for c in covers):
            f.unlink(missing_ok=True)


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _day_in_range(folder: str, start: datetime | None, end: datetime | None) -> bool:
    day_text = folder.removeprefix("day=")
    if day_text == "none":
        return True
    day = date.fromisoformat(day_text)
    if start is not None and day < _utc(start).date():
        return False
    return not (end is not None and day > _utc(end).date())


def engine(url: str | None = None, **kwargs: object) -> Engine:
    """A SQLAlchemy engine for ``url`` (default: ``OBSBENCH_DATABASE_URL`` or SQLite in the home).

    The connection is tried once, so a wrong URL or a server that is down fails here with
    :class:`~obsbench.errors.SourceUnavailable` rather than later, mid-write.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    settings = get_settings()
    url = url or settings.database
    if url.startswith("sqlite:///"):
        try:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the folder of the SQLite database {url}: {exc}"
            raise SourceUnavailable(
                msg, hint="point OBSBENCH_HOME (or OBSBENCH_DATABASE_URL) at a writable folder."
            ) from exc
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        eng = create_engine(url, pool_pre_ping=True, **kwargs)  # type: ignore[arg-type]
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(exc.orig or exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"cannot connect to the database {_redact(url)}: {reason}"
        raise SourceUnavailable(
            msg,
            hint="start the database or fix OBSBENCH_DATABASE_URL "
            "(e.g. postgresql+psycopg://user@127.0.0.1:5432/test).",
        ) from exc
    return eng


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
