"""Notification channels: a registry of kinds (``bus``, ``webhook``, ``email``, ``log``).

A channel turns one notification (an Alertmanager-webhook-shaped group, built by
:mod:`obsbench.alerts.notify`) into a delivery, and raises on failure so the outbox retries
it. Channels are configured by name in the notification config::

    channels:
      dashboard: {kind: bus}
      ops-slack: {kind: webhook, url: "https://hooks.slack.com/...", format: slack}
      ops-teams: {kind: webhook, url: "https://...", format: teams}
      oncall-mail: {kind: email, host: 127.0.0.1, port: 25, sender: obsbench@example.com,
                    to: [oncall@example.com]}
      audit-log: {kind: log}

Add a kind with :func:`register` (a new module, not an edit of an ``if`` chain).

Notification fields (Alertmanager webhook v4, plus obsbench's ``id``, ``escalation``)::

    {version: "4", id, groupKey, status: firing|resolved, receiver, groupLabels,
     commonLabels, commonAnnotations, escalation, alerts: [{status, labels, annotations,
     startsAt, endsAt, fingerprint, value, runbook_url, acked}]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from obsbench.errors import ConfigError, SourceUnavailable, UnknownName

log = logging.getLogger("obsbench.alerts.channels")

Notification = dict[str, Any]


class Channel(Protocol):
    """Something that delivers a notification or raises."""

    name: str

    def send(self, notification: Notification) -> None: ...


class DeliveryError(SourceUnavailable):
    """A channel could not deliver (receiver down, HTTP error, SMTP refusal)."""


KINDS: dict[str, Callable[..., Channel]] = {}
"""Registered channel kinds: kind -> factory(name=..., **config)."""


def register(kind: str, factory: Callable[..., Channel]) -> None:
    """Register a channel kind; ``factory(name=..., **config)`` builds a channel."""
    KINDS[kind] = factory


def build(name: str, config: dict[str, Any]) -> Channel:
    """Build the channel ``name`` from its config (``kind`` plus the kind's options)."""
    config = dict(config)
    kind = config.pop("kind", None) or config.pop("type", None) or name
    if kind not in KINDS:
        msg = "channel kind"
        raise UnknownName.from_choices(msg, str(kind), KINDS)
    try:
        return KINDS[kind](name=name, **config)
    except TypeError as exc:
        msg = f"channel {name!r} ({kind}): {exc}"
        raise ConfigError(
            msg, hint="check the channel's options in the notification config."
        ) from None


# -- text --------------------------------------------------------------------------------


def title(n: Notification) -> str:
    """``[FIRING:2] ApiLatencyHigh service=api``: the subject line of a notification."""
    firing = sum(1 for a in n["alerts"] if a["status"] == "firing")
    count = f":{firing}" if n["status"] == "firing" else ""
    esc = " (escalated)" if n.get("escalation") else ""
    labels = " ".join(f"{k}={v}" for k, v in sorted(n.get("groupLabels", {}).items()))
    return f"[{n['status'].upper()}{count}] {labels}{esc}".strip()


def body(n: Notification) -> str:
    """A plain-text listing of the notification's alerts."""
    lines = [title(n), ""]
    for a in n["alerts"]:
        summary = a["annotations"].get("summary") or a["labels"].get("alertname", "")
        lines.append(f"- [{a['status']}] {a['labels'].get('severity', '')} {summary}")
        lines.append(f"  value: {a.get('value')}  since: {a.get('startsAt')}")
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())))
        if a.get("runbook_url"):
            lines.append(f"  runbook: {a['runbook_url']}")
        if a.get("acked"):
            lines.append(f"  acknowledged by {a['acked']}")
    return "\n".join(lines)


_COLORS = {"emergency": "#8B0000", "critical": "danger", "warning": "warning"}
_HEX = {"emergency": "8B0000", "critical": "D9534F", "warning": "F0AD4E", "resolved": "5CB85C"}


def _top_severity(n: Notification) -> str:
    order = {"warning": 1, "critical": 2, "emergency": 3}
    sev = [a["labels"].get("severity", "warning") for a in n["alerts"] if a["status"] == "firing"]
    return max(sev, key=lambda s: order.get(s, 0)) if sev else "resolved"


def slack_payload(n: Notification) -> dict[str, Any]:
    """Slack's legacy-attachments message (as Alertmanager's ``slack_config`` posts it)."""
    sev = _top_severity(n)
    attachments = [
        {
            "fallback": f"{title(n)}: {a['annotations'].get('summary', '')}",
            "color": "good" if a["status"] == "resolved" else _COLORS.get(sev, "danger"),
            "title": f"[{a['status'].upper()}] {a['labels'].get('alertname', '')}",
            "title_link": a.get("runbook_url") or "",
            "text": a["annotations"].get("summary", ""),
            "fields": [
                {"title": k, "value": str(v), "short": True} for k, v in sorted(a["labels"].items())
            ]
            + [{"title": "value", "value": str(a.get("value")), "short": True}],
            "footer": "obsbench",
            "mrkdwn_in": ["text"],
        }
        for a in n["alerts"]
    ]
    return {"text": title(n), "attachments": attachments}


def teams_payload(n: Notification) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook ``MessageCard``."""
    sections = []
    actions = []
    for a in n["alerts"]:
        sections.append(
            {
                "activityTitle": f"[{a['status'].upper()}] {a['labels'].get('alertname', '')}",
                "activitySubtitle": a["annotations"].get("summary", ""),
                "facts": [{"name": k, "value": str(v)} for k, v in sorted(a["labels"].items())]
                + [{"name": "value", "value": str(a.get("value"))}],
                "markdown": True,
            }
        )
        if a.get("runbook_url"):
            actions.append(
                {
                    "@type": "OpenUri",
                    "name": f"Runbook: {a['labels'].get('alertname', '')}",
                    "targets": [{"os": "default", "uri": a["runbook_url"]}],
                }
            )
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": _HEX.get(_top_severity(n), "D9534F"),
        "summary": title(n),
        "title": title(n),
        "sections": sections,
    }
    if actions:
        card["potentialAction"] = actions
    return card


FORMATS: dict[str, Callable[[Notification], dict[str, Any]]] = {
    "alertmanager": lambda n: n,
    "slack": slack_payload,
    "teams": teams_payload,
}


# -- kinds ---------------------------------------------------------------------------------


@dataclass
class WebhookChannel:
    """POST the notification as JSON (``format``: alertmanager, slack or teams)."""

    name: str
    url: str
    format: str = "alertmanager"
    timeout: float = 5.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            msg = "webhook format"
            raise UnknownName.from_choices(msg, self.format, FORMATS)

    def send(self, notification: Notification) -> None:
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        data = json.dumps(FORMATS[self.format](notification), default=str).encode()
        req = Request(
            self.url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": str(notification.get("id", "")),
                **self.headers,
            },
        )
        try:
            with urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except HTTPError as exc:
            msg = f"webhook {self.name} answered HTTP {exc.code}"
            raise DeliveryError(msg, hint="the outbox retries with backoff.") from None
        except (URLError, OSError) as exc:
            msg = f"webhook {self.name} unreachable: {exc}"
            raise DeliveryError(msg, hint="the outbox retries with backoff.") from None


@dataclass
class EmailChannel:
    """Send the notification as a plain-text email over SMTP."""

    name: str
    to: list[str]
    sender: str = "obsbench@localhost"
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0

    def send(self, notification: Notification) -> None:
        import smtplib
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = title(notification)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["X-Obsbench-Notification"] = str(notification.get("id", ""))
        msg.set_content(body(notification))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            text = f"email {self.name} via {self.host}:{self.port} failed: {exc}"
            raise DeliveryError(text, hint="the outbox retries with backoff.") from None


@dataclass
class LogChannel:
    """Write the notification to obsbench's JSON log."""

    name: str
    level: str = "WARNING"

    def send(self, notification: Notification) -> None:
        logging.getLogger("obsbench.alerts.notify").log(
            logging.getLevelName(self.level.upper()),
            title(notification),
            extra={"fields": {"notification": notification}},
        )


@dataclass
class BusChannel:
    """Publish to the dashboard sessions through the bus.

    In this process through :data:`~obsbench.alerts.bus.bus`, and in other processes
    through PostgreSQL NOTIFY when a bridge is attached (the evaluator attaches one on
    PostgreSQL).
    """

    name: str
    bridge: Any = None

    def send(self, notification: Notification) -> None:
        from obsbench.alerts.bus import bus

        bus.publish(notification)
        if self.bridge is not None:
            self.bridge.notify(notification)


register("webhook", WebhookChannel)
register("email", EmailChannel)
register("log", LogChannel)
register("bus", BusChannel)
