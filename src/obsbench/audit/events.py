"""The audit event model: what an event holds, which actions exist, and input validation.

An event is who (``actor``) did what (``action``) to what (``resource``), when (``ts``),
with structured ``details`` (a JSON object; ``before`` and ``after`` for a config change),
the ``correlation_id`` tying a decision to its orders and executions, the ``source``
service that emitted it and a unique ``event_id``. The store adds ``seq``, ``prev_hash``
and ``hash``.

:func:`prepare` validates and masks one event and returns the :class:`PreparedEvent` that is
stored; it raises :class:`~obsbench.errors.AuditError` for bad input, so nothing is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from obsbench.audit.chain import canonical_json, format_ts
from obsbench.audit.masking import Masker, mask
from obsbench.errors import AuditError

ACTIONS: tuple[str, ...] = (
    "decision",
    "order",
    "order_rejected",
    "execution",
    "login",
    "logout",
    "login_failed",
    "access",
    "access_denied",
    "config_change",
    "report_generated",
    "alert_ack",
    "export",
    "prune",
    "anchor",
)
"""Actions the store accepts (pass ``actions=`` to a store to allow more)."""

ACTION_ALIASES: dict[str, str] = {
    "order.decision": "decision",
    "order.submit": "order",
    "order.reject": "order_rejected",
    "order.execution": "execution",
    "auth.login": "login",
    "auth.login_failed": "login_failed",
    "auth.logout": "logout",
    "config.change": "config_change",
}
"""Other spellings (the simulator's dotted names) stored as the canonical action."""

MAX_FIELD_LENGTH = 512
"""Longest ``actor``, ``action``, ``resource``, ``correlation_id`` or ``source`` accepted."""


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A validated, masked event ready to be chained; ``details`` is canonical JSON text."""

    ts: datetime
    actor: str
    action: str
    resource: str
    details: str
    correlation_id: str | None
    source: str | None
    event_id: str

    @property
    def ts_text(self) -> str:
        return format_ts(self.ts)

    def to_json(self) -> str:
        """One spool line (masked already: a spool never holds a secret)."""
        doc = {
            "ts": self.ts_text,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "details": self.details,
            "correlation_id": self.correlation_id,
            "source": self.source,
            "event_id": self.event_id,
        }
        return json.dumps(doc, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> PreparedEvent:
        doc = json.loads(line)
        return cls(
            ts=datetime.fromisoformat(doc["ts"].removesuffix("Z")).replace(tzinfo=UTC),
            actor=doc["actor"],
            action=doc["action"],
            resource=doc["resource"],
            details=doc["details"],
            correlation_id=doc["correlation_id"],
            source=doc["source"],
            event_id=doc["event_id"],
        )


def prepare(
    *,
    actor: Any,
    action: Any,
    resource: Any = "",
    details: Any = None,
    correlation_id: Any = None,
    source: Any = None,
    ts: datetime | None = None,
    event_id: str | None = None,
    actions: Iterable[str] = ACTIONS,
    masker: Masker | None = None,
) -> PreparedEvent:
    """Validate and mask one event.

    Parameters
    ----------
    actor, action
        Required non-empty strings; ``action`` must be one of ``actions`` (or an alias in
        :data:`ACTION_ALIASES`, stored as its canonical name).
    resource
        What was acted on (a strategy, an order id, a page, a setting); may be empty.
    details
        A JSON object: a ``dict`` or a string holding one. ``None`` means ``{}``.
    correlation_id, source
        Optional strings. ``source`` is masked like the other text; ``correlation_id`` is
        kept verbatim (it joins events), so it must never carry a secret.
    ts
        Event time; now (UTC) if not given. A naive datetime is taken to be UTC.
    event_id
        Unique id; 32 random hex digits if not given.

    Raises
    ------
    AuditError
        Naming every problem. The message never echoes a detail value (it may be secret).
    """
    problems: list[str] = []
    actor_s = _required(actor, "actor", problems)
    action_s = _required(action, "action", problems)
    action_s = ACTION_ALIASES.get(action_s, action_s)
    allowed = tuple(actions)
    if action_s and action_s not in allowed:
        problems.append(f"unknown action {action_s!r} (known: {', '.join(allowed)})")
    resource_s = _optional(resource, "resource", problems) or ""
    cid = _optional(correlation_id, "correlation_id", problems) or None
    src = _optional(source, "source", problems) or None
    details_text = _details(details, problems, masker)
    when = _ts(ts, problems)
    if problems:
        raise AuditError(
            "invalid audit event: " + "; ".join(problems),
            hint="give actor and action as non-empty strings, a known action and details as "
            "a JSON object (dict); nothing was written.",
        )
    return PreparedEvent(
        ts=when,  # type: ignore[arg-type]
        actor=mask(actor_s, masker),
        action=action_s,
        resource=mask(resource_s, masker),
        details=details_text,
        correlation_id=cid,
        source=mask(src, masker) if src else src,
        event_id=str(event_id) if event_id else os.urandom(16).hex(),
    )


def _required(value: Any, name: str, problems: list[str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        problems.append(f"{name} is missing")
        return ""
    if not isinstance(value, str):
        problems.append(f"{name} must be a string, got {type(value).__name__}")
        return ""
    value = value.strip()
    if "\x00" in value:
        problems.append(f"{name} contains a NUL character")
    if not value:
        problems.append(f"{name} is empty")
    elif len(value) > MAX_FIELD_LENGTH:
        problems.append(f"{name} is longer than {MAX_FIELD_LENGTH} characters")
    return value


def _optional(value: Any, name: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{name} must be a string or None, got {type(value).__name__}")
        return None
    if len(value) > MAX_FIELD_LENGTH:
        problems.append(f"{name} is longer than {MAX_FIELD_LENGTH} characters")
    if "\x00" in value:
        problems.append(f"{name} contains a NUL character")
    return value


def _details(details: Any, problems: list[str], masker: Masker | None) -> str:
    """The masked details as canonical JSON text ("{}" for None)."""
    if details is None:
        return "{}"
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except json.JSONDecodeError as exc:
            problems.append(f"details is not valid JSON ({exc.msg} at position {exc.pos})")
            return ""
    if not isinstance(details, Mapping):
        problems.append(f"details must be a JSON object, got {type(details).__name__}")
        return ""
    try:
        return canonical_json(mask(dict(details), masker))
    except (TypeError, ValueError) as exc:
        reason = "NaN or infinity" if isinstance(exc, ValueError) else type(exc).__name__
        problems.append(f"details is not JSON-serialisable ({reason})")
        return ""


def _ts(ts: Any, problems: list[str]) -> datetime | None:
    if ts is None:
        return datetime.now(UTC)
    if not isinstance(ts, datetime):
        problems.append(f"ts must be a datetime, got {type(ts).__name__}")
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
