from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import polars as pl
import pytest

from obsbench.errors import UnknownName
from obsbench.reports.format import (
    MISSING,
    Headline,
    Note,
    Table,
    fmt_bps,
    fmt_int,
    fmt_money,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_text,
    formatter,
)


@pytest.mark.parametrize(
    ("fn", "value", "kwargs", "expected"),
    [
        pytest.param(fmt_int, 1234567, {}, "1,234,567", id="int_thousands"),
        pytest.param(fmt_int, 2.5, {}, "2", id="int_rounds_half_even"),
        pytest.param(fmt_int, None, {}, MISSING, id="int_none"),
        pytest.param(fmt_num, 12345.678, {}, "12,345.68", id="num_two_decimals"),
        pytest.param(fmt_num, -0.5, {"decimals": 0}, "-0", id="num_zero_decimals"),
        pytest.param(fmt_num, math.nan, {}, MISSING, id="num_nan"),
        pytest.param(fmt_num, math.inf, {}, "∞", id="num_inf"),
        pytest.param(fmt_pct, 0.123456, {}, "12.35%", id="pct"),
        pytest.param(fmt_pct, -0.0348, {"decimals": 1}, "-3.5%", id="pct_negative"),
        pytest.param(fmt_pct, 12.5, {"decimals": 0}, "1,250%", id="pct_thousands"),
        pytest.param(fmt_bps, 0.00123, {}, "12.3 bps", id="bps_from_fraction"),
        pytest.param(fmt_bps, 12.34, {"fraction": False}, "12.3 bps", id="bps_raw"),
        pytest.param(fmt_money, -1234.5, {}, "-$1,234.50", id="usd_negative"),
        pytest.param(fmt_money, 1e6, {"currency": "EUR", "decimals": 0}, "€1,000,000", id="eur"),
        pytest.param(fmt_money, 10, {"currency": "SEK"}, "10.00 SEK", id="unknown_currency"),
        pytest.param(fmt_ms, 1234.56, {}, "1,234.6 ms", id="ms"),
        pytest.param(fmt_text, None, {}, MISSING, id="text_none"),
    ],
)
def test_formatters(fn, value, kwargs, expected) -> None:
    assert fn(value, **kwargs) == expected


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="unknown number format 'percent'"):
        formatter("percent")


FRAME = pl.DataFrame(
    {
        "venue": ["XNAS", "BATS", "IEXG"],
        "orders": [1200, 35, 7],
        "fill_rate": [0.95123, 0.5, None],
        "slippage_bps": [3.21, 10.0, 7.5],
    }
)


def test_table_formats_columns_and_repeats_the_header_row() -> None:
    html = Table(
        FRAME, formats={"fill_rate": "pct1", "slippage_bps": "bps_raw"}, title="By venue"
    ).to_html()
    assert "<thead>" in html
    assert "By venue" in html.split("</thead>")[0]  # caption inside thead: repeats per page
    for text in ("1,200", "95.1%", "3.2 bps", MISSING, 'class="num"', "fill rate"):
        assert text in html


def test_table_max_rows_says_what_was_left_out() -> None:
    html = Table(FRAME, max_rows=1).to_html()
    assert html.count("<tr>") == 2  # header row + one body row
    assert "2 more rows not shown." in html


def test_table_of_empty_frame_says_no_data() -> None:
    assert "no data" in Table(FRAME.head(0)).to_html()


def test_table_modifiers_return_copies() -> None:
    table = Table(FRAME)
    titled = table.with_title("x").with_formats(orders="num")
    assert table.title is None
    assert table.formats == {}
    assert titled.formats == {"orders": "num"}
    with pytest.raises(FrozenInstanceError):
        table.title = "y"  # type: ignore[misc]


def test_display_objects_render_html_in_notebooks() -> None:
    assert Table(FRAME)._repr_html_() == Table(FRAME).to_html()
    assert Table(FRAME.lazy()).to_html() == Table(FRAME).to_html()
    headline = Headline([("Orders", "1,242")], status={"Orders": "good"})._repr_html_()
    assert 'class="kpi good"' in headline
    assert "1,242" in headline
    assert Note("a <b>", "warning")._repr_html_() == '<p class="note warning">a &lt;b&gt;</p>'
