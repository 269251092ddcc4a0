"""A local spool: audit events buffered while the database is down, replayed in order.

The spool is a JSON-lines file under ``$OBSBENCH_HOME/audit/``, one per database, holding
events already validated and masked (never a secret). Appends take an exclusive
``flock`` and ``fsync``, so several processes can spool at once and a crash loses at most the
line being written. The next successful write to the same database replays the spool first,
inside its own transaction, then empties it; events whose ``event_id`` is already stored
(a crash between commit and truncation) are skipped, so a replay never duplicates.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from obsbench.audit.events import PreparedEvent


class Spool:
    """The spool file at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        self._held = 0

    @classmethod
    def for_url(cls, url: str | None = None, *, home: Path | None = None) -> Spool:
        """The spool of the database at ``url`` (default: the configured database)."""
        from sqlalchemy.engine import make_url

        from obsbench.config import get_settings

        settings = get_settings()
        url = url or settings.database
        key = hashlib.sha256(
            make_url(url).render_as_string(hide_password=True).encode()
        ).hexdigest()[:12]
        return cls((home or settings.home) / "audit" / f"spool-{key}.jsonl")

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r}, events={len(self)})"

    def __len__(self) -> int:
        try:
            with self.path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the spool's exclusive lock (re-entrant within this object)."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self._held = 1
            try:
                yield
            finally:
                self._held = 0
                fcntl.flock(fh, fcntl.LOCK_UN)

    def append(self, events: Sequence[PreparedEvent]) -> None:
        """Append events durably (flushed and fsynced before returning)."""
        with self.locked(), self.path.open("a", encoding="utf-8") as fh:
            for e in events:
                fh.write(e.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[PreparedEvent]:
        """The spooled events, oldest first."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = [line for line in text.splitlines() if line.strip()]
        events = []
        for i, line in enumerate(lines):
            try:
                events.append(PreparedEvent.from_json(line))
            except ValueError:
                if i == len(lines) - 1 and not text.endswith("\n"):
                    break  # a line cut short by a crash mid-write: it was never acknowledged
                raise
        return events

    def clear(self) -> None:
        """Remove the spooled events (after they were committed)."""
        with self.locked():
            self.path.unlink(missing_ok=True)
