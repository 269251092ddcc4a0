"""A report's inputs: read a dataset for the report period, and refuse stale or missing data.

A report that silently shows numbers for an empty or partial period is worse than none.
:func:`load_period` reads one canonical dataset for ``[start, end]`` (whole UTC days, both
inclusive) from the embedded store under ``data_source`` (default ``OBSBENCH_HOME``), and
:func:`require_rows` makes the notebook cell fail, and so the run, when the data does not
cover the period.

Examples
--------
>>> period_bounds("2024-01-01", "2024-01-31")
(datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2024, 2, 1, 0, 0, tzinfo=datetime.timezone.utc))
"""  # noqa: E501

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar

from obsbench.errors import ObsbenchError

if TYPE_CHECKING:
    import polars as pl

F = TypeVar("F", "pl.DataFrame", "pl.LazyFrame")


class ReportDataError(ObsbenchError, ValueError):
    """A report's input data is missing or does not cover the report period."""


def _as_day(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"{value!r} is not an ISO date"
        raise ReportDataError(msg, hint="give the period as YYYY-MM-DD.") from None


def period_bounds(start: str | date, end: str | date) -> tuple[datetime, datetime]:
    """``[start 00:00 UTC, end + 1 day 00:00 UTC)`` for an inclusive period of days.

    Raises
    ------
    ReportDataError
        If a bound is not a date or ``end`` is before ``start``.
    """
    first, last = _as_day(start), _as_day(end)
    if last < first:
        msg = f"the period ends ({last}) before it starts ({first})"
        raise ReportDataError(msg, hint="swap start and end.")
    return (
        datetime.combine(first, time(0), tzinfo=UTC),
        datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC),
    )


def load_period(
    dataset: str, start: str | date, end: str | date, data_source: str | None = None
) -> pl.LazyFrame:
    """``dataset`` rows with their time column in the period, from the store at ``data_source``.

    Parameters
    ----------
    dataset
        A canonical dataset name (``"requests"``, ``"returns"``, ``"fills"``...).
    start, end
        First and last day of the period (inclusive, UTC).
    data_source
        An obsbench home folder; empty or ``None`` means ``OBSBENCH_HOME``.
    """
    from obsbench.store import Store

    lo, hi = period_bounds(start, end)
    return Store(data_source or None).scan(dataset, start=lo, end=hi)


def require_rows(
    frame: F,
    *,
    what: str,
    start: str | date | None = None,
    end: str | date | None = None,
    ts: str = "ts",
    max_gap: timedelta = timedelta(days=4),
) -> F:
    """Return ``frame`` unchanged, or raise if it is empty or does not reach the period's edges.

    Only the row count and the first and last ``ts`` are computed (lazily for a
    ``LazyFrame``), so this costs one cheap pass. ``max_gap`` is how far the first/last row
    may sit from the period's start/end (weekends and holidays have no trading data; the
    default allows a long weekend).

    Raises
    ------
    ReportDataError
        Naming the dataset, the period and what is missing, so the run fails visibly.
    """
    import polars as pl

    has_ts = ts in frame.collect_schema().names()
    stats = frame.select(
        pl.len().alias("n"),
        *((pl.col(ts).min().alias("first"), pl.col(ts).max().alias("last")) if has_ts else ()),
    )
    row = (stats.collect() if isinstance(stats, pl.LazyFrame) else stats).row(0, named=True)
    period = f"{start} – {end}" if start is not None and end is not None else "the period"
    if row["n"] == 0:
        msg = f"no {what} data for {period}"
        raise ReportDataError(
            msg, hint="check the data source and period (`obsbench info` shows the store)."
        )
    first, last = row.get("first"), row.get("last")
    if start is None or end is None or not isinstance(first, datetime):
        return frame
    lo, hi = period_bounds(start, end)
    first, last = _aware(first), _aware(last)  # type: ignore[arg-type]
    problems = []
    if first - lo > max_gap:
        problems.append(f"starts only at {first:%Y-%m-%d %H:%M}")
    if hi - last > max_gap:
        problems.append(f"stops at {last:%Y-%m-%d %H:%M}")
    if problems:
        msg = f"the {what} data does not cover {period}: it {' and '.join(problems)}"
        raise ReportDataError(
            msg, hint="load the missing days or shorten the period; stale data is refused."
        )
    return frame


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


MANIFEST_MIMETYPE = "application/vnd.obsbench.manifest+json"


def record_in_manifest(**entries: object) -> None:
    """Hand ``entries`` from a notebook to the report run's ``manifest.json``.

    The values (JSON-serialisable) are displayed as a raw output of a private MIME type,
    which HTML and PDF do not render; the runner collects every such output of the
    executed notebook into the manifest. The compliance report uses it for the audit chain
    anchor, so the anchor printed in the PDF and the one in the manifest are the same.
    Outside a kernel (plain Python) it does nothing.
    """
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - reports always run in a kernel
        return
    display({MANIFEST_MIMETYPE: entries}, raw=True)
