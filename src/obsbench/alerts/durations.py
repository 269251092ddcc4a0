"""Durations in Prometheus notation (``90s``, ``5m``, ``1h30m``, ``1d``, ``1w``, ``0s``).

Every duration in a rule file, an SLO file or a CLI option goes through :func:`parse_duration`
once, at the edge; the rest of obsbench works with :class:`datetime.timedelta`.

Examples
--------
>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
>>> format_duration(parse_duration("90s"))
'1m30s'
"""

from __future__ import annotations

import re
from datetime import timedelta

from obsbench.errors import ConfigError

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a Prometheus duration (``5m``, ``1h30m``, ``0s``) into a ``timedelta``.

    Parameters
    ----------
    value
        A duration string; a ``timedelta`` is returned unchanged and a number is taken as
        seconds.

    Raises
    ------
    ConfigError
        For anything else, naming the accepted units.

    Examples
    --------
    >>> parse_duration("1d").total_seconds(), parse_duration(30).total_seconds()
    (86400.0, 30.0)
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        msg = f"{value!r} is not a duration"
        raise ConfigError(msg, hint="write durations like 30s, 5m, 1h30m, 1d.")
    if isinstance(value, int | float):
        if value < 0:
            msg = f"duration {value!r} is negative"
            raise ConfigError(msg, hint="durations are >= 0.")
        return timedelta(seconds=value)
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(text):
        msg = f"{value!r} is not a duration"
        raise ConfigError(
            msg, hint="write durations like 30s, 5m, 1h30m, 1d (units ms, s, m, h, d, w, y)."
        )
    total = timedelta(0)
    for amount, unit in _PART.findall(text):
        total += int(amount) * _UNITS[unit]
    return total


def format_duration(value: timedelta) -> str:
    """Format a ``timedelta`` in the same notation (``1h30m``; ``0s`` for zero).

    Examples
    --------
    >>> format_duration(timedelta(days=1, minutes=5)), format_duration(timedelta(0))
    ('1d5m', '0s')
    """
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit].total_seconds() * 1000)
        amount, ms = divmod(ms, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)
