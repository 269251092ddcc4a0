"""Risk: positions, exposure, limit utilisation, stress scenarios (hand-computed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import obsbench.metrics as obm
from obsbench.errors import ConfigError, SchemaError

# a: long 100 JPM @ 200 (20_000), short 50 AAPL @ 100 (-5_000)
# b: long 10 AAPL @ 100 (1_000), short 30 XOM @ 50 (-1_500)
POSITIONS = pl.DataFrame(
    {
        "strategy": ["a", "a", "b", "b"],
        "symbol": ["JPM", "AAPL", "AAPL", "XOM"],
        "qty": [100.0, -50.0, 10.0, -30.0],
    }
)
PRICES = pl.DataFrame({"symbol": ["AAPL", "JPM", "XOM"], "px": [100.0, 200.0, 50.0]})

EXPOSURE_CASES = [
    pytest.param(("strategy",), [("a", 2, 20_000.0, 5_000.0, 25_000.0, 15_000.0),
                                 ("b", 2, 1_000.0, 1_500.0, 2_500.0, -500.0)], id="by_strategy"),
    pytest.param(("symbol",), [("AAPL", 2, 1_000.0, 5_000.0, 6_000.0, -4_000.0),
                               ("JPM", 1, 20_000.0, 0.0, 20_000.0, 20_000.0),
                               ("XOM", 1, 0.0, 1_500.0, 1_500.0, -1_500.0)], id="by_symbol"),
    pytest.param(("sector",), [("Energy", 1, 0.0, 1_500.0, 1_500.0, -1_500.0),
                               ("Financials", 1, 20_000.0, 0.0, 20_000.0, 20_000.0),
                               ("Information Technology", 2, 1_000.0, 5_000.0, 6_000.0,
                                -4_000.0)], id="by_sector_shipped_map"),
    pytest.param(("strategy", "sector"), [
        ("a", "Financials", 1, 20_000.0, 0.0, 20_000.0, 20_000.0),
        ("a", "Information Technology", 1, 0.0, 5_000.0, 5_000.0, -5_000.0),
        ("b", "Energy", 1, 0.0, 1_500.0, 1_500.0, -1_500.0),
        ("b", "Information Technology", 1, 1_000.0, 0.0, 1_000.0, 1_000.0)],
        id="by_strategy_sector"),
    pytest.param((), [(4, 21_000.0, 6_500.0, 27_500.0, 14_500.0)], id="whole_book"),
]  # fmt: skip


@pytest.mark.parametrize(("by", "expected"), EXPOSURE_CASES)
def test_exposure(by: tuple[str, ...], expected: list[tuple[Any, ...]]) -> None:
    assert obm.exposure(POSITIONS, PRICES, by=by).rows() == expected


def test_exposure_expressions_series() -> None:
    n = pl.Series([20_000.0, -5_000.0])
    assert (obm.long_exposure(n), obm.short_exposure(n)) == (20_000.0, 5_000.0)
    assert (obm.gross_exposure(n), obm.net_exposure(n)) == (25_000.0, 15_000.0)


def test_exposure_with_custom_sectors() -> None:
    sectors = {"JPM": "banks", "AAPL": "tech", "XOM": "oil"}
    out = obm.exposure(POSITIONS, PRICES, by=("sector",), sectors=sectors)
    assert out["sector"].to_list() == ["banks", "oil", "tech"]


LIMITS = {
    "limits": [
        {"scope": "firm", "name": "*", "metric": "gross", "limit": 25_000.0},
        {"scope": "strategy", "name": "*", "metric": "gross", "limit": 10_000.0},
        {"scope": "strategy", "name": "a", "metric": "gross", "limit": 50_000.0},
        {"scope": "sector", "name": "Information Technology", "metric": "net", "limit": 2_000.0},
        {"scope": "symbol", "name": "XOM", "metric": "short", "limit": 1_500.0},
    ]
}


def test_limit_utilisation_hand_computed() -> None:
    out = obm.limit_utilisation(POSITIONS, PRICES, LIMITS)
    assert out.rows() == [
        # IT net -4_000 vs 2_000: utilisation 2.0 (absolute value), breach
        ("sector", "Information Technology", "net", -4_000.0, 2_000.0,
         "Information Technology", 2.0, True),
        ("firm", "*", "gross", 27_500.0, 25_000.0, "*", 1.1, True),
        # exactly at the limit is not a breach
        ("symbol", "XOM", "short", 1_500.0, 1_500.0, "XOM", 1.0, False),
        ("strategy", "a", "gross", 25_000.0, 50_000.0, "a", 0.5, False),  # own limit wins
        ("strategy", "b", "gross", 2_500.0, 10_000.0, "*", 0.25, False),  # wildcard
    ]  # fmt: skip


def test_limits_from_shipped_example_yaml() -> None:
    from importlib import resources

    path = resources.files("obsbench").joinpath("data", "limits.example.yaml")
    limits = obm.load_limits(str(path))
    assert limits.height == 7
    out = obm.limit_utilisation(POSITIONS, PRICES, str(path))
    assert not out["breach"].any()
    assert set(out["scope"]) == {"firm", "strategy", "sector", "symbol"}


def test_limits_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("limits:\n  - {scope: strategy, name: b, metric: net, limit: 400}\n")
    out = obm.limit_utilisation(POSITIONS, PRICES, path)
    assert out.select("name", "value", "utilisation", "breach").rows() == [
        ("b", -500.0, 1.25, True)
    ]


BAD_LIMITS = [
    pytest.param({"limits": [{"scope": "desk", "name": "x", "metric": "gross", "limit": 1}]},
                 SchemaError, "scope not one of", id="unknown_scope"),
    pytest.param({"limits": [{"scope": "firm", "name": "*", "metric": "var", "limit": 1}]},
                 SchemaError, "metric not one of", id="unknown_metric"),
    pytest.param({"limits": [{"scope": "firm", "name": "*", "metric": "net", "limit": 0}]},
                 SchemaError, r"limit missing or not > 0: row 0", id="zero_limit"),
    pytest.param({"limits": [{"scope": "firm", "name": "*", "metric": "net", "limit": 5},
                             {"scope": "firm", "name": "*", "metric": "net", "limit": 6}]},
                 SchemaError, "duplicate", id="duplicate"),
    pytest.param({"caps": []}, ConfigError, "top-level 'limits'", id="no_limits_key"),
    pytest.param("/nonexistent/limits.yaml", ConfigError, "cannot read", id="missing_file"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "error", "match"), BAD_LIMITS)
def test_bad_limits(source: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        obm.load_limits(source)


# --------------------------------------------------------------------------- stress


def test_shipped_scenarios_hand_computed() -> None:
    out = obm.stress_test(POSITIONS, PRICES)
    assert out.columns == ["scenario", "strategy", "net", "pnl"]
    expected = {
        # a: JPM Financials -16% of 20_000 = -3_200; AAPL (IT: no sector shock) all -10%
        #    of -5_000 = +500; b: AAPL -10% of 1_000 = -100, XOM Energy -14% of -1_500 = +210
        ("equity_crash", "a"): -2_700.0,
        ("equity_crash", "b"): 110.0,
        # a: JPM +3% -> 600, AAPL -5% of -5_000 -> 250; b: AAPL -50, XOM +2% of -1_500 -> -30
        ("rates_shock", "a"): 850.0,
        ("rates_shock", "b"): -80.0,
        # a: JPM unshocked, AAPL -8% of -5_000 -> 400; b: AAPL -80, XOM +2% -> -30
        ("tech_selloff", "a"): 400.0,
        ("tech_selloff", "b"): -110.0,
    }
    got = {(s, k): p for s, k, _, p in out.rows()}
    assert got == pytest.approx(expected)


def test_symbol_shock_overrides_sector_and_all() -> None:
    scenarios = {
        "scenarios": {
            "s": {"shocks": {"all": -0.5, "sector": {"Information Technology": -0.2},
                             "symbol": {"AAPL": 0.1}}}
        }
    }  # fmt: skip
    out = obm.stress_test(POSITIONS, PRICES, scenarios, by=("symbol",))
    got = dict(zip(out["symbol"], out["pnl"], strict=True))
    assert got == pytest.approx({"AAPL": -400.0, "JPM": -10_000.0, "XOM": 750.0})


def test_scenarios_frame_and_yaml(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"scenario": ["up"], "scope": ["symbol"], "name": ["JPM"], "shock": [0.01]}
    )
    assert obm.stress_test(POSITIONS, PRICES, frame, by=()).rows() == [("up", 14_500.0, 200.0)]
    path = tmp_path / "s.yaml"
    path.write_text("scenarios:\n  up:\n    shocks:\n      symbol: {JPM: 0.01}\n")
    assert obm.stress_test(POSITIONS, PRICES, path, by=()).rows() == [("up", 14_500.0, 200.0)]


BAD_SCENARIOS = [
    pytest.param({"scenarios": {"x": {"shocks": {"all": -1.5}}}}, "shock not a number > -1",
                 id="shock_below_minus_one"),
    pytest.param({"scenarios": {"x": {"shocks": {"all": "big"}}}}, "shock not a number",
                 id="shock_not_number"),
    pytest.param({"scenarios": {"x": {"shocks": {"desk": {"a": 0.1}}}}}, "unknown shock scope",
                 id="unknown_scope"),
    pytest.param({"scenarios": {"x": {"moves": {}}}}, "no 'shocks' mapping", id="no_shocks"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "match"), BAD_SCENARIOS)
def test_bad_scenarios(source: Any, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        obm.load_scenarios(source)


# --------------------------------------------------------------------------- no silent drops


def test_unpriced_and_unmapped_symbols_are_errors() -> None:
    with pytest.raises(SchemaError, match=r"no price for position symbol.*XOM"):
        obm.exposure(POSITIONS, PRICES.filter(pl.col("symbol") != "XOM"))
    odd = pl.DataFrame({"strategy": ["a"], "symbol": ["ZZZ"], "qty": [1.0]})
    with pytest.raises(SchemaError, match=r"no sector for symbol.*ZZZ"):
        obm.stress_test(odd, pl.DataFrame({"symbol": ["ZZZ"], "px": [1.0]}))
    with pytest.raises(SchemaError, match=r"prices not > 0.*JPM"):
        obm.exposure(POSITIONS, PRICES.with_columns(pl.col("px").replace(200.0, 0.0)))


# --------------------------------------------------------------------------- positions


def test_positions_and_latest_marks_from_frames() -> None:
    t = [datetime(2024, 1, 2, 14, m, tzinfo=UTC) for m in range(4)]
    orders = pl.DataFrame(
        {"order_id": ["o1", "o2"], "ts": [t[0], t[0]], "strategy": ["a", "a"],
         "symbol": ["JPM", "JPM"], "side": ["buy", "sell"], "qty": [100.0, 60.0],
         "arrival_px": [200.0, 200.0], "limit_px": [None, None], "venue": ["X", "X"],
         "broker": ["b", "b"], "status": ["filled", "filled"]},
        schema_overrides={"limit_px": pl.Float64},
    )  # fmt: skip
    fills = pl.DataFrame(
        {"fill_id": ["f1", "f2", "f3"], "order_id": ["o1", "o2", "o2"], "ts": t[1:],
         "symbol": ["JPM"] * 3, "side": ["buy", "sell", "sell"], "qty": [100.0, 20.0, 40.0],
         "px": [200.0] * 3, "fee": [0.0] * 3, "venue": ["X"] * 3}
    )  # fmt: skip
    assert obm.positions(orders, fills).rows() == [("a", "JPM", 40.0)]
    assert obm.positions(orders, fills, at=t[2]).rows() == [("a", "JPM", 80.0)]
    initial = pl.DataFrame({"strategy": ["b"], "symbol": ["XOM"], "qty": [5.0]})
    assert obm.positions(orders, fills, initial_positions=initial).rows() == [
        ("a", "JPM", 40.0),
        ("b", "XOM", 5.0),
    ]
    quotes = pl.DataFrame(
        {"symbol": ["JPM", "JPM"], "ts": [t[0], t[2]], "bid": [199.0, 201.0],
         "ask": [201.0, 203.0], "mid": [200.0, 202.0]}
    )  # fmt: skip
    assert obm.latest_marks(quotes).rows() == [("JPM", 202.0)]
    assert obm.latest_marks(quotes, at=t[1]).rows() == [("JPM", 200.0)]


def test_risk_on_simulator_book() -> None:
    from obsbench.sim import SimConfig, simulate

    sim = simulate(SimConfig.small(days=1, seed=3))
    mid_session = datetime(2024, 1, 1, 14, 30, tzinfo=UTC)
    book = obm.positions(sim["orders"], sim["fills"], at=mid_session)
    prices = obm.latest_marks(sim["quotes"], at=mid_session)
    exposure = obm.exposure(book, prices, by=("strategy",))
    stress = obm.stress_test(book, prices)
    # every scenario's P&L is bounded by the largest shock times the gross exposure
    gross = dict(zip(exposure["strategy"], exposure["gross"], strict=True))
    worst = obm.load_scenarios()["shock"].abs().max()
    for _, strategy, _, pnl in stress.rows():
        assert abs(pnl) <= worst * gross[strategy] + 1e-6
    assert stress.height == 3 * exposure.height


def test_whole_book_stress_lists_every_scenario_without_positions() -> None:
    """At a day's start nothing is held: each scenario still has its row, at 0."""
    flat = pl.DataFrame(schema={"strategy": pl.String, "symbol": pl.String, "qty": pl.Float64})
    prices = pl.DataFrame({"symbol": ["AAPL"], "px": [100.0]})
    book = obm.stress_test(flat, prices, by=())
    assert book["scenario"].to_list() == sorted(obm.load_scenarios(None)["scenario"].unique())
    assert book["pnl"].to_list() == [0.0] * book.height
    assert obm.stress_test(flat, prices).height == 0  # no strategy rows
