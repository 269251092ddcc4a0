"""Delivering finished reports (and failure notices): folder, e-mail, webhook.

Each delivery target in a schedule's ``delivery:`` (after a successful run) or
``on_failure:`` list is a mapping with a ``type`` naming a registered delivery and its
options. String options are Jinja2 templates over the run: ``report``, ``run_id``,
``status``, ``period_start``, ``period_end``, ``error``, ``schedule_id`` and the date
variables of :mod:`obsbench.reports.dates`.

=========  =========================================================================
type       options
=========  =========================================================================
folder     ``path`` (folder), ``filename`` (default
           ``{{ report }}_{{ period_start }}_{{ period_end }}.pdf``); copies the PDF
           atomically, or writes ``<run>.failed.json`` for a failure
email      ``to`` (list), ``subject``, ``body``, ``from`` (default
           ``OBSBENCH_SMTP_FROM`` or ``obsbench@localhost``), ``host``/``port``
           (default ``OBSBENCH_SMTP_HOST``/``OBSBENCH_SMTP_PORT`` or localhost:25),
           ``starttls``, ``username`` and ``password_env`` (the *name* of the
           variable holding the password); attaches the PDF
webhook    ``url``, ``headers``, ``timeout_s``; POSTs a JSON document with a Slack/
           Teams-style ``text`` plus the run's fields
=========  =========================================================================

New targets are added with :func:`register_delivery` (a registry, not an ``if`` chain).
A failed delivery is logged and reported in the outcome; it never fails the run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obsbench.errors import ConfigError, ObsbenchError, SourceUnavailable, UnknownName
from obsbench.log import get_logger
from obsbench.reports.dates import render

if TYPE_CHECKING:
    from obsbench.reports.runner import RunResult
    from obsbench.reports.schedule import Schedule

log = get_logger(__name__)


class DeliveryError(ObsbenchError, RuntimeError):
    """A delivery target could not be reached or written."""


@dataclass(frozen=True)
class DeliveryContext:
    """What a delivery knows about the run it delivers."""

    report: str
    schedule_id: str | None
    status: str
    run_id: str | None
    slot: datetime | None
    parameters: Mapping[str, Any]
    pdf: Path | None = None
    out_dir: Path | None = None
    error: str = ""
    pages: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def success(
        cls, schedule: Schedule, slot: datetime, result: RunResult, dates: Mapping[str, Any]
    ) -> DeliveryContext:
        return cls(
            report=result.report,
            schedule_id=schedule.id,
            status="ok",
            run_id=result.run_id,
            slot=slot,
            parameters=result.manifest.get("effective_parameters", {}),
            pdf=result.pdf,
            out_dir=result.out_dir,
            pages=result.pages,
            extra=dates,
        )

    @classmethod
    def failure(
        cls,
        schedule: Schedule,
        slot: datetime,
        parameters: Mapping[str, Any],
        exc: ObsbenchError,
        dates: Mapping[str, Any],
    ) -> DeliveryContext:
        path = getattr(exc, "notebook_path", None)
        return cls(
            report=schedule.report,
            schedule_id=schedule.id,
            status="failed",
            run_id=Path(path).parent.name.removesuffix(".failed") if path else None,
            slot=slot,
            parameters=parameters,
            out_dir=Path(path).parent if path else None,
            error=exc.message,
            extra=dates,
        )

    def variables(self) -> dict[str, Any]:
        """Template variables of this run."""
        return {
            **self.extra,
            "report": self.report,
            "schedule_id": self.schedule_id,
            "status": self.status,
            "run_id": self.run_id,
            "error": self.error,
            "pages": self.pages,
            "parameters": dict(self.parameters),
            "period_start": self.parameters.get("start", ""),
            "period_end": self.parameters.get("end", ""),
        }

    def summary(self) -> str:
        """One line for humans."""
        period = f" for {self.parameters.get('start')} – {self.parameters.get('end')}"
        period = period if self.parameters.get("start") else ""
        if self.status == "ok":
            return f"Report {self.report}{period} is ready ({self.pages} pages, run {self.run_id})."
        return f"Report {self.report}{period} FAILED: {self.error}"

    def document(self) -> dict[str, Any]:
        """The JSON document webhooks and failure files carry."""
        return {
            "text": self.summary(),
            "report": self.report,
            "schedule_id": self.schedule_id,
            "status": self.status,
            "run_id": self.run_id,
            "scheduled_for": self.slot.isoformat() if self.slot else None,
            "parameters": dict(self.parameters),
            "pdf": str(self.pdf) if self.pdf else None,
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "pages": self.pages,
            "error": self.error or None,
        }


Delivery = Callable[[Mapping[str, Any], DeliveryContext], str]
_REGISTRY: dict[str, Delivery] = {}


def register_delivery(name: str, fn: Delivery) -> None:
    """Register a delivery function ``fn(options, context) -> description``."""
    _REGISTRY[name] = fn


def get_delivery(name: str) -> Delivery:
    """The delivery registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        kind = "delivery type"
        raise UnknownName.from_choices(kind, name, _REGISTRY) from None


def deliver(spec: Mapping[str, Any], ctx: DeliveryContext) -> str:
    """Run one delivery target; returns a description of what was done."""
    kind = spec.get("type")
    if not isinstance(kind, str):
        msg = f"delivery target {dict(spec)!r} has no type"
        raise ConfigError(msg, hint=f"add type: one of {sorted(_REGISTRY)}.")
    return get_delivery(kind)(spec, ctx)


def deliver_all(specs: Iterable[Mapping[str, Any]], ctx: DeliveryContext) -> tuple[str, ...]:
    """Run every target; failures are logged and reported as ``"failed: ..."`` entries."""
    done = []
    for spec in specs:
        try:
            done.append(deliver(spec, ctx))
        except ObsbenchError as exc:
            log.error("delivery %s failed: %s", spec.get("type"), exc.message)
            done.append(f"failed: {spec.get('type')}: {exc.message}")
    return tuple(done)


def _t(value: Any, ctx: DeliveryContext) -> str:
    return render(str(value), ctx.variables()) if "{" in str(value) else str(value)


# ---------------------------------------------------------------------- folder
def deliver_folder(spec: Mapping[str, Any], ctx: DeliveryContext) -> str:
    """Copy the PDF into a folder (atomically), or write a failure notice there."""
    if "path" not in spec:
        msg = "folder delivery needs a path"
        raise ConfigError(msg, hint="add path: /some/folder.")
    folder = Path(_t(spec["path"], ctx))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if ctx.status != "ok" or ctx.pdf is None:
            target = folder / f"{ctx.report}_{ctx.run_id or 'run'}.failed.json"
            tmp = folder / f".{target.name}.tmp"
            tmp.write_text(json.dumps(ctx.document(), indent=2, default=str), encoding="utf-8")
        else:
            default = "{{ report }}_{{ period_start }}_{{ period_end }}.pdf"
            target = folder / _t(spec.get("filename", default), ctx)
            tmp = folder / f".{target.name}.tmp"
            shutil.copyfile(ctx.pdf, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        msg = f"cannot write to {folder}: {exc}"
        raise DeliveryError(msg, hint="check that the folder exists and is writable.") from exc
    return f"folder: {target}"


# ---------------------------------------------------------------------- email
def deliver_email(spec: Mapping[str, Any], ctx: DeliveryContext) -> str:
    """Send an e-mail through SMTP with the PDF attached (or a failure notice)."""
    import smtplib
    from email.message import EmailMessage

    recipients = spec.get("to") or []
    recipients = [recipients] if isinstance(recipients, str) else list(recipients)
    if not recipients:
        msg = "email delivery needs at least one recipient"
        raise ConfigError(msg, hint="add to: [someone@example.com].")
    default_subject = (
        "[obsbench] {{ report }} {{ period_start }} – {{ period_end }}"
        if ctx.status == "ok"
        else "[obsbench] FAILED: {{ report }} {{ period_start }} – {{ period_end }}"
    )
    message = EmailMessage()
    message["Subject"] = _t(spec.get("subject", default_subject), ctx)
    message["From"] = spec.get("from") or os.environ.get("OBSBENCH_SMTP_FROM", "obsbench@localhost")
    message["To"] = ", ".join(recipients)
    body = _t(spec["body"], ctx) if "body" in spec else ctx.summary()
    message.set_content(body + "\n")
    if ctx.status == "ok" and ctx.pdf is not None:
        message.add_attachment(
            Path(ctx.pdf).read_bytes(),
            maintype="application",
            subtype="pdf",
            filename=Path(ctx.pdf).name,
        )
    host = spec.get("host") or os.environ.get("OBSBENCH_SMTP_HOST", "localhost")
    port = int(spec.get("port") or os.environ.get("OBSBENCH_SMTP_PORT", "25"))
    try:
        with smtplib.SMTP(host, port, timeout=float(spec.get("timeout_s", 30))) as smtp:
            if spec.get("starttls"):
                smtp.starttls()
            if spec.get("username"):
                password = os.environ.get(str(spec.get("password_env", "")), "")
                smtp.login(str(spec["username"]), password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        msg = f"cannot send e-mail through {host}:{port}: {exc}"
        raise DeliveryError(msg, hint="check the SMTP host, port and credentials.") from exc
    return f"email: {', '.join(recipients)}"


# ---------------------------------------------------------------------- webhook
def deliver_webhook(spec: Mapping[str, Any], ctx: DeliveryContext) -> str:
    """POST the run's JSON document to a URL (Slack/Teams read its ``text``)."""
    import urllib.error
    import urllib.request

    url = spec.get("url")
    if not url:
        msg = "webhook delivery needs a url"
        raise ConfigError(msg, hint="add url: https://...")
    url = _t(url, ctx)
    if not url.startswith(("http://", "https://")):
        msg = f"webhook url {url!r} must be http(s)"
        raise ConfigError(msg, hint="use an http:// or https:// URL.")
    data = json.dumps(ctx.document(), default=str).encode()
    headers = {"Content-Type": "application/json", **dict(spec.get("headers") or {})}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=float(spec.get("timeout_s", 10))) as resp:
            status = resp.status
    except (urllib.error.URLError, OSError) as exc:
        msg = f"webhook {url} failed: {exc}"
        raise DeliveryError(msg, hint="check the URL and that the receiver is up.") from exc
    return f"webhook: {url} ({status})"


def deliver_alert_channel(spec: Mapping[str, Any], ctx: DeliveryContext) -> str:
    """Send the run's outcome through an ``obsbench.alerts`` channel (bus, log, webhook, email).

    ``{type: alert_channel, channel: bus}`` pushes a failed run to every open dashboard
    session like any alert; the other options are the channel's own (e.g. ``url`` for a
    webhook). The notification has the Alertmanager shape the channels expect, with one
    ``ReportFailed`` alert (severity ``critical``) or a resolved ``ReportSucceeded`` one.
    """
    from obsbench.alerts import channels

    options = {k: v for k, v in spec.items() if k not in {"type", "channel"}}
    kind = str(spec.get("channel", "log"))
    failed = ctx.status != "ok"
    labels = {
        "alertname": "ReportFailed" if failed else "ReportSucceeded",
        "severity": "critical" if failed else "warning",
        "report": ctx.report,
        "schedule": ctx.schedule_id or "",
    }
    summary = (
        f"report {ctx.report} failed: {ctx.error}"
        if failed
        else f"report {ctx.report} ran ({ctx.run_id})"
    )
    alert = {
        "status": "firing" if failed else "resolved",
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": ctx.slot.isoformat() if ctx.slot else "",
        "value": None,
    }
    notification = {
        "status": alert["status"],
        "receiver": kind,
        "groupLabels": {"alertname": labels["alertname"], "report": ctx.report},
        "commonLabels": labels,
        "alerts": [alert],
    }
    channel = channels.build(kind, {"kind": kind, **options})
    try:
        channel.send(notification)  # type: ignore[arg-type]
    except ObsbenchError:
        raise
    except Exception as exc:  # a channel that is down: report it like other deliveries
        msg = f"alert channel {kind} failed: {exc}"
        raise SourceUnavailable(msg, hint="check the channel's options and reachability.") from exc
    return f"alert_channel:{kind}"


register_delivery("folder", deliver_folder)
register_delivery("alert_channel", deliver_alert_channel)
register_delivery("email", deliver_email)
register_delivery("webhook", deliver_webhook)
