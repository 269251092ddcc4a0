from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from obsbench.alerts import channels

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SENT: dict[str, list[dict[str, Any]]] = {}


class CaptureChannel:
    """A test channel kind: records what it is sent; ``down`` makes it fail."""

    down: ClassVar[set[str]] = set()

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, notification: dict[str, Any]) -> None:
        if self.name in CaptureChannel.down:
            raise ConnectionError(f"{self.name} is down")
        SENT.setdefault(self.name, []).append(notification)


channels.register("capture", CaptureChannel)


@pytest.fixture
def sent() -> dict[str, list[dict[str, Any]]]:
    SENT.clear()
    CaptureChannel.down.clear()
    yield SENT
    SENT.clear()
    CaptureChannel.down.clear()


def minute(i: float) -> datetime:
    return T0 + timedelta(minutes=i)


def requests_frame(rates: dict[str, list[float]]) -> pl.DataFrame:
    """10 requests per minute per service; ``rate`` of them fail (error_rate == rate over 1m)."""
    rows = []
    for svc, per_minute in rates.items():
        for m, rate in enumerate(per_minute):
            bad = round(rate * 10)
            for k in range(10):
                ok = k >= bad
                rows.append(
                    {
                        "ts": minute(m - 1) + timedelta(seconds=6 * k + 3),
                        "service": svc,
                        "endpoint": "/orders",
                        "latency_ms": 5.0,
                        "status_code": 200 if ok else 500,
                        "ok": ok,
                        "trace_id": None,
                    }
                )
    return pl.DataFrame(
        rows,
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "service": pl.String,
            "endpoint": pl.String,
            "latency_ms": pl.Float64,
            "status_code": pl.Int32,
            "ok": pl.Boolean,
            "trace_id": pl.String,
        },
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'alerts.db'}"


def run_minutes(
    ev: Any, start: int, stop: int, on: Callable[[int, Any], None] | None = None
) -> None:
    for m in range(start, stop):
        report = ev.evaluate(minute(m))
        if on is not None:
            on(m, report)
