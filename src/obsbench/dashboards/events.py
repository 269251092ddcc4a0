"""Security-relevant dashboard events: a structured log line and an audit-trail record.

Logins, failed logins, page accesses, denied accesses, alert acknowledgements and silences
all go through :func:`record`. The JSON log line is always written (logger
``obsbench.dashboards.events``, with the user); the audit record goes to
:func:`obsbench.audit.record` and, if the audit database is unreachable, to its local spool
(``spool=True``) so the server keeps serving.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

__all__ = ["COUNTS", "record"]

log = logging.getLogger("obsbench.dashboards.events")

#: Events recorded in this process, by action (exported on ``/metrics``).
COUNTS: Counter[str] = Counter()


def record(
    user: str,
    action: str,
    resource: str = "",
    details: dict[str, Any] | None = None,
    *,
    audit: bool = True,
) -> None:
    """Log one dashboard event and append it to the audit trail.

    Parameters
    ----------
    user
        Who (the login name, or ``"anonymous"``).
    action
        One of the audit actions: ``login``, ``login_failed``, ``logout``, ``access``,
        ``access_denied``, ``alert_ack``, ``config_change``.
    resource
        What: the page path, the alert id.
    details
        Extra JSON-able fields (masked by the audit store).
    audit
        Also record in :mod:`obsbench.audit` (default); the log line is always written.
    """
    from obsbench.audit.masking import mask

    COUNTS[action] += 1
    # The log line gets the same masking the audit store applies (secrets, e-mails, ...).
    fields = mask({"event": action, "user": user, "resource": resource, **(details or {})})
    level = logging.WARNING if action in ("login_failed", "access_denied") else logging.INFO
    log.log(
        level,
        "dashboard %s by %s on %s",
        action,
        fields["user"],
        fields["resource"] or "-",
        extra={"fields": fields},
    )
    if not audit:
        return
    try:
        from obsbench import audit as audit_trail

        audit_trail.record(
            user, action, resource, details or {}, source="obsbench.dashboards", spool=True
        )
    except Exception:  # the audit trail must never take a page down; the log line remains
        log.warning("could not record dashboard %s of %s in the audit trail", action, user)
