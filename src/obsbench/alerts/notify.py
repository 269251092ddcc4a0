"""From firing alerts to notifications, following Alertmanager's pipeline and defaults.

Inhibition, silences, routing, grouping, repeats, acknowledgements and escalation.

Each evaluator cycle calls :meth:`Notifier.process` with every firing alert, inside the
transaction that stores the alert state, so notifications are queued in the outbox exactly
when the state that caused them is committed.

1. **Inhibition.** A firing alert mutes the lower severities of the same rule and series
   (``inhibit_lower_severities``, on by default: one alert per series at its current
   severity), and each ``inhibit_rules`` entry mutes targets that share the ``equal`` labels
   with a firing source (e.g. an emergency of a service mutes that service's warnings).
2. **Silences** (matchers + time range, :func:`add_silence`) mute matching alerts.
3. **Routing.** The first route whose matchers match the alert (``continue: true`` goes on
   to the next) gives the channels, ``group_by`` and the timers.
4. **Grouping.** Alerts of a route with equal ``group_by`` label values form a group. A new
   group waits ``group_wait``; then it is flushed every ``group_interval`` and notified when
   it changed (a new firing alert, or a resolved one with ``send_resolved``), or re-notified
   after ``repeat_interval`` unchanged (unless every alert in it is acknowledged). Timers are
   checked at evaluator ticks, so they round up to the evaluation interval, as Alertmanager's
   repeat rounds up to ``group_interval``.
5. **Escalation.** A route's ``escalate`` steps notify more channels when an alert of the
   listed severities (default critical, emergency) has been firing unacknowledged for
   ``after``; each step is sent once per alert episode.
6. **De-duplication.** Group state (digest, sequence number) lives in the database and every
   outbox row has a unique key, so a restart neither repeats nor loses a notification.

Muted alerts are still tracked (state, history) and shown as muted by ``obsbench alerts
list``; they are just not notified.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from obsbench.alerts.rules import SEVERITIES, Duration, RuleError, Severity
from obsbench.errors import ConfigError, UnknownName

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from obsbench.alerts.outbox import Outbox

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True)
class Matcher:
    """One label matcher in Alertmanager syntax: ``name="v"``, ``!=``, ``=~`` (regex), ``!~``.

    Examples
    --------
    >>> m = Matcher.parse('severity=~"critical|emergency"')
    >>> m.matches({"severity": "critical"}), m.matches({"severity": "warning"})
    (True, False)
    """

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if not m:
            msg = f"invalid matcher {text!r}"
            raise ConfigError(
                msg, hint='write matchers like severity="critical" or job=~"api|web".'
            )
        name, op, value = m.groups()
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                msg = f"invalid regex in matcher {text!r}: {exc}"
                raise ConfigError(msg, hint="fix the regular expression.") from None
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(items: Iterable[str]) -> tuple[Matcher, ...]:
    """Parse a list of matcher strings."""
    return tuple(Matcher.parse(t) for t in items)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _check_matchers(value: tuple[str, ...]) -> tuple[str, ...]:
    parse_matchers(value)
    return value


class EscalationStep(_Frozen):
    """Notify ``channels`` when an alert of ``severities`` is unacknowledged for ``after``."""

    after: Duration
    channels: tuple[str, ...] = Field(min_length=1)
    severities: tuple[Severity, ...] = ("critical", "emergency")


class Route(_Frozen):
    """Where matching alerts go, and how they are grouped (unset timers inherit)."""

    name: str | None = None
    matchers: tuple[str, ...] = ()
    channels: tuple[str, ...] = Field(min_length=1)
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None
    escalate: tuple[EscalationStep, ...] = ()
    continue_: bool = Field(default=False, alias="continue")

    _m = field_validator("matchers")(_check_matchers)


class InhibitRule(_Frozen):
    """While a ``source`` alert fires, mute ``target`` alerts with equal ``equal`` labels."""

    source_matchers: tuple[str, ...]
    target_matchers: tuple[str, ...]
    equal: tuple[str, ...] = ()

    _s = field_validator("source_matchers", "target_matchers")(_check_matchers)


class NotifyConfig(_Frozen):
    """The notification config (Alertmanager's shape and defaults).

    The default sends every alert to the dashboard sessions at once (``group_wait: 0s``)
    and, grouped by ``alertname``, to the log.
    """

    group_by: tuple[str, ...] = ("alertname",)
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)
    send_resolved: bool = True
    inhibit_lower_severities: bool = True
    inhibit_rules: tuple[InhibitRule, ...] = ()
    routes: tuple[Route, ...] = (
        Route.model_validate(
            {
                "name": "dashboard",
                "channels": ["dashboard"],
                "group_by": ["alertname", "fingerprint"],
                "group_wait": "0s",
                "group_interval": "0s",
                "continue": True,
            }
        ),
        Route(name="default", channels=("log",)),
    )
    channels: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"dashboard": {"kind": "bus"}, "log": {"kind": "log"}}
    )

    def model_post_init(self, _context: Any) -> None:
        known = set(self.channels)
        for route in self.routes:
            for ch in [*route.channels, *(c for s in route.escalate for c in s.channels)]:
                if ch not in known:
                    msg = "channel"
                    raise UnknownName.from_choices(msg, ch, known)

    def route_name(self, i: int) -> str:
        return self.routes[i].name or f"route-{i}"


def load_notify_config(text_or_path: str | Path | None) -> NotifyConfig:
    """Read a notification config from YAML (a file, or text); ``None`` gives the default.

    A rule file's ``notify:`` mapping or a file holding just the mapping both work.
    """
    import yaml

    if text_or_path is None:
        return NotifyConfig()
    source = "<notify>"
    text = str(text_or_path)
    if isinstance(text_or_path, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
        source = str(text_or_path)
        text = Path(text_or_path).read_text()
    doc = yaml.safe_load(text) or {}
    if isinstance(doc, dict) and "notify" in doc:
        doc = doc["notify"]
    try:
        return NotifyConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise RuleError(err["msg"], source=source, field=field) from None


# -- alerts as the notifier sees them --------------------------------------------------------


@dataclass(frozen=True)
class AlertView:
    """One firing alert with everything a notification shows."""

    fingerprint: str
    rule: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    active_at: datetime
    fired_at: datetime | None
    runbook_url: str | None = None

    def payload(self, status: str, *, acked: str | None = None, ends_at: datetime | None = None):
        return {
            "status": status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _iso(self.fired_at or self.active_at),
            "endsAt": _iso(ends_at) if ends_at else "0001-01-01T00:00:00Z",
            "fingerprint": self.fingerprint,
            "value": self.value,
            "runbook_url": self.runbook_url,
            "acked": acked,
            "activeAt": _iso(self.active_at),
        }


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if ts else None


@dataclass
class Decision:
    """Why an alert was or was not notified this cycle."""

    muted: dict[str, str]  # fingerprint -> "inhibited by ..." / "silenced by ..."
    queued: int


# -- silences and acknowledgements -------------------------------------------------------------


def add_silence(
    engine: Engine,
    matchers: Iterable[str],
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    duration: timedelta | None = None,
    created_by: str = "obsbench",
    comment: str = "",
) -> str:
    """Create a silence; returns its id. Give ``ends_at`` or ``duration`` (default 1h)."""
    from obsbench.alerts.db import alert_silences, create_tables

    items = list(matchers)
    if not items:
        msg = "a silence needs at least one matcher"
        raise ConfigError(msg, hint='e.g. alertname="ApiLatencyHigh".')
    parse_matchers(items)
    start = starts_at or datetime.now(UTC)
    end = ends_at or start + (duration or timedelta(hours=1))
    if end <= start:
        msg = "a silence must end after it starts"
        raise ConfigError(msg, hint="check --duration / --until.")
    sid = str(uuid.uuid4())
    create_tables(engine)
    with engine.begin() as conn:
        conn.execute(
            alert_silences.insert().values(
                id=sid,
                matchers=json.dumps(items),
                starts_at=start,
                ends_at=end,
                created_by=created_by,
                comment=comment,
            )
        )
    return sid


def expire_silence(engine: Engine, silence_id: str, *, at: datetime | None = None) -> None:
    """End a silence now."""
    from sqlalchemy import update

    from obsbench.alerts.db import alert_silences

    with engine.begin() as conn:
        done = conn.execute(
            update(alert_silences)
            .where(alert_silences.c.id == silence_id)
            .values(ends_at=at or datetime.now(UTC))
        )
    if done.rowcount == 0:
        msg = "silence"
        raise UnknownName.from_choices(msg, silence_id, [])


def acknowledge(
    engine: Engine, fingerprint: str, *, by: str = "obsbench", comment: str = ""
) -> list[str]:
    """Acknowledge the current episode of the alerts whose fingerprint starts so.

    Returns the full fingerprints acknowledged. The acknowledgement ends with the episode:
    if the alert resolves and fires again, it is unacknowledged.
    """
    from sqlalchemy import select

    from obsbench.alerts.db import alert_acks, alert_state, create_tables

    create_tables(engine)
    with engine.begin() as conn:
        rows = conn.execute(
            select(alert_state.c.fingerprint, alert_state.c.active_at).where(
                alert_state.c.fingerprint.startswith(fingerprint)
            )
        ).all()
        if not rows:
            known = [r[0] for r in conn.execute(select(alert_state.c.fingerprint))]
            msg = "active alert"
            raise UnknownName.from_choices(msg, fingerprint, known)
        now = datetime.now(UTC)
        for fp, active_at in rows:
            exists = conn.execute(
                select(alert_acks.c.fingerprint).where(
                    alert_acks.c.fingerprint == fp, alert_acks.c.active_at == active_at
                )
            ).first()
            if exists is None:
                conn.execute(
                    alert_acks.insert().values(
                        fingerprint=fp,
                        active_at=active_at,
                        acked_by=by,
                        acked_at=now,
                        comment=comment,
                    )
                )
    return [r[0] for r in rows]


# -- the notifier ------------------------------------------------------------------------------


class Notifier:
    """Apply :class:`NotifyConfig` to the firing alerts of each cycle (see module docstring)."""

    def __init__(self, config: NotifyConfig | None = None) -> None:
        self.config = config or NotifyConfig()
        self._inhibit = [
            (parse_matchers(r.source_matchers), parse_matchers(r.target_matchers), r.equal)
            for r in self.config.inhibit_rules
        ]
        self._routes = [parse_matchers(r.matchers) for r in self.config.routes]

    # timers of a route, falling back on the config's
    def _t(self, route: Route, name: str) -> Any:
        own = getattr(route, name)
        return own if own is not None else getattr(self.config, name)

    def mute(
        self, alerts: list[AlertView], silences: list[tuple[str, tuple[Matcher, ...]]]
    ) -> dict[str, str]:
        """Fingerprint -> reason, for the alerts that are inhibited or silenced."""
        muted: dict[str, str] = {}
        if self.config.inhibit_lower_severities:
            top: dict[tuple[str, str], int] = {}
            for a in alerts:
                key = (a.rule, _series_of(a))
                top[key] = max(top.get(key, -1), SEVERITIES.index(a.severity))
            for a in alerts:
                higher = top[(a.rule, _series_of(a))]
                if SEVERITIES.index(a.severity) < higher:
                    muted[a.fingerprint] = f"inhibited by {SEVERITIES[higher]}"
        for src_m, tgt_m, equal in self._inhibit:
            sources = [a for a in alerts if matches_all(src_m, a.labels)]
            for t in alerts:
                if t.fingerprint in muted or not matches_all(tgt_m, t.labels):
                    continue
                for s in sources:
                    if s.fingerprint != t.fingerprint and all(
                        s.labels.get(k, "") == t.labels.get(k, "") for k in equal
                    ):
                        muted[t.fingerprint] = f"inhibited by {s.labels.get('alertname')}"
                        break
        for sid, matchers in silences:
            for a in alerts:
                if a.fingerprint not in muted and matches_all(matchers, a.labels):
                    muted[a.fingerprint] = f"silenced by {sid}"
        return muted

    def process(
        self, conn: Connection, now: datetime, firing: list[AlertView], outbox: type[Outbox]
    ) -> Decision:
        """Queue this cycle's notifications in the outbox, in the caller's transaction."""
        from sqlalchemy import select

        from obsbench.alerts.db import (
            alert_acks,
            alert_escalations,
            alert_groups,
            alert_silences,
        )

        silences = [
            (r.id, parse_matchers(json.loads(r.matchers)))
            for r in conn.execute(
                select(alert_silences).where(
                    alert_silences.c.starts_at <= now, alert_silences.c.ends_at > now
                )
            )
        ]
        acks = {
            (r.fingerprint, _utc(r.active_at)): r.acked_by for r in conn.execute(select(alert_acks))
        }
        muted = self.mute(firing, silences)
        all_firing = {a.fingerprint for a in firing}
        notifiable = [a for a in firing if a.fingerprint not in muted]

        # route -> group key -> alerts
        groups: dict[int, dict[str, list[AlertView]]] = {}
        for a in notifiable:
            for i, (route, matchers) in enumerate(
                zip(self.config.routes, self._routes, strict=True)
            ):
                if not matches_all(matchers, a.labels):
                    continue
                by = self._t(route, "group_by")
                labels = {**a.labels, "fingerprint": a.fingerprint}
                key = json.dumps({k: labels.get(k, "") for k in by}, sort_keys=True)
                groups.setdefault(i, {}).setdefault(key, []).append(a)
                if not route.continue_:
                    break
        existing = {(r.route, r.group_key): r for r in conn.execute(select(alert_groups))}
        names = {self.config.route_name(i): i for i in range(len(self.config.routes))}
        keys = {(self.config.route_name(i), k) for i, g in groups.items() for k in g}
        keys |= {k for k in existing if k[0] in names}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        queue: list[tuple[str, dict[str, Any], str]] = []
        for route_name, key in sorted(keys):
            i = names[route_name]
            route = self.config.routes[i]
            current = {a.fingerprint: a for a in groups.get(i, {}).get(key, [])}
            row = existing.get((route_name, key))
            if row is None:
                if not current:
                    continue
                first_seen, last_flush, last_sent, seq, last = now, None, None, 0, {}
            else:
                first_seen, last_flush = _utc(row.first_seen), _utc(row.last_flush)
                last_sent, seq, last = _utc(row.last_sent), row.seq, json.loads(row.digest or "{}")
            if last_flush is None:
                due = now >= first_seen + self._t(route, "group_wait")
            else:
                due = now >= last_flush + self._t(route, "group_interval")
            if not due:
                if row is None:
                    inserts.append(_group_row(route_name, key, now, None, None, 0, "{}"))
                continue
            new = [fp for fp in current if fp not in last]
            resolved = [fp for fp in last if fp not in all_firing]  # truly resolved, not muted
            send_resolved = self._t(route, "send_resolved")
            changed = bool(new) or (bool(resolved) and send_resolved)
            unacked = [a for a in current.values() if (a.fingerprint, a.active_at) not in acks]
            repeat = (
                not changed
                and bool(unacked)
                and last_sent is not None
                and now - last_sent >= self._t(route, "repeat_interval")
            )
            if changed or repeat:
                seq += 1
                alerts = [
                    a.payload("firing", acked=acks.get((a.fingerprint, a.active_at)))
                    for a in current.values()
                ]
                if send_resolved:
                    alerts += [
                        {**last[fp], "status": "resolved", "endsAt": _iso(now)} for fp in resolved
                    ]
                group_labels = json.loads(key)
                group_labels.pop("fingerprint", None)
                notification = {
                    "version": "4",
                    "groupKey": f"{route_name}:{key}",
                    "status": "firing" if current else "resolved",
                    "receiver": route_name,
                    "groupLabels": group_labels,
                    "commonLabels": _common([a["labels"] for a in alerts]),
                    "commonAnnotations": _common([a["annotations"] for a in alerts]),
                    "escalation": None,
                    "truncatedAlerts": 0,
                    "alerts": alerts,
                }
                queue.extend(
                    (ch, notification, f"{route_name}|{key}|{seq}|{ch}") for ch in route.channels
                )
                last_sent = now
            digest = {fp: a.payload("firing") for fp, a in current.items()}
            # an alert already notified and now muted (inhibited, silenced) but still firing
            # stays in the digest silently, so its resolution is notified later
            digest.update(
                {fp: p for fp, p in last.items() if fp in all_firing and fp not in digest}
            )
            if digest:
                values = _group_row(
                    route_name,
                    key,
                    first_seen,
                    now,
                    last_sent,
                    seq,
                    json.dumps(digest, default=str),
                )
                (inserts if row is None else updates).append(values)
            elif row is not None:
                deletes.append({"b_route": route_name, "b_key": key})
        _write_groups(conn, inserts, updates, deletes)
        queued = outbox.enqueue_many(conn, queue, now)

        # escalation, once per alert episode and step
        sent = {
            (r.fingerprint, _utc(r.active_at), r.step)
            for r in conn.execute(select(alert_escalations))
        }
        for a in notifiable:
            if (a.fingerprint, a.active_at) in acks or a.fired_at is None:
                continue
            for i, (route, matchers) in enumerate(
                zip(self.config.routes, self._routes, strict=True)
            ):
                if not matches_all(matchers, a.labels):
                    continue
                for step_no, step in enumerate(route.escalate):
                    tag = i * 100 + step_no
                    if (
                        a.severity not in step.severities
                        or (a.fingerprint, a.active_at, tag) in sent
                    ):
                        continue
                    if now - a.fired_at < step.after:
                        continue
                    notification = {
                        "version": "4",
                        "groupKey": f"{self.config.route_name(i)}:escalation:{a.fingerprint}",
                        "status": "firing",
                        "receiver": self.config.route_name(i),
                        "groupLabels": {"alertname": a.labels.get("alertname", "")},
                        "commonLabels": a.labels,
                        "commonAnnotations": a.annotations,
                        "escalation": {"step": step_no + 1, "after": str(step.after)},
                        "truncatedAlerts": 0,
                        "alerts": [a.payload("firing")],
                    }
                    queued += outbox.enqueue_many(
                        conn,
                        [
                            (
                                ch,
                                notification,
                                f"esc|{a.fingerprint}|{_iso(a.active_at)}|{tag}|{ch}",
                            )
                            for ch in step.channels
                        ],
                        now,
                    )
                    conn.execute(
                        alert_escalations.insert().values(
                            fingerprint=a.fingerprint, active_at=a.active_at, step=tag, sent_at=now
                        )
                    )
                if not route.continue_:
                    break
        return Decision(muted=muted, queued=queued)


def _group_row(
    route: str,
    key: str,
    first_seen: datetime,
    last_flush: datetime | None,
    last_sent: datetime | None,
    seq: int,
    digest: str,
) -> dict[str, Any]:
    return {
        "b_route": route,
        "b_key": key,
        "first_seen": first_seen,
        "last_flush": last_flush,
        "last_sent": last_sent,
        "seq": seq,
        "digest": digest,
    }


def _write_groups(
    conn: Connection,
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    deletes: list[dict[str, Any]],
) -> None:
    from sqlalchemy import and_, bindparam, delete

    from obsbench.alerts.db import alert_groups

    where = and_(
        alert_groups.c.route == bindparam("b_route"),
        alert_groups.c.group_key == bindparam("b_key"),
    )
    if inserts:
        conn.execute(
            alert_groups.insert(),
            [
                {"route": r["b_route"], "group_key": r["b_key"]}
                | {k: v for k, v in r.items() if not k.startswith("b_")}
                for r in inserts
            ],
        )
    if updates:
        conn.execute(
            alert_groups.update()
            .where(where)
            .values(
                last_flush=bindparam("last_flush"),
                last_sent=bindparam("last_sent"),
                seq=bindparam("seq"),
                digest=bindparam("digest"),
            ),
            [{k: v for k, v in r.items() if k != "first_seen"} for r in updates],
        )
    if deletes:
        conn.execute(delete(alert_groups).where(where), deletes)


def _series_of(a: AlertView) -> str:
    return json.dumps({k: v for k, v in a.labels.items() if k != "severity"}, sort_keys=True)


def _common(items: list[dict[str, str]]) -> dict[str, str]:
    if not items:
        return {}
    first = dict(items[0])
    return {k: v for k, v in first.items() if all(i.get(k) == v for i in items[1:])}


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
