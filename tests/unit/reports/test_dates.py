from __future__ import annotations

from datetime import date, timedelta

import pytest

from obsbench.errors import ConfigError
from obsbench.reports.dates import (
    business_days_before,
    date_context,
    month_end,
    render,
    render_values,
)


@pytest.mark.parametrize(
    ("run", "holidays", "expected"),
    [
        pytest.param(date(2024, 3, 5), (), date(2024, 3, 4), id="tuesday_gives_monday"),
        pytest.param(date(2024, 3, 4), (), date(2024, 3, 1), id="monday_gives_friday"),
        pytest.param(date(2024, 3, 3), (), date(2024, 3, 1), id="sunday_gives_friday"),
        pytest.param(
            date(2024, 12, 26), (date(2024, 12, 25),), date(2024, 12, 24), id="skips_holiday"
        ),
        pytest.param(
            date(2024, 1, 2), (date(2024, 1, 1),), date(2023, 12, 29), id="across_new_year"
        ),
    ],
)
def test_previous_business_day(run: date, holidays: tuple[date, ...], expected: date) -> None:
    assert date_context(run, holidays)["previous_business_day"] == expected


@pytest.mark.parametrize(
    ("run", "start", "end"),
    [
        pytest.param(date(2024, 3, 2), date(2024, 2, 1), date(2024, 2, 29), id="leap_february"),
        pytest.param(date(2024, 1, 15), date(2023, 12, 1), date(2023, 12, 31), id="year_boundary"),
        pytest.param(date(2023, 3, 1), date(2023, 2, 1), date(2023, 2, 28), id="first_of_month"),
    ],
)
def test_previous_month(run: date, start: date, end: date) -> None:
    period = date_context(run)["previous_month"]
    assert (period.start, period.end) == (start, end)


def test_previous_week_and_month_to_date() -> None:
    ctx = date_context(date(2024, 3, 6))  # Wednesday
    assert (ctx["previous_week"].start, ctx["previous_week"].end) == (
        date(2024, 2, 26),
        date(2024, 3, 3),
    )
    assert (ctx["month_to_date"].start, ctx["month_to_date"].end) == (
        date(2024, 3, 1),
        date(2024, 3, 5),
    )
    first = date_context(date(2024, 3, 1))["month_to_date"]
    assert first.start == first.end == date(2024, 3, 1)


def test_helpers() -> None:
    assert business_days_before(date(2024, 3, 4), 5) == date(2024, 2, 26)
    assert month_end(date(2023, 12, 5)) == date(2023, 12, 31)


def test_render_templates_with_date_arithmetic() -> None:
    ctx = date_context(date(2024, 3, 4))
    assert render("{{ run_date - days(7) }}", ctx) == "2024-02-26"
    assert render("{{ previous_month.start.strftime('%B %Y') }}", ctx) == "February 2024"
    values = render_values(
        {"start": "{{ previous_business_day }}", "level": 0.99, "names": ["{{ yesterday }}", "x"]},
        ctx,
    )
    assert values == {"start": "2024-03-01", "level": 0.99, "names": ["2024-03-03", "x"]}


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ previus_month.start }}", id="unknown_variable"),
        pytest.param("{{ run_date.__class__.__mro__ }}", id="sandboxed_attribute"),
        pytest.param("{{ run_date ", id="syntax_error"),
    ],
)
def test_bad_templates_are_config_errors(template: str) -> None:
    with pytest.raises(ConfigError, match="template"):
        render(template, date_context(date(2024, 3, 4)) | {"days": lambda n: timedelta(n)})
