"""P&L attribution: hand-computed days, reconciliation on simulator data, bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.errors import SchemaError

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)


def at(day: date, hour: int = 15) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def order(oid: str, day: date, side: str, qty: float, symbol: str = "X", strategy: str = "a"):
    return {"order_id": oid, "ts": at(day, 14), "strategy": strategy, "symbol": symbol,
            "side": side, "qty": qty, "arrival_px": 10.0, "limit_px": None, "venue": "XNAS",
            "broker": "ibkr", "status": "filled"}  # fmt: skip


def fill(fid: str, oid: str, day: date, side: str, qty: float, px: float, fee: float,
         symbol: str = "X"):  # fmt: skip
    return {"fill_id": fid, "order_id": oid, "ts": at(day), "symbol": symbol, "side": side,
            "qty": qty, "px": px, "fee": fee, "venue": "XNAS"}  # fmt: skip


ORDERS = pl.DataFrame(
    [order("o1", D1, "buy", 100.0), order("o2", D2, "sell", 40.0),
     order("o3", D2, "buy", 10.0, symbol="Y", strategy="b")],
    schema_overrides={"limit_px": pl.Float64},
)  # fmt: skip
FILLS = pl.DataFrame(
    [fill("f1", "o1", D1, "buy", 100.0, 10.0, 1.0), fill("f2", "o2", D2, "sell", 40.0, 10.5, 0.5),
     fill("f3", "o3", D2, "buy", 10.0, 20.0, 0.1, symbol="Y")]
)  # fmt: skip
MARKS = pl.DataFrame(
    {"symbol": ["X", "X", "X", "Y", "Y"], "date": [D1, D2, D3, D2, D3],
     "close": [10.2, 10.25, 10.0, 19.0, 21.0]}
)  # fmt: skip

# Strategy a, symbol X:
#  D1: buy 100 @ 10 (fee 1), close 10.2 -> trading 100 x 0.2 = 20, position 0, fees -1
#  D2: sell 40 @ 10.5 (fee 0.5), close 10.25 -> position 100 x 0.05 = 5,
#      trading -40 x (10.25 - 10.5) = 10, fees -0.5
#  D3: no fills, close 10.0 -> position 60 x -0.25 = -15
# Strategy b, symbol Y: D2 buy 10 @ 20 (fee 0.1), close 19 -> trading -10;
#  D3 position 10 x 2 = 20
EXPECTED = [
    ("a", "X", D1, 100.0, 10.2, 0.0, 20.0, -1.0, 19.0),
    ("a", "X", D2, 60.0, 10.25, 5.0, 10.0, -0.5, 14.5),
    ("a", "X", D3, 60.0, 10.0, -15.0, 0.0, 0.0, -15.0),
    ("b", "Y", D2, 10.0, 19.0, 0.0, -10.0, -0.1, -10.1),
    ("b", "Y", D3, 10.0, 21.0, 20.0, 0.0, 0.0, 20.0),
]
COLUMNS = ["strategy", "symbol", "date", "position", "close", "position_pnl", "trading_pnl",
           "fee_pnl", "total_pnl"]  # fmt: skip


def assert_rows(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        assert g[3:] == pytest.approx(w[3:], rel=1e-12, abs=1e-9)


def test_attribution_hand_computed() -> None:
    out = obm.pnl_attribution(ORDERS, FILLS, marks=MARKS)
    assert out.columns == COLUMNS
    assert_rows(out.rows(), EXPECTED)


def test_attribution_with_initial_positions() -> None:
    initial = pl.DataFrame({"strategy": ["a"], "symbol": ["X"], "qty": [-20.0], "px": [9.8]})
    out = obm.pnl_attribution(ORDERS, FILLS, marks=MARKS, initial_positions=initial)
    d1 = out.filter(strategy="a", date=D1).row(0, named=True)
    # carried -20 from 9.8 to 10.2: position P&L -8; end-of-day position 80
    assert (d1["position"], d1["position_pnl"], d1["total_pnl"]) == pytest.approx(
        (80.0, -8.0, 11.0)
    )
    d3 = out.filter(strategy="a", date=D3).row(0, named=True)
    assert d3["position_pnl"] == pytest.approx(40.0 * -0.25)


def test_marks_from_quotes_are_last_mid_of_the_day() -> None:
    quotes = pl.DataFrame(
        {"symbol": ["X", "X", "X"], "ts": [at(D1, 14), at(D1, 20), at(D2, 15)],
         "bid": [9.0, 10.1, 10.2], "ask": [9.2, 10.3, 10.3], "mid": [9.1, 10.2, 10.25]}
    )  # fmt: skip
    marks = obm.daily_marks(quotes)
    assert marks.rows() == [("X", D1, 10.2), ("X", D2, 10.25)]
    orders, fills = ORDERS.filter(symbol="X"), FILLS.filter(symbol="X")
    out = obm.pnl_attribution(orders, fills, quotes)
    assert_rows(out.rows(), EXPECTED[:2])


def test_cumulative_pnl_by_strategy_and_book() -> None:
    att = obm.pnl_attribution(ORDERS, FILLS, marks=MARKS)
    by_strategy = obm.cumulative_pnl(att)
    assert by_strategy.filter(strategy="a")["cumulative_pnl"].to_list() == pytest.approx(
        [19.0, 33.5, 18.5]
    )
    book = obm.cumulative_pnl(att, by=())
    assert book["total_pnl"].to_list() == pytest.approx([19.0, 4.4, 5.0])
    assert book["cumulative_pnl"].to_list() == pytest.approx([19.0, 23.4, 28.4])


def test_lazy_in_lazy_out() -> None:
    out = obm.pnl_attribution(ORDERS.lazy(), FILLS.lazy(), marks=MARKS)
    assert isinstance(out, pl.LazyFrame)
    assert_rows(out.collect().rows(), EXPECTED)
    assert isinstance(obm.cumulative_pnl(out), pl.LazyFrame)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"marks": MARKS.filter(date=D1)}, r"no close mark for 2 symbol/date",
                     id="missing_mark"),
        pytest.param({}, "needs close marks", id="no_marks_no_quotes"),
        pytest.param({"marks": MARKS, "initial_positions": pl.DataFrame(
            {"strategy": ["a"], "symbol": ["Z"], "qty": [1.0], "px": [1.0]})},
            "initial-position symbol", id="initial_without_marks"),
        pytest.param({"marks": MARKS, "initial_positions": pl.DataFrame(
            {"strategy": ["a"], "symbol": ["X"], "qty": [1.0], "px": [0.0]})},
            "px not > 0", id="initial_bad_price"),
    ],
)  # fmt: skip
def test_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        obm.pnl_attribution(ORDERS, FILLS, **kwargs)


def test_fills_are_validated() -> None:
    bad = FILLS.with_columns(pl.when(pl.col("fill_id") == "f2").then(pl.lit("o9"))
                             .otherwise("order_id").alias("order_id"))  # fmt: skip
    with pytest.raises(SchemaError, match="absent from orders: fill_id f2"):
        obm.pnl_attribution(ORDERS, bad, marks=MARKS)


# --------------------------------------------------------------------------- simulator


@pytest.fixture(scope="module")
def sim() -> Any:
    from obsbench.sim import SimConfig, simulate

    return simulate(SimConfig.small(days=3, seed=5))


def test_attribution_reconciles_on_simulator(sim: Any) -> None:
    """position + trading + fees == total, on every strategy/symbol/day of simulated trading."""
    att = obm.pnl_attribution(sim["orders"], sim["fills"], sim["quotes"])
    assert att.height > 0
    parts = att["position_pnl"] + att["trading_pnl"] + att["fee_pnl"]
    scale = att["total_pnl"].abs().max()
    assert (parts - att["total_pnl"]).abs().max() <= 1e-12 * scale  # type: ignore[operator]
    # independently: total P&L = change of (position x close + cash) from first principles
    cash = (
        sim["fills"]
        .join(sim["orders"].select("order_id", "strategy"), on="order_id")
        .select(
            "strategy", "symbol", pl.col("ts").dt.date().alias("date"),
            (-obm.side_sign() * pl.col("qty") * pl.col("px") - pl.col("fee")).alias("cash"),
        )
        .group_by("strategy", "symbol", "date")
        .agg(pl.col("cash").sum())
    )  # fmt: skip
    value = (
        att.join(cash, on=["strategy", "symbol", "date"], how="left")
        .sort("strategy", "symbol", "date")
        .with_columns(
            (pl.col("position") * pl.col("close") + pl.col("cash").fill_null(0.0).cum_sum()
             .over("strategy", "symbol")).alias("value")
        )
        .with_columns(pl.col("value").diff().over("strategy", "symbol")
                      .fill_null(pl.col("value")).alias("change"))
    )  # fmt: skip
    assert (value["change"] - value["total_pnl"]).abs().max() <= 1e-9 * scale  # type: ignore[operator]


def test_daily_pnl_matches_simulator_returns(sim: Any) -> None:
    """The simulator's daily return x capital is the strategy's mark-to-market P&L."""
    att = obm.pnl_attribution(sim["orders"], sim["fills"], sim["quotes"])
    daily = obm.cumulative_pnl(att)
    returns = sim["returns"].select(
        "strategy", pl.col("ts").dt.date().alias("date"), (pl.col("ret") * sim.config.capital)
    )
    joined = daily.join(returns, on=["strategy", "date"])
    assert joined.height == returns.height
    assert (joined["total_pnl"] - joined["ret"]).abs().max() < 1e-6  # type: ignore[operator]


def test_positions_carry_across_days_without_fills() -> None:
    out = obm.pnl_attribution(ORDERS, FILLS, marks=MARKS)
    assert out.filter(date=D3)["trading_pnl"].to_list() == [0.0, 0.0]
    assert out.filter(date=D3)["position"].to_list() == [60.0, 10.0]
