"""Named constants shared across obsbench (one place, never read from globals at call time).

The metric functions take these as explicit defaults (``periods_per_year=252``), so a
caller always sees the value in the signature; this module only names them.
"""

from __future__ import annotations

from typing import Final

TRADING_DAYS_PER_YEAR: Final = 252
"""Trading days per year; empyrical's ``APPROX_BDAYS_PER_YEAR`` and ``DAILY`` factor."""

WEEKS_PER_YEAR: Final = 52
MONTHS_PER_YEAR: Final = 12
QUARTERS_PER_YEAR: Final = 4

PERIODS_PER_YEAR: Final[dict[str, int]] = {
    "daily": TRADING_DAYS_PER_YEAR,
    "weekly": WEEKS_PER_YEAR,
    "monthly": MONTHS_PER_YEAR,
    "quarterly": QUARTERS_PER_YEAR,
    "yearly": 1,
}
"""Annualisation factor by return frequency (empyrical ``ANNUALIZATION_FACTORS``)."""

DEFAULT_VAR_LEVEL: Final = 0.95
"""Default confidence level of value at risk and expected shortfall."""
