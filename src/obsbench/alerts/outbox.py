"""The delivery outbox: notifications are rows first, deliveries second.

The notifier enqueues each notification for each channel **in the same transaction** that
records the alert state, so a crash loses nothing and a restart re-sends nothing. The
``dedup_key`` is unique, so enqueueing the same notification twice is a no-op.

:meth:`Outbox.deliver` sends what is due, channel by channel in parallel threads (a slow or
dead receiver does not hold the others), in enqueue order within a channel. A failed
delivery is retried with exponential backoff (``base_delay * 2**(attempts-1)``, capped at
``max_delay``), for ever: a channel that is down queues its notifications and receives them,
in order, once it is back. Each row is marked delivered right after its send succeeds, so a
crash between the two can repeat at most that one message; receivers can drop repeats by
the ``Idempotency-Key`` header / ``id`` field, which is the dedup key.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from obsbench.alerts.db import alert_outbox, create_tables, utc

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from obsbench.alerts.channels import Channel

log = logging.getLogger("obsbench.alerts.outbox")


@dataclass
class DeliveryReport:
    """What one :meth:`Outbox.deliver` did: counts per channel and the errors seen."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def total_delivered(self) -> int:
        return sum(self.delivered.values())


class Outbox:
    """The ``alert_outbox`` table and its delivery loop.

    Parameters
    ----------
    engine
        The alert database.
    channels
        Channel name -> channel.
    base_delay, max_delay
        Retry backoff in seconds.
    """

    def __init__(
        self,
        engine: Engine,
        channels: dict[str, Channel],
        *,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.base_delay = base_delay
        self.max_delay = max_delay
        create_tables(engine)

    @staticmethod
    def enqueue(
        conn: Connection, channel: str, payload: dict[str, Any], dedup_key: str, now: datetime
    ) -> bool:
        """Queue ``payload`` for ``channel`` in the caller's transaction.

        Returns ``False`` (and queues nothing) when ``dedup_key`` is already queued.
        """
        exists = conn.execute(
            select(alert_outbox.c.id).where(alert_outbox.c.dedup_key == dedup_key)
        ).first()
        if exists is not None:
            return False
        conn.execute(
            alert_outbox.insert().values(
                channel=channel,
                dedup_key=dedup_key,
                payload=json.dumps({**payload, "id": dedup_key}, default=str),
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
        return True

    @staticmethod
    def enqueue_many(
        conn: Connection, items: list[tuple[str, dict[str, Any], str]], now: datetime
    ) -> int:
        """Queue ``(channel, payload, dedup_key)`` items in the caller's transaction.

        Keys already queued are skipped; returns how many were queued.
        """
        if not items:
            return 0
        keys = [k for _, _, k in items]
        seen: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            seen |= {
                r[0]
                for r in conn.execute(
                    select(alert_outbox.c.dedup_key).where(alert_outbox.c.dedup_key.in_(chunk))
                )
            }
        rows = []
        for channel, payload, key in items:
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                {
                    "channel": channel,
                    "dedup_key": key,
                    "payload": json.dumps({**payload, "id": key}, default=str),
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
        if rows:
            conn.execute(alert_outbox.insert(), rows)
        return len(rows)

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failures."""
        return timedelta(seconds=min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0)))

    def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Send every due notification; one thread per channel."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    select(alert_outbox.c.channel)
                    .where(alert_outbox.c.delivered_at.is_(None))
                    .distinct()
                )
            ]
        report = DeliveryReport()
        if not names:
            return report
        with ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
            results = list(pool.map(lambda n: (n, self._deliver_channel(n, now)), names))
        for name, (ok, failed, error) in results:
            if ok:
                report.delivered[name] = ok
            if failed:
                report.failed[name] = failed
            if error:
                report.errors[name] = error
        return report

    def _deliver_channel(self, name: str, now: datetime) -> tuple[int, int, str | None]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alert_outbox)
                .where(alert_outbox.c.channel == name, alert_outbox.c.delivered_at.is_(None))
                .order_by(alert_outbox.c.id)
            ).all()
        channel = self.channels.get(name)
        delivered = 0
        for row in rows:
            if utc(row.next_attempt_at) > now:  # keep order: wait for the head of the queue
                return delivered, 0, None
            try:
                if channel is None:
                    msg = f"channel {name!r} is not configured"
                    raise KeyError(msg)
                channel.send(json.loads(row.payload))
            except Exception as exc:  # any failure is retried later
                attempts = row.attempts + 1
                with self.engine.begin() as conn:
                    conn.execute(
                        update(alert_outbox)
                        .where(alert_outbox.c.id == row.id)
                        .values(
                            attempts=attempts,
                            next_attempt_at=now + self.backoff(attempts),
                            last_error=str(exc)[:2000],
                        )
                    )
                log.warning(
                    "delivery to %s failed (attempt %d): %s",
                    name,
                    attempts,
                    exc,
                    extra={"fields": {"channel": name, "outbox_id": row.id}},
                )
                return delivered, 1, str(exc)
            with self.engine.begin() as conn:
                conn.execute(
                    update(alert_outbox)
                    .where(alert_outbox.c.id == row.id)
                    .values(delivered_at=datetime.now(UTC), attempts=row.attempts + 1)
                )
            delivered += 1
        return delivered, 0, None

    def pending(self, channel: str | None = None) -> int:
        """Notifications not delivered yet (for one channel or all)."""
        q = (
            select(func.count())
            .select_from(alert_outbox)
            .where(alert_outbox.c.delivered_at.is_(None))
        )
        if channel is not None:
            q = q.where(alert_outbox.c.channel == channel)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())
