"""Execution metrics: hand-computed cases, bad input, and slippage vs the simulator's model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.errors import InvalidParameter, SchemaError

T0 = datetime(2024, 1, 2, 14, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def assert_close(got: Sequence[Any], want: Sequence[Any], rel: float = 1e-12) -> None:
    """Element-wise approx with None meaning null and NaN equal to NaN."""
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None, (got, want)
        else:
            assert g == pytest.approx(w, rel=rel, abs=1e-9, nan_ok=True), (got, want)


ORDER_DEFAULTS: dict[str, Any] = {
    "strategy": "s1",
    "limit_px": None,
    "venue": "XNAS",
    "broker": "ibkr",
    "status": "filled",
}
FILL_DEFAULTS: dict[str, Any] = {"fee": 0.0, "venue": "XNAS"}


def make_orders(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [{**ORDER_DEFAULTS, **r} for r in rows], schema_overrides={"limit_px": pl.Float64}
    )


def make_fills(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{**FILL_DEFAULTS, **r} for r in rows])


def make_quotes(*rows: tuple[str, float, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ts": [t(r[1]) for r in rows],
            "bid": [r[2] - 0.01 for r in rows],
            "ask": [r[2] + 0.01 for r in rows],
            "mid": [r[2] for r in rows],
        }
    )


# The hand-computed book (numbers in the comments are the expected values below).
# o1 buy 500 AAPL, arrival 100: fills 300 @ 100.10 (fee 3) and 100 @ 100.20 (fee 1)
#    -> filled 400, notional 40_050, avg 100.125, slippage 12.5 bps, execution cost 50,
#       AAPL ends at 101 -> opportunity cost 100 x (101 - 100) = 100, IS = 50 + 100 + 4 = 154
# o2 sell 200 MSFT, arrival 50: one fill 200 @ 49.95 (fee 2)
#    -> slippage 10 bps, execution cost 10, IS = 12 (12 bps of 10_000)
# o3 buy 100 AAPL, arrival 100.5, no fills -> opportunity cost 100 x 0.5 = 50 = IS
ORDERS = make_orders(
    {"order_id": "o1", "ts": t(0), "symbol": "AAPL", "side": "buy", "qty": 500.0,
     "arrival_px": 100.0, "status": "partially_filled"},
    {"order_id": "o2", "ts": t(0), "symbol": "MSFT", "side": "sell", "qty": 200.0,
     "arrival_px": 50.0, "strategy": "s2", "venue": "XNYS", "broker": "alpaca"},
    {"order_id": "o3", "ts": t(10), "symbol": "AAPL", "side": "buy", "qty": 100.0,
     "arrival_px": 100.5, "status": "cancelled"},
)  # fmt: skip
FILLS = make_fills(
    {"fill_id": "f1", "order_id": "o1", "ts": t(1), "symbol": "AAPL", "side": "buy",
     "qty": 300.0, "px": 100.10, "fee": 3.0},
    {"fill_id": "f2", "order_id": "o1", "ts": t(5), "symbol": "AAPL", "side": "buy",
     "qty": 100.0, "px": 100.20, "fee": 1.0, "venue": "BATS"},
    {"fill_id": "f3", "order_id": "o2", "ts": t(2), "symbol": "MSFT", "side": "sell",
     "qty": 200.0, "px": 49.95, "fee": 2.0, "venue": "XNYS"},
)  # fmt: skip
QUOTES = make_quotes(
    ("AAPL", 0, 100.0), ("AAPL", 3, 100.10), ("AAPL", 20, 101.0),
    ("MSFT", 0, 50.0), ("MSFT", 30, 49.0),
)  # fmt: skip

# fill-time mids: f1 -> 100.0 (10 bps), f2 -> 100.10 ((100.20/100.10 - 1) x 1e4 bps)
F2_MID_BPS = (100.20 - 100.10) / 100.10 * 1e4
O1_MID_BPS = (300 * 10.0 + 100 * F2_MID_BPS) / 400


# --------------------------------------------------------------------------- expressions

EXPRESSION_CASES = [
    pytest.param(obm.slippage_bps(), {"side": ["buy"], "arrival_px": [100.0], "px": [100.1]},
                 [10.0], id="slippage_buy_above_arrival_is_cost"),
    pytest.param(obm.slippage_bps(), {"side": ["sell"], "arrival_px": [100.0], "px": [99.9]},
                 [10.0], id="slippage_sell_below_arrival_is_cost"),
    pytest.param(obm.slippage_bps(), {"side": ["sell"], "arrival_px": [100.0], "px": [100.2]},
                 [-20.0], id="slippage_sell_improvement_negative"),
    pytest.param(obm.slippage_bps("side", "mid", "avg"),
                 {"side": ["buy"], "mid": [50.0], "avg": [50.0]}, [0.0], id="slippage_at_bench"),
    pytest.param(obm.side_sign(), {"side": ["buy", "sell", "hold"]}, [1.0, -1.0, None],
                 id="side_sign_unknown_null"),
    pytest.param(obm.execution_cost(),
                 {"side": ["buy", "sell"], "arrival_px": [100.0, 50.0],
                  "filled_qty": [400.0, 200.0], "fill_notional": [40_050.0, 9_990.0]},
                 [50.0, 10.0], id="execution_cost_buy_sell"),
    pytest.param(obm.opportunity_cost(),
                 {"side": ["buy", "sell", "buy"], "arrival_px": [100.0, 100.0, 100.0],
                  "qty": [500.0, 500.0, 100.0], "filled_qty": [400.0, 400.0, 100.0],
                  "end_px": [101.0, 101.0, None]},
                 [100.0, -100.0, 0.0], id="opportunity_cost_sign_and_full_fill"),
    pytest.param(obm.implementation_shortfall(),
                 {"side": ["buy", "sell", "buy"], "arrival_px": [100.0, 50.0, 100.5],
                  "qty": [500.0, 200.0, 100.0], "filled_qty": [400.0, 200.0, 0.0],
                  "fill_notional": [40_050.0, 9_990.0, 0.0], "end_px": [101.0, 49.0, 101.0],
                  "fees": [4.0, 2.0, 0.0]},
                 [154.0, 12.0, 50.0], id="implementation_shortfall_perold"),
    pytest.param(obm.cost_bps("c", "n"), {"c": [154.0, 1.0], "n": [50_000.0, 0.0]},
                 [30.8, math.nan], id="cost_bps_zero_notional_nan"),
    pytest.param(obm.latency_ms("a", "b"), {"a": [t(0), t(1)], "b": [t(1.5), None]},
                 [1500.0, None], id="latency_ms"),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "data", "expected"), EXPRESSION_CASES)
def test_row_expressions(expr: pl.Expr, data: dict[str, list[Any]], expected: list[Any]) -> None:
    assert_close(pl.DataFrame(data).select(expr).to_series().to_list(), expected)


AGGREGATE_CASES = [
    pytest.param(obm.weighted_mean("v", "w"), {"v": [10.0, 20.0], "w": [300.0, 100.0]}, 12.5,
                 id="weighted_mean"),
    pytest.param(obm.weighted_mean("v", "w"), {"v": [10.0, None], "w": [1.0, 9.0]}, 10.0,
                 id="weighted_mean_skips_null_values"),
    pytest.param(obm.weighted_mean("v", "w"), {"v": [10.0], "w": [0.0]}, math.nan,
                 id="weighted_mean_zero_weight_nan"),
    pytest.param(obm.fill_rate(), {"filled_qty": [400.0, 200.0, 0.0],
                                   "qty": [500.0, 200.0, 100.0]}, 0.75, id="fill_rate_qty"),
    pytest.param(obm.order_fill_rate(), {"filled_qty": [400.0, 200.0, 0.0],
                                         "qty": [500.0, 200.0, 100.0]}, 1 / 3,
                 id="order_fill_rate_fully_filled_only"),
    pytest.param(obm.fill_rate(), {"filled_qty": [], "qty": []}, math.nan, id="fill_rate_empty"),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "data", "expected"), AGGREGATE_CASES)
def test_aggregates(expr: pl.Expr, data: dict[str, list[float]], expected: float) -> None:
    frame = pl.DataFrame(data, schema=dict.fromkeys(data, pl.Float64))
    assert frame.select(expr).item() == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_series_path_matches_expression() -> None:
    side, bench, px = pl.Series(["buy", "sell"]), pl.Series([10.0, 10.0]), pl.Series([10.1, 9.8])
    assert obm.slippage_bps(side, bench, px).to_list() == pytest.approx([100.0, 200.0])
    assert obm.weighted_mean(pl.Series([10.0, 20.0]), pl.Series([1.0, 3.0])) == 17.5


def test_group_weighted_mean_of_orders_equals_pooled_fills() -> None:
    """Quantity-weighted means compose: per order, then per group == all fills pooled."""
    fills = pl.DataFrame({"order": ["a", "a", "b"], "v": [10.0, 20.0, 5.0], "qty": [1.0, 3.0, 6.0]})
    per_order = fills.group_by("order").agg(
        obm.weighted_mean("v", "qty").alias("v"), pl.col("qty").sum()
    )
    pooled = fills.select(obm.weighted_mean("v", "qty")).item()
    assert per_order.select(obm.weighted_mean("v", "qty")).item() == pytest.approx(pooled)


# --------------------------------------------------------------------------- frame level


def test_order_executions_hand_computed() -> None:
    out = obm.order_executions(ORDERS, FILLS, QUOTES).sort("order_id")
    cols = ["n_fills", "filled_qty", "fill_notional", "fees", "avg_px", "slippage_bps",
            "execution_cost", "end_px", "opportunity_cost", "implementation_shortfall",
            "implementation_shortfall_bps"]  # fmt: skip
    expected = [
        (2, 400.0, 40_050.0, 4.0, 100.125, 12.5, 50.0, 101.0, 100.0, 154.0, 30.8),
        (1, 200.0, 9_990.0, 2.0, 49.95, 10.0, 10.0, 49.0, 0.0, 12.0, 12.0),
        (0, 0.0, 0.0, 0.0, None, None, 0.0, 101.0, 50.0, 50.0, 50.0 / 10_050.0 * 1e4),
    ]
    for got, want in zip(out.select(cols).rows(), expected, strict=True):
        assert_close(got, want)
    assert out["first_fill_ts"].to_list() == [t(1), t(2), None]


def test_order_executions_end_moves_the_opportunity_cost() -> None:
    out = obm.order_executions(ORDERS, FILLS, QUOTES, end=t(4)).sort("order_id")
    # AAPL mid at t=4 is 100.10: o1 opportunity = 100 x 0.10, o3 = 100 x (100.10 - 100.5)
    assert out["opportunity_cost"].to_list() == pytest.approx([10.0, 0.0, -40.0])


def test_order_executions_without_quotes_omits_shortfall() -> None:
    out = obm.order_executions(ORDERS, FILLS)
    assert "implementation_shortfall" not in out.columns
    assert out.filter(order_id="o1")["slippage_bps"].item() == pytest.approx(12.5)


SLIPPAGE_CASES = [
    pytest.param("arrival", {}, ("order_id",),
                 {("o1",): 12.5, ("o2",): 10.0}, id="arrival_per_order"),
    pytest.param("fill_mid", {}, ("order_id",),
                 {("o1",): O1_MID_BPS, ("o2",): 10.0}, id="fill_mid_per_order"),
    pytest.param("arrival", {}, ("side",),
                 {("buy",): 12.5, ("sell",): 10.0}, id="arrival_per_side"),
    pytest.param("arrival", {}, ("venue",),  # the fill's venue: f2 went to BATS
                 {("BATS",): 20.0, ("XNAS",): 10.0, ("XNYS",): 10.0}, id="per_fill_venue"),
    pytest.param("arrival", {}, ("order_venue",),
                 {("XNAS",): 12.5, ("XNYS",): 10.0}, id="per_order_venue"),
    # own fills as prints: o1's interval VWAP is its own average price -> 0 bps
    pytest.param("interval_vwap", {}, ("order_id",),
                 {("o1",): 0.0, ("o2",): 0.0}, id="interval_vwap_own_fills"),
    # market prints in [0, 5]: 1000 @ 100 and 1000 @ 100.05 -> VWAP 100.025
    pytest.param("interval_vwap",
                 {"trades": pl.DataFrame({"symbol": ["AAPL"] * 3 + ["MSFT"],
                                          "ts": [t(0), t(3), t(6), t(2)],
                                          "px": [100.0, 100.05, 99.0, 50.0],
                                          "qty": [1000.0, 1000.0, 5000.0, 10.0]})},
                 ("order_id",),
                 {("o1",): (100.125 / 100.025 - 1) * 1e4, ("o2",): 10.0},
                 id="interval_vwap_trades"),
    # quotes over [0, 5]: 100.0 for 3 s, 100.10 for 2 s -> TWAP 100.04
    pytest.param("interval_twap", {}, ("order_id",),
                 {("o1",): (100.125 / 100.04 - 1) * 1e4, ("o2",): 10.0}, id="interval_twap"),
]  # fmt: skip


@pytest.mark.parametrize(("benchmark", "kwargs", "by", "expected"), SLIPPAGE_CASES)
def test_slippage_benchmarks(
    benchmark: obm.execution.Benchmark,
    kwargs: dict[str, Any],
    by: tuple[str, ...],
    expected: dict[tuple[str, ...], float],
) -> None:
    out = obm.slippage(ORDERS, FILLS, QUOTES, benchmark=benchmark, by=by, **kwargs)
    got = {row[: len(by)]: row[-1] for row in out.select(*by, "slippage_bps").rows()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_fill_slippage_columns() -> None:
    out = obm.fill_slippage(ORDERS, FILLS, QUOTES, benchmark="fill_mid")
    assert out["fill_id"].to_list() == ["f1", "f3", "f2"]  # fill ts order
    assert out["benchmark_px"].to_list() == [100.0, 50.0, 100.10]
    assert out["strategy"].to_list() == ["s1", "s2", "s1"]


def test_fill_slippage_needs_quotes_for_market_benchmarks() -> None:
    with pytest.raises(InvalidParameter, match="needs quotes"):
        obm.fill_slippage(ORDERS, FILLS, benchmark="fill_mid")
    with pytest.raises(InvalidParameter, match="benchmark"):
        obm.fill_slippage(ORDERS, FILLS, QUOTES, benchmark="close")  # type: ignore[arg-type]


def test_interval_twap_and_vwap_edges() -> None:
    iv = pl.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL"],
            "start": [t(3), t(-5), t(1)],
            "end": [t(3), t(2), t(2)],
        }
    )
    twap = obm.interval_twap(iv, QUOTES)["twap"].to_list()
    # zero-length interval -> mid at start; no quote before start -> null; [1, 2] -> 100.0
    assert twap == [pytest.approx(100.10), None, pytest.approx(100.0)]
    trades = pl.DataFrame({"symbol": ["AAPL"], "ts": [t(10)], "px": [1.0], "qty": [1.0]})
    assert obm.interval_vwap(iv, trades)["vwap"].to_list() == [None, None, None]


FILL_RATE_CASES = [
    pytest.param(("strategy",), [("s1", 2, 0, 600.0, 400.0, 2 / 3, 0.0),
                                 ("s2", 1, 1, 200.0, 200.0, 1.0, 1.0)], id="by_strategy"),
    pytest.param(("broker", "symbol"), [("alpaca", "MSFT", 1, 1, 200.0, 200.0, 1.0, 1.0),
                                        ("ibkr", "AAPL", 2, 0, 600.0, 400.0, 2 / 3, 0.0)],
                 id="by_broker_symbol"),
    pytest.param((), [(3, 1, 800.0, 600.0, 0.75, 1 / 3)], id="overall"),
]  # fmt: skip


@pytest.mark.parametrize(("by", "expected"), FILL_RATE_CASES)
def test_fill_rates(by: tuple[str, ...], expected: list[tuple[Any, ...]]) -> None:
    out = obm.fill_rates(ORDERS, FILLS, by=by)
    cols = [*by, "orders", "filled_orders", "ordered_qty", "filled_qty", "fill_rate",
            "order_fill_rate"]  # fmt: skip
    for got, want in zip(out.select(cols).rows(), expected, strict=True):
        assert got == pytest.approx(want)


def test_execution_latency_with_acks() -> None:
    acks = pl.DataFrame({"order_id": ["o1", "o2"], "ts": [t(0.5), t(1.0)],
                         "market_data_ts": [t(-0.01), t(-0.02)]})  # fmt: skip
    out = obm.execution_latency(ORDERS, FILLS, acks=acks, by=())
    got = {r["stage"]: r for r in out.iter_rows(named=True)}
    assert list(got) == [
        "market_data_to_decision", "decision_to_ack", "ack_to_first_fill",
        "decision_to_first_fill", "first_to_last_fill", "decision_to_last_fill",
        "market_data_to_first_fill",
    ]  # fmt: skip
    # decision -> first fill: o1 1000 ms, o2 2000 ms: p50 = 1500, p95 = 1950, p99 = 1990
    d2f = got["decision_to_first_fill"]
    assert (d2f["orders"], d2f["p50_ms"], d2f["p95_ms"], d2f["p99_ms"]) == pytest.approx(
        (2, 1500.0, 1950.0, 1990.0)
    )
    assert got["first_to_last_fill"]["p50_ms"] == pytest.approx(2000.0)  # o1 4000, o2 0
    assert got["ack_to_first_fill"]["p50_ms"] == pytest.approx(750.0)  # 500 and 1000
    assert got["market_data_to_first_fill"]["p99_ms"] == pytest.approx(1010 + 0.99 * 1010)


def test_execution_latency_without_acks_by_strategy() -> None:
    out = obm.execution_latency(ORDERS, FILLS)
    assert set(out["stage"]) == {"decision_to_first_fill", "first_to_last_fill",
                                 "decision_to_last_fill"}  # fmt: skip
    s1 = out.filter(strategy="s1", stage="decision_to_last_fill")
    assert s1["orders"].item() == 1  # o3 has no fills
    assert s1["p50_ms"].item() == pytest.approx(5000.0)


def test_span_latency_and_order_timestamps() -> None:
    def span(trace: str, sid: str, service: str, start: float, end: float, order: str) -> dict:
        return {"trace_id": trace, "span_id": sid, "parent_span_id": None, "service": service,
                "name": "x", "start": t(start), "end": t(end), "status": "ok",
                "attributes": f'{{"order.id":"{order}"}}'}  # fmt: skip

    spans = pl.DataFrame(
        [
            span("a", "1", "market-data", 0.0, 0.1, "o1"),
            span("a", "2", "broker-gateway", 0.05, 0.3, "o1"),
            span("b", "3", "market-data", 1.0, 1.1, "o2"),
            span("b", "4", "broker-gateway", 1.2, 2.0, "o2"),
        ],
        schema_overrides={"parent_span_id": pl.String},
    )
    out = obm.span_latency(spans, start="market-data", end="broker-gateway")
    assert out.row(0) == pytest.approx((2, 650.0, 965.0, 993.0))  # 300 ms and 1000 ms
    ts = obm.order_timestamps_from_spans(spans)
    assert ts.rows() == [("o1", t(0.0), t(0.3)), ("o2", t(1.0), t(2.0))]


def test_execution_summary_hand_computed() -> None:
    out = obm.execution_summary(ORDERS, FILLS, QUOTES)
    assert out.select("strategy", "symbol", "venue").rows() == [
        ("s1", "AAPL", "XNAS"),
        ("s2", "MSFT", "XNYS"),
    ]
    s1 = out.row(0, named=True)
    want = {
        "orders": 2, "filled_orders": 0, "fills": 2, "ordered_qty": 600.0, "filled_qty": 400.0,
        "fill_rate": 2 / 3, "order_fill_rate": 0.0, "fill_notional": 40_050.0, "fees": 4.0,
        "slippage_bps": 12.5, "slippage_mid_bps": O1_MID_BPS, "execution_cost": 50.0,
        "opportunity_cost": 150.0, "implementation_shortfall": 204.0,
        "implementation_shortfall_bps": 204.0 / 60_050.0 * 1e4, "latency_p50_ms": 1000.0,
        "latency_p95_ms": 1000.0, "latency_p99_ms": 1000.0,
    }  # fmt: skip
    assert {k: s1[k] for k in want} == pytest.approx(want, rel=1e-12)
    s2 = out.row(1, named=True)
    assert (s2["implementation_shortfall"], s2["slippage_mid_bps"]) == pytest.approx((12.0, 10.0))


def test_execution_summary_lazy_in_lazy_out() -> None:
    eager = obm.execution_summary(ORDERS, FILLS, QUOTES)
    lazy = obm.execution_summary(ORDERS.lazy(), FILLS.lazy(), QUOTES.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(eager)


def test_inputs_are_not_mutated() -> None:
    before = (ORDERS.clone(), FILLS.clone(), QUOTES.clone())
    obm.execution_summary(ORDERS, FILLS, QUOTES)
    assert all(a.equals(b) for a, b in zip(before, (ORDERS, FILLS, QUOTES), strict=True))


# --------------------------------------------------------------------------- bad input


def _replace(frame: pl.DataFrame, key: str, **changes: Any) -> pl.DataFrame:
    """``frame`` with the row whose id is ``key`` changed (fill_id for fills, else order_id)."""
    id_col = "fill_id" if "fill_id" in frame.columns else "order_id"
    return frame.with_columns(
        pl.when(pl.col(id_col) == key).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
        for c, v in changes.items()
    )


BAD_INPUT = [
    pytest.param(ORDERS, pl.concat([FILLS, make_fills(
        {"fill_id": "f9", "order_id": "o9", "ts": t(3), "symbol": "AAPL", "side": "buy",
         "qty": 1.0, "px": 100.0})]), r"absent from orders: fill_id f9 \(order_id o9\)",
        id="fill_without_order"),
    pytest.param(ORDERS, _replace(FILLS, "f2", side="sell"),
                 r"fill side differs from the order's side: 1 order\(s\), order_id o1",
                 id="side_mismatch"),
    pytest.param(ORDERS, _replace(FILLS, "f3", symbol="AAPL"),
                 r"fill symbol differs.*order_id o2", id="symbol_mismatch"),
    pytest.param(ORDERS, _replace(FILLS, "f2", qty=250.0),
                 r"exceeds the order quantity \(overfill\): 1 order\(s\), order_id o1",
                 id="overfill"),
    pytest.param(ORDERS, _replace(FILLS, "f3", ts=t(-1)),
                 r"before the order's decision time.*order_id o2", id="fill_before_decision"),
    pytest.param(ORDERS, _replace(FILLS, "f1", side="hold"),
                 r"'side' not one of \['buy', 'sell'\].*f1", id="fill_side_not_buy_sell"),
    pytest.param(_replace(ORDERS, "o2", side="short"), FILLS,
                 r"'side' not one of.*o2", id="order_side_not_buy_sell"),
    pytest.param(ORDERS, _replace(FILLS, "f1", px=0.0), r"'px' not > 0.*f1",
                 id="zero_fill_price"),
    pytest.param(_replace(ORDERS, "o3", arrival_px=-1.0), FILLS,
                 r"'arrival_px' not > 0.*o3", id="negative_arrival_price"),
    pytest.param(_replace(ORDERS, "o1", qty=-5.0), FILLS, r"'qty' not > 0.*o1",
                 id="negative_order_qty"),
]  # fmt: skip


@pytest.mark.parametrize(("orders", "fills", "match"), BAD_INPUT)
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda o, f: obm.execution_summary(o, f, QUOTES), id="execution_summary"),
        pytest.param(lambda o, f: obm.fill_rates(o, f), id="fill_rates"),
        pytest.param(lambda o, f: obm.slippage(o, f), id="slippage"),
    ],
)
def test_bad_input_raises_schema_error_naming_ids(
    call: Any, orders: pl.DataFrame, fills: pl.DataFrame, match: str
) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        call(orders, fills)
    assert "Hint:" in str(info.value)


def test_many_offending_ids_are_capped_with_a_total() -> None:
    extra = make_fills(
        *(
            {"fill_id": f"x{i:02d}", "order_id": f"gone{i:02d}", "ts": t(3), "symbol": "AAPL",
             "side": "buy", "qty": 1.0, "px": 100.0}
            for i in range(25)
        )
    )  # fmt: skip
    with pytest.raises(SchemaError, match=r"25 fill\(s\).*x19 \.\.\. \(25 in total\)"):
        obm.validate_execution(ORDERS, pl.concat([FILLS, extra]))


def test_bad_quotes_rejected() -> None:
    quotes = QUOTES.with_columns(pl.when(pl.col("ts") == t(3)).then(99.0).otherwise("ask")
                                 .alias("ask"))  # fmt: skip
    with pytest.raises(SchemaError, match="ask not below bid"):
        obm.execution_summary(ORDERS, FILLS, quotes)


def test_acks_of_unknown_orders_rejected() -> None:
    acks = pl.DataFrame({"order_id": ["zz"], "ts": [t(1)]})
    with pytest.raises(SchemaError, match="acks of unknown order_id"):
        obm.execution_latency(ORDERS, FILLS, acks=acks)


# --------------------------------------------------------------------------- simulator


@pytest.fixture(scope="module")
def sim() -> Any:
    from obsbench.sim import SimConfig, simulate

    return simulate(SimConfig.small(days=2, seed=11))


def test_measured_slippage_matches_injected_model(sim: Any) -> None:
    """Arrival slippage minus the simulator's deterministic model is its N(0, noise) term.

    For market orders the simulator prices each fill at
    ``arrival_mid x (1 + s (h + Y sigma sqrt(q/V) + kappa sqrt(latency_ms) + eps) / 1e4)``.
    The residual of the measured slippage must have mean 0 within 4 standard errors and a
    standard deviation within 15% of ``noise_bps``.
    """
    model = sim.config.execution
    orders, quotes = sim["orders"], sim["quotes"]
    per_fill = obm.fill_slippage(orders, sim["fills"], quotes)
    half_spread = obm.mid_at(
        orders.select("order_id", "symbol", "ts"),
        quotes.with_columns(((pl.col("ask") - pl.col("bid")) / (2 * pl.col("mid")) * 1e4)
                            .alias("mid")),
        name="h",
    )  # fmt: skip
    market = orders.filter(pl.col("limit_px").is_null()).select("order_id")
    residual = (
        per_fill.join(market, on="order_id")
        .join(half_spread.select("order_id", "h"), on="order_id")
        .join(sim.symbols, on="symbol")
        .select(
            pl.col("slippage_bps")
            - pl.col("h")
            - model.impact_y * pl.col("sigma_bps") * (pl.col("qty") / pl.col("adv")).sqrt()
            - model.latency_kappa * obm.latency_ms("order_ts", "ts").sqrt()
        )
        .to_series()
    )
    n = residual.len()
    assert n > 300
    assert abs(residual.mean()) < 4 * model.noise_bps / math.sqrt(n)  # type: ignore[operator]
    assert residual.std() == pytest.approx(model.noise_bps, rel=0.15)


def test_summary_on_simulator_is_consistent(sim: Any) -> None:
    orders, fills, quotes = sim["orders"], sim["fills"], sim["quotes"]
    summary = obm.execution_summary(orders, fills, quotes)
    assert summary["orders"].sum() == orders.height
    assert summary["fills"].sum() == fills.height
    assert summary["filled_qty"].sum() == pytest.approx(fills["qty"].sum())
    assert summary["fees"].sum() == pytest.approx(fills["fee"].sum())
    # the group's quantity-weighted slippage equals the pooled per-fill slippage
    pooled = obm.slippage(orders, fills, by=("strategy", "symbol", "order_venue"))
    joined = summary.join(
        pooled.rename({"order_venue": "venue", "slippage_bps": "pooled"}),
        on=["strategy", "symbol", "venue"],
    )
    assert joined.height == summary.filter(pl.col("fills") > 0).height
    assert (joined["slippage_bps"] - joined["pooled"]).abs().max() < 1e-9  # type: ignore[operator]
    # every group's implementation shortfall decomposes into its parts
    parts = summary["execution_cost"] + summary["opportunity_cost"] + summary["fees"]
    assert (summary["implementation_shortfall"] - parts).abs().max() < 1e-6  # type: ignore[operator]


# --------------------------------------------------------------------------- fast paths


def _random_book(seed: int, n_orders: int = 300) -> tuple[pl.DataFrame, ...]:
    """Orders, fills and quotes in no particular order, with unquoted times and symbols."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syms = ["AAPL", "MSFT", "NVDA", "ZZZZ"]  # ZZZZ has no quotes
    q_sym = rng.choice(syms[:3], 600)
    q_ts = rng.integers(0, 3_600_000_000, 600)
    mid = rng.uniform(50, 150, 600)
    quotes = pl.DataFrame(
        {"symbol": q_sym, "ts": [T0 + timedelta(microseconds=int(u)) for u in q_ts],
         "bid": mid - 0.01, "ask": mid + 0.01, "mid": mid}
    )  # fmt: skip
    o_ts = rng.integers(-60_000_000, 3_600_000_000, n_orders)  # some before any quote
    order_ids = [f"o{i:04d}" for i in rng.permutation(n_orders)]  # ids out of order
    orders = make_orders(
        *(
            {"order_id": order_ids[i], "ts": T0 + timedelta(microseconds=int(o_ts[i])),
             "strategy": f"s{rng.integers(0, 3)}", "symbol": syms[rng.integers(0, 4)],
             "side": ["buy", "sell"][rng.integers(0, 2)], "qty": 1_000.0, "arrival_px": 100.0,
             "venue": ["XNAS", "BATS"][rng.integers(0, 2)]}
            for i in range(n_orders)
        )
    )  # fmt: skip
    filled = [orders.row(int(i), named=True) for i in rng.permutation(n_orders)[: n_orders // 2]]
    rows = [
        {"fill_id": f"f{o['order_id']}-{k}", "order_id": o["order_id"],
         "ts": o["ts"] + timedelta(microseconds=int(rng.integers(0, 5_000_000))),
         "symbol": o["symbol"], "side": o["side"], "qty": 100.0,
         "px": float(rng.uniform(99, 101)), "fee": 0.01}
        for o in filled
        for k in range(int(rng.integers(1, 4)))
    ]  # fmt: skip
    fills = make_fills(*(rows[i] for i in rng.permutation(len(rows))))
    return orders, fills, quotes


def _reference_summary(orders: pl.DataFrame, fills: pl.DataFrame, quotes: pl.DataFrame) -> Any:
    """The summary written plainly: string joins, join_asof, one group_by (no fast path)."""
    q = quotes.sort("ts")
    mids = (
        fills.with_row_index("_r")
        .sort("ts")
        .join_asof(q.select("symbol", "ts", "mid"), on="ts", by="symbol", check_sortedness=False)
        .sort("_r")
        .with_columns(obm.slippage_bps("side", "mid", "px"))
        .group_by("order_id")
        .agg(obm.weighted_mean("slippage_bps", "qty").alias("slippage_mid_bps"))
    )
    last = q.group_by("symbol").agg(pl.col("mid").last().alias("end_px"))
    per_order = obm.order_executions(orders, fills).join(last, on="symbol", how="left")
    per_order = per_order.with_columns(obm.opportunity_cost(), obm.implementation_shortfall()).join(
        mids, on="order_id", how="left"
    )
    return (
        per_order.group_by("strategy", "symbol", "venue")
        .agg(
            pl.len().alias("orders"),
            pl.col("n_fills").sum().alias("fills"),
            obm.weighted_mean("slippage_bps", "filled_qty").alias("slippage_bps"),
            obm.weighted_mean("slippage_mid_bps", "filled_qty").alias("slippage_mid_bps"),
            pl.col("implementation_shortfall").sum(),
            *(
                obm.latency_percentile(obm.latency_ms("ts", "first_fill_ts"), q=x).alias(
                    f"latency_p{round(x * 100)}_ms"
                )
                for x in (0.5, 0.95, 0.99)
            ),
        )
        .sort("strategy", "symbol", "venue")
    )


def _assert_frames_close(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    keys = ["strategy", "symbol", "venue"]
    assert got.select(keys).equals(want.select(keys))
    for col in got.columns[len(keys) :]:
        assert_close(got[col].to_list(), want[col].to_list(), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summary_matches_a_plain_implementation(seed: int) -> None:
    orders, fills, quotes = _random_book(seed)
    want = _reference_summary(orders, fills, quotes)
    got = obm.execution_summary(orders, fills, quotes).select(want.columns)
    _assert_frames_close(got, want)
    # quotes time-major, symbol-major or shuffled: the same mids (to rounding: polars 2
    # sums a group's rows in no fixed order, so two runs may differ in the last bits)
    for q in (quotes.sort("ts"), quotes.sort("symbol", "ts"), quotes.sample(fraction=1.0)):
        _assert_frames_close(obm.execution_summary(orders, fills, q).select(want.columns), got)


def test_hash_collisions_fall_back_to_exact_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from obsbench.metrics import execution

    orders, fills, quotes = _random_book(3)
    want = obm.execution_summary(orders, fills, quotes)
    # every key hashes alike: every shortcut must notice and use the columns themselves
    monkeypatch.setattr(
        execution, "_key_hash", lambda cols: (pl.col(cols[0]).hash() * 0 + 7).alias("_h")
    )
    _assert_frames_close(obm.execution_summary(orders, fills, quotes), want)
    with pytest.raises(SchemaError, match="absent from orders"):
        obm.execution_summary(orders.slice(1), fills, quotes)


def test_quote_keys_overflowing_int64_use_join_asof(monkeypatch: pytest.MonkeyPatch) -> None:
    from obsbench.metrics import execution

    orders, fills, quotes = _random_book(4)
    want = obm.execution_summary(orders, fills, quotes)
    monkeypatch.setattr(execution, "_KEY_LIMIT", 1)
    _assert_frames_close(obm.execution_summary(orders, fills, quotes), want)


def test_mid_at_eager_equals_lazy() -> None:
    orders, _, quotes = _random_book(5)
    frame = orders.select("order_id", "symbol", "ts")
    eager = obm.mid_at(frame, quotes)
    lazy = obm.mid_at(frame.lazy(), quotes).collect()
    assert eager.select(frame.columns).equals(frame)  # row order kept
    assert eager.sort("order_id").equals(lazy.sort("order_id"))
    assert eager["mid"].null_count() > 0  # unquoted symbol, and times before any quote
    assert obm.mid_at(frame, quotes.clear())["mid"].null_count() == frame.height


def test_execution_summary_without_fills_or_quotes() -> None:
    empty = obm.execution_summary(ORDERS, FILLS.clear(), QUOTES.clear())
    assert empty["fills"].to_list() == [0, 0]
    assert empty["latency_p50_ms"].is_nan().all()
    assert obm.execution_summary(ORDERS.clear(), FILLS.clear(), QUOTES).height == 0
