"""Alerts for the dashboards: bus messages as table rows, the active set, acks and silences.

The evaluator's ``bus`` channel publishes Alertmanager-webhook-shaped notifications on
:data:`obsbench.alerts.bus.bus` (one message holds a group of alerts). :func:`rows` flattens
a message into one row per alert with the columns of :data:`COLUMNS`. :class:`AlertBook`
is the process-wide memory of those rows (recent rows, the currently active alerts, each
rule's history); it subscribes once to the bus (without a document, so it runs on the
publishing thread) and stamps each row with the wall time it was received. Sessions
subscribe to the bus themselves, with their ``Document``, and render the rows.

Acknowledging and silencing from a page are recorded with the user in the alert tables
(:mod:`obsbench.alerts.db`), logged, written to the audit trail, and re-published on the bus
so every open session shows the change.

Examples
--------
>>> msg = {
...     "status": "firing",
...     "alerts": [
...         {
...             "status": "firing",
...             "labels": {"alertname": "ErrorRateHigh", "severity": "critical", "service": "auth"},
...             "annotations": {"summary": "5xx rate 12% on auth"},
...             "startsAt": "2024-01-02T14:00:00Z",
...             "fingerprint": "ab12",
...             "value": 0.12,
...         }
...     ],
... }
>>> [(r["rule"], r["severity"], r["status"], r["labels"]) for r in rows(msg)]
[('ErrorRateHigh', 'critical', 'firing', 'service=auth')]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "COLUMNS",
    "DISPATCH_MS",
    "AlertBook",
    "acknowledge",
    "book",
    "message_rows",
    "rows",
    "silence",
]

#: Milliseconds from an alert reaching this process's bus to a session handling it (its
#: toast and table row are then sent), one value per session and alert; recent 2000.
DISPATCH_MS: deque[float] = deque(maxlen=2000)

#: Columns of an alert row, in table order.
COLUMNS = (
    "received",
    "status",
    "severity",
    "rule",
    "labels",
    "summary",
    "value",
    "starts_at",
    "acked_by",
    "id",
    "fingerprint",
)
_SEVERITY_RANK = {"emergency": 3, "critical": 2, "warning": 1}


def _fmt_time(value: Any) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat()
    text = str(value)
    return "" if text.startswith("0001-01-01") else text.replace("T", " ").replace("+00:00", "Z")


def _alert_row(alert: dict[str, Any], parent: dict[str, Any], received: datetime) -> dict:
    labels = dict(alert.get("labels") or {})
    annotations = dict(alert.get("annotations") or {})
    rule = str(labels.pop("alertname", "") or alert.get("rule") or alert.get("alertname") or "")
    severity = str(labels.pop("severity", "") or alert.get("severity") or "")
    status = str(alert.get("status") or parent.get("status") or alert.get("state") or "")
    starts = alert.get("startsAt") or alert.get("fired_at") or alert.get("active_at")
    fingerprint = str(alert.get("fingerprint") or "")
    value = alert.get("value")
    try:
        value = None if value is None else float(value)
    except (TypeError, ValueError):
        value = None
    return {
        "received": received.strftime("%H:%M:%S.%f")[:-3],
        "status": status,
        "severity": severity,
        "rule": rule,
        "labels": " ".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "summary": str(annotations.get("summary") or alert.get("summary") or ""),
        "value": value,
        "starts_at": _fmt_time(starts),
        "acked_by": str(alert.get("acked") or alert.get("acked_by") or ""),
        "id": str(alert.get("id") or parent.get("id") or f"{fingerprint}@{starts}"),
        "fingerprint": fingerprint,
    }


def rows(message: dict[str, Any], *, received: datetime | None = None) -> list[dict[str, Any]]:
    """One row per alert of a bus message (a notification group or a single alert)."""
    received = received or datetime.now(UTC)
    alerts = message.get("alerts")
    if isinstance(alerts, list):
        return [_alert_row(a, message, received) for a in alerts if isinstance(a, dict)]
    return [_alert_row(message, {}, received)]


def message_rows(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a bus message: those the alert book stored on it, else converted now."""
    stored = message.get("_rows")
    return stored if isinstance(stored, list) else rows(message)


class AlertBook:
    """Recent alert rows, the active set and per-rule history of one process.

    Parameters
    ----------
    maxlen
        Rows kept in :attr:`recent`.
    """

    def __init__(self, maxlen: int = 500) -> None:
        self._lock = threading.Lock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.active: dict[str, dict[str, Any]] = {}
        self.received = 0
        self._sid: int | None = None

    def add(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Record a bus message; returns its rows.

        Runs on the publishing thread, before the sessions' handlers (the book subscribes
        first), and stamps the message with ``_received_ms`` so each session can measure
        how long its toast waited for the event loop (:data:`DISPATCH_MS`), and with
        ``_rows``, its rows, converted once for all the sessions (:func:`message_rows`).
        """
        message.setdefault("_received_ms", time.time() * 1000)
        new = rows(message)
        message.setdefault("_rows", new)
        with self._lock:
            for row in new:
                self.received += 1
                self.recent.append(row)
                key = row["fingerprint"] or f"{row['rule']}|{row['labels']}|{row['severity']}"
                if row["status"] == "firing":
                    prev = self.active.get(key)
                    if prev and row["acked_by"] == "" and prev["acked_by"]:
                        row = {**row, "acked_by": prev["acked_by"]}
                    self.active[key] = row
                elif row["status"] in ("resolved", "inactive"):
                    self.active.pop(key, None)
                elif row["status"] == "acknowledged" and key in self.active:
                    self.active[key] = {**self.active[key], "acked_by": row["acked_by"]}
        return new

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(recent rows oldest first, active rows most severe first)``."""
        with self._lock:
            recent = list(self.recent)
            active = sorted(
                self.active.values(),
                key=lambda r: (-_SEVERITY_RANK.get(r["severity"], 0), r["rule"]),
            )
        return recent, active

    def rule_history(self, rule: str) -> list[dict[str, Any]]:
        """Every recent row of one rule, newest first."""
        with self._lock:
            return [r for r in reversed(self.recent) if r["rule"] == rule]

    def attach(self, alert_bus: Any = None) -> AlertBook:
        """Subscribe to the alert bus (default :data:`obsbench.alerts.bus.bus`) once."""
        if self._sid is None:
            if alert_bus is None:
                from obsbench.alerts.bus import bus as alert_bus
            for message in list(alert_bus.history):
                self.add(message)
            self._sid = alert_bus.subscribe(self.add)
        return self


book = AlertBook()
"""The process-wide alert book (attached by :func:`obsbench.dashboards.setup.start`)."""


def _engine() -> Any:
    from obsbench.store import engine

    return engine()


def acknowledge(
    row: dict[str, Any], user: str, comment: str = "", *, alert_bus: Any = None
) -> dict[str, Any]:
    """Acknowledge an alert episode as ``user``: store, log, audit, and tell every session.

    Parameters
    ----------
    row
        An alert row (:func:`rows`) of a firing alert.
    user
        The logged-in user.
    comment
        Free text stored with the acknowledgement.
    alert_bus
        Where to announce it (default :data:`obsbench.alerts.bus.bus`).

    Returns
    -------
    dict
        The ``acknowledged`` message published on the bus.

    Raises
    ------
    UnknownName
        If the alert is no longer active (resolved meanwhile), from
        :func:`obsbench.alerts.notify.acknowledge`.
    """
    from obsbench.alerts import notify
    from obsbench.dashboards import events

    fingerprint = row.get("fingerprint") or ""
    acked = notify.acknowledge(_engine(), fingerprint, by=user, comment=comment)
    events.record(
        user,
        "alert_ack",
        row.get("id", ""),
        {"rule": row.get("rule"), "fingerprints": acked, "comment": comment},
    )
    message = {
        "status": "acknowledged",
        "alerts": [
            {
                "status": "acknowledged",
                "labels": {"alertname": row.get("rule", ""), "severity": row.get("severity", "")},
                "annotations": {"summary": f"acknowledged by {user}"},
                "startsAt": row.get("starts_at", ""),
                "fingerprint": fingerprint,
                "acked": user,
            }
        ],
    }
    _publish(message, alert_bus)
    return message


def silence(
    matchers: dict[str, str],
    user: str,
    *,
    duration: timedelta = timedelta(hours=1),
    comment: str = "",
) -> str:
    """Silence alerts whose labels match ``matchers`` (e.g. ``{"alertname": "X"}``) for a while.

    The silence is stored by :func:`obsbench.alerts.notify.add_silence` (the notifier honours
    it), logged and audited with the user. Returns the silence id.
    """
    from obsbench.alerts import notify
    from obsbench.dashboards import events

    items = [f'{k}="{v}"' for k, v in sorted(matchers.items())]
    sid = notify.add_silence(_engine(), items, duration=duration, created_by=user, comment=comment)
    events.record(
        user,
        "config_change",
        f"alert_silence/{sid}",
        {"matchers": items, "minutes": duration.total_seconds() / 60, "comment": comment},
    )
    return sid


def _publish(message: dict[str, Any], alert_bus: Any) -> None:
    if alert_bus is None:
        from obsbench.alerts.bus import bus as alert_bus
    alert_bus.publish(message)
