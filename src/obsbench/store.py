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

    def _write_atomic(self, dataset: str, day: date | None, part: pl.DataFrame) -> Path:
        folder = self.root / dataset / f"day={day.isoformat() if day else 'none'}"
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        final, tmp = folder / name, folder / f".{name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            part.write_parquet(tmp, compression="zstd", statistics=True)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            msg = f"could not write {dataset} partition {folder}: {exc}"
            raise StoreError(
                msg, hint="check that OBSBENCH_HOME is writable and the disk is not full."
            ) from exc
        return final

    def files(self, dataset: str) -> list[Path]:
        """The complete Parquet files of ``dataset``, oldest day first."""
        schemas.schema_of(dataset)
        return sorted((self.root / dataset).glob("day=*/part-*.parquet"))

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
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
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
