"""Date templates for scheduled report parameters (``{{ previous_month.start }}``).

Scheduled parameters are Jinja2 templates rendered in a sandbox for each run from the
run's *logical* time (the cron slot, in the schedule's time zone), so a report caught up
after downtime still covers the period it would have covered on time.

Variables available to a template (dates print as ``YYYY-MM-DD``):

=============================  =====================================================
``run_date``                   the slot's local date
``run_time``                   the slot as an aware datetime (schedule time zone)
``yesterday``                  ``run_date - 1 day``
``previous_business_day``      the last weekday before ``run_date`` not in ``holidays``
``previous_week``              ``.start`` (Monday) / ``.end`` (Sunday) of the last full week
``previous_month``             ``.start`` / ``.end`` of the previous calendar month
``month_to_date``              ``.start`` (1st of the month) / ``.end`` (yesterday)
``days(n)``                    a ``timedelta`` of n days: ``{{ run_date - days(7) }}``
``business_days_before(d, n)`` the n-th business day before d
``month_start(d)``,            first / last day of d's month
``month_end(d)``
=============================  =====================================================

Examples
--------
>>> from datetime import date
>>> ctx = date_context(date(2024, 3, 4))  # a Monday
>>> str(ctx["previous_business_day"]), str(ctx["previous_month"].start)
('2024-03-01', '2024-02-01')
>>> render("{{ previous_month.end }}", ctx)
'2024-02-29'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from obsbench.errors import ConfigError


@dataclass(frozen=True)
class Period:
    """An inclusive range of days."""

    start: date
    end: date

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def month_end(day: date) -> date:
    """The last day of ``day``'s month."""
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def is_business_day(day: date, holidays: Iterable[date] = ()) -> bool:
    """Monday to Friday and not a listed holiday."""
    return day.weekday() < 5 and day not in set(holidays)


def business_days_before(day: date, n: int = 1, holidays: Iterable[date] = ()) -> date:
    """The ``n``-th business day strictly before ``day``."""
    off = set(holidays)
    current, found = day, 0
    while found < n:
        current -= timedelta(days=1)
        if is_business_day(current, off):
            found += 1
    return current


def date_context(run: date | datetime, holidays: Iterable[date] = ()) -> dict[str, Any]:
    """The template variables for a run at ``run`` (see the module docstring)."""
    run_date = run.date() if isinstance(run, datetime) else run
    off = tuple(holidays)
    first = month_start(run_date)
    prev_month_end = first - timedelta(days=1)
    monday = run_date - timedelta(days=run_date.weekday())
    return {
        "run_date": run_date,
        "run_time": run if isinstance(run, datetime) else None,
        "today": run_date,
        "yesterday": run_date - timedelta(days=1),
        "previous_business_day": business_days_before(run_date, 1, off),
        "previous_week": Period(monday - timedelta(days=7), monday - timedelta(days=1)),
        "previous_month": Period(month_start(prev_month_end), prev_month_end),
        "month_to_date": Period(first, max(first, run_date - timedelta(days=1))),
        "days": lambda n: timedelta(days=n),
        "business_days_before": lambda d, n=1: business_days_before(d, n, off),
        "month_start": month_start,
        "month_end": month_end,
    }


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template string in a sandbox; unknown variables are errors.

    Raises
    ------
    ConfigError
        Naming the template and the problem.
    """
    from jinja2 import TemplateError

    try:
        return str(_environment().from_string(template).render(**context))
    except TemplateError as exc:
        msg = f"template {template!r} failed: {exc}"
        raise ConfigError(
            msg, hint="see obsbench.reports.dates for the variables (previous_month, ...)."
        ) from None


def render_values(values: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Render every string (also inside lists) of ``values``; other values pass through."""

    def one(value: Any) -> Any:
        if isinstance(value, str) and "{" in value:
            return render(value, context)
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {k: one(v) for k, v in values.items()}
