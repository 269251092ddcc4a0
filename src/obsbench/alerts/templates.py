"""Annotation templates: ``{{ labels.service }}``, ``{{ value | humanize }}``.

A small, safe subset of Prometheus' Go templates, checked when a rule is parsed:

- names: ``labels.<name>`` (or ``$labels.<name>``), ``value`` (``$value``), ``alertname``,
  ``severity``, ``threshold``;
- filters after ``|``: ``humanize`` (SI prefixes), ``humanize_percentage`` (``0.05`` ->
  ``5%``), ``humanize_duration`` (seconds -> ``1h 2m 3s``), ``round(N)``.

Nothing else is evaluated, so a rule file cannot run code. An unknown label renders empty,
as in Prometheus.

Examples
--------
>>> render("p99 on {{ labels.service }}: {{ value | round(2) }}", {"service": "api"}, 0.12345)
'p99 on api: 0.12'
>>> render("{{ $value | humanize_percentage }} errors", {}, 0.0525)
'5.25% errors'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from obsbench.errors import ConfigError

_FIELD = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_NAME = re.compile(r"^\$?(labels\.[A-Za-z_][A-Za-z0-9_]*|value|alertname|severity|threshold)$")
_FILTER = re.compile(r"^(humanize|humanize_percentage|humanize_duration|round\((\d+)\))$")


def check(template: str) -> None:
    """Raise :class:`~obsbench.errors.ConfigError` for an unknown name or filter in ``template``."""
    for expr in _FIELD.findall(template):
        name, *filters = (part.strip() for part in expr.split("|"))
        if not _NAME.match(name):
            msg = f"unknown template name {name!r} in {template!r}"
            raise ConfigError(
                msg, hint="use labels.<name>, value, alertname, severity or threshold."
            )
        for f in filters:
            if not _FILTER.match(f):
                msg = f"unknown template filter {f!r} in {template!r}"
                raise ConfigError(
                    msg,
                    hint="use humanize, humanize_percentage, humanize_duration or round(N).",
                )


def render(
    template: str,
    labels: Mapping[str, str],
    value: float | None,
    *,
    alertname: str = "",
    severity: str = "",
    threshold: float | None = None,
) -> str:
    """Expand ``template`` for one alert (labels, current value)."""

    def one(match: re.Match[str]) -> str:
        name, *filters = (part.strip() for part in match.group(1).split("|"))
        name = name.lstrip("$")
        current: object
        if name.startswith("labels."):
            current = labels.get(name.removeprefix("labels."), "")
        else:
            current = {
                "value": value,
                "alertname": alertname,
                "severity": severity,
                "threshold": threshold,
            }[name]
        for f in filters:
            current = _apply(f, current)
        return _str(current)

    return _FIELD.sub(one, template)


def _apply(name: str, value: object) -> object:
    if not isinstance(value, int | float) or value is None:
        return value
    x = float(value)
    if name == "humanize":
        return _humanize(x)
    if name == "humanize_percentage":
        return f"{x * 100:.4g}%"
    if name == "humanize_duration":
        return _humanize_duration(x)
    digits = int(name[len("round(") : -1])
    return round(x, digits)


def _str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _humanize(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:.4g}"
    prefixes = [(1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T")]
    prefixes += [(1e9, "G"), (1e6, "M"), (1e3, "k")]
    if abs(x) >= 1:
        for size, prefix in prefixes:
            if abs(x) >= size:
                return f"{x / size:.4g}{prefix}"
        return f"{x:.4g}"
    for size, prefix in [(1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")]:
        if abs(x) >= size:
            return f"{x / size:.4g}{prefix}"
    return f"{x:.4g}"


def _humanize_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return f"{seconds}"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.4g}ms"
    sign = "-" if seconds < 0 else ""
    rest = int(abs(seconds))
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    parts.append(f"{secs}s")
    return sign + " ".join(parts)
