"""Tests of obsbench.metrics.returns, read as tables of named cases.

- hand-computed values on tiny series (the arithmetic is written out in each case);
- differential tests against empyrical-reloaded on seeded and degenerate series, run
  through every input kind (eager select, lazy select, Series scalar, group_by().agg());
- invariants (hypothesis), the documented traps, frame-level functions and errors.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import empyrical as ep
import numpy as np
import polars as pl
import pytest
from empyrical.stats import drawdown_series, roll_annual_volatility, roll_sharpe_ratio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import obsbench.metrics as m
from obsbench.errors import ColumnNotFound, ObsbenchError, SchemaError
from obsbench.metrics import InvalidArgumentType, InvalidParameter

NAN = float("nan")
REL, ABS = 1e-10, 1e-14  # ABS only absorbs rounding residue of quantities that are exactly 0


def same(actual: float, expected: float, *, rel: float = REL, abs_: float = ABS) -> bool:
    """Equal as floats: NaN == NaN, inf == inf of the same sign, else close."""
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return actual == expected
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_)


def assert_same(actual: float, expected: float, **tol: float) -> None:
    assert isinstance(actual, float), type(actual)
    assert same(actual, float(expected), **tol), f"obsbench {actual!r} != reference {expected!r}"


# ----------------------------------------------------------------------------- data

data: dict[str, list[float | None]] = {
    "two_up": [0.01, 0.03],
    "mixed4": [0.02, -0.02, 0.01, -0.04],
    "path4": [-0.05, 0.1, -0.2, 0.05],
    "first_day_loss": [-0.05, 0.02, 0.03],
    "five": [-0.03, -0.01, 0.0, 0.01, 0.02],
    "tails": [-0.02, -0.01, 0.0, 0.01, 0.04],
    "omega4": [0.02, -0.01, 0.03, -0.02],
    "calmar4": [0.1, -0.1, 0.05, 0.02],
    "up_down": [0.1, -0.1],
    "with_nan": [0.1, NAN, -0.1],
    "with_null": [0.1, None, -0.1],
    "flat_then_gain": [0.21, NAN],
    "constant": [0.001] * 5,
    "zeros": [0.0] * 5,
    "no_downside": [0.01, 0.02, 0.03],
    "one_row": [0.01],
    "empty": [],
}


def series(name: str) -> pl.Series:
    return pl.Series("ret", data[name], dtype=pl.Float64)


_z20 = NormalDist().inv_cdf(0.2)
_five_mean = -0.002
_five_std = math.sqrt((0.028**2 + 0.008**2 + 0.002**2 + 0.012**2 + 0.022**2) / 4)

HAND = [
    pytest.param(m.total_return, "up_down", {}, 1.1 * 0.9 - 1, id="total_return-compounds"),
    pytest.param(m.total_return, "with_nan", {}, 1.1 * 0.9 - 1, id="total_return-nan_skipped"),
    pytest.param(m.total_return, "with_null", {}, 1.1 * 0.9 - 1, id="total_return-null_skipped"),
    pytest.param(m.total_return, "empty", {}, NAN, id="total_return-empty"),
    pytest.param(
        m.annual_return,
        "flat_then_gain",
        {"periods_per_year": 1},
        1.21**0.5 - 1,
        id="annual_return-missing_period_counts_in_years",
    ),
    pytest.param(
        m.annual_return,
        "calmar4",
        {"periods_per_year": 4},
        1.1 * 0.9 * 1.05 * 1.02 - 1,
        id="annual_return-one_year",
    ),
    pytest.param(
        m.annual_volatility,
        "two_up",
        {"periods_per_year": 4},
        math.sqrt(0.0002) * 2,
        id="annual_volatility-ddof1",
    ),
    pytest.param(m.annual_volatility, "constant", {}, 0.0, id="annual_volatility-constant"),
    pytest.param(m.annual_volatility, "one_row", {}, NAN, id="annual_volatility-one_row"),
    pytest.param(
        m.sharpe_ratio,
        "two_up",
        {"periods_per_year": 1},
        0.02 / math.sqrt(0.0002),
        id="sharpe-mean_over_std",
    ),
    pytest.param(
        m.sharpe_ratio,
        "two_up",
        {"risk_free": 0.01, "periods_per_year": 1},
        0.01 / math.sqrt(0.0002),
        id="sharpe-risk_free_per_period",
    ),
    pytest.param(m.sharpe_ratio, "constant", {}, math.inf, id="sharpe-constant_is_inf"),
    pytest.param(m.sharpe_ratio, "zeros", {}, NAN, id="sharpe-zeros_is_nan"),
    pytest.param(m.sharpe_ratio, "one_row", {}, NAN, id="sharpe-one_row"),
    pytest.param(
        m.downside_risk,
        "mixed4",
        {"periods_per_year": 1},
        math.sqrt((0.02**2 + 0.04**2) / 4),
        id="downside_risk-over_all_periods",
    ),
    pytest.param(m.downside_risk, "no_downside", {}, 0.0, id="downside_risk-no_downside"),
    pytest.param(
        m.sortino_ratio,
        "mixed4",
        {"periods_per_year": 1},
        -0.0075 / math.sqrt((0.02**2 + 0.04**2) / 4),
        id="sortino-hand",
    ),
    pytest.param(m.sortino_ratio, "no_downside", {}, math.inf, id="sortino-no_downside_is_inf"),
    pytest.param(m.max_drawdown, "path4", {}, 0.836 / 1.045 - 1, id="max_drawdown-peak_to_trough"),
    pytest.param(m.max_drawdown, "first_day_loss", {}, -0.05, id="max_drawdown-first_day_counts"),
    pytest.param(m.max_drawdown, "no_downside", {}, 0.0, id="max_drawdown-no_loss"),
    pytest.param(m.max_drawdown, "empty", {}, NAN, id="max_drawdown-empty"),
    pytest.param(
        m.calmar_ratio,
        "calmar4",
        {"periods_per_year": 4},
        (1.1 * 0.9 * 1.05 * 1.02 - 1) / 0.1,
        id="calmar-hand",
    ),
    pytest.param(m.calmar_ratio, "no_downside", {}, NAN, id="calmar-no_drawdown_is_nan"),
    pytest.param(
        m.value_at_risk, "five", {"level": 0.8}, -0.03 + 0.8 * 0.02, id="var-historical_linear"
    ),
    pytest.param(
        m.value_at_risk,
        "five",
        {"level": 0.8, "method": "gaussian"},
        _five_mean + _z20 * _five_std,
        id="var-gaussian",
    ),
    pytest.param(m.value_at_risk, "constant", {"method": "gaussian"}, 0.001, id="var-gauss_const"),
    pytest.param(
        m.value_at_risk, "constant", {"method": "cornish_fisher"}, 0.001, id="var-cf_const"
    ),
    pytest.param(m.value_at_risk, "empty", {}, NAN, id="var-empty"),
    pytest.param(
        m.conditional_value_at_risk,
        "five",
        {"level": 0.5},
        (-0.03 - 0.01 + 0.0) / 3,
        id="cvar-k_plus_one_smallest",
    ),
    pytest.param(m.conditional_value_at_risk, "five", {}, -0.03, id="cvar-worst_only"),
    pytest.param(m.omega_ratio, "omega4", {}, 0.05 / 0.03, id="omega-hand"),
    pytest.param(
        m.omega_ratio,
        "omega4",
        {"threshold": 0.01},
        (0.01 + 0.02) / (0.02 + 0.03),
        id="omega-threshold",
    ),
    pytest.param(m.omega_ratio, "no_downside", {}, NAN, id="omega-no_losses_is_nan"),
    pytest.param(
        m.tail_ratio, "tails", {}, (0.01 + 0.8 * 0.03) / (0.02 - 0.2 * 0.01), id="tail_ratio-hand"
    ),
    pytest.param(m.stability_of_timeseries, "constant", {}, 1.0, id="stability-steady_growth"),
    pytest.param(m.stability_of_timeseries, "zeros", {}, NAN, id="stability-flat_is_nan"),
]


@pytest.mark.parametrize(("fn", "case", "kwargs", "expected"), HAND)
def test_hand_computed(fn: Callable[..., float], case: str, kwargs: dict, expected: float) -> None:
    assert_same(fn(series(case), **kwargs), expected, rel=1e-12)


BENCH_HAND = [
    pytest.param(m.beta, {}, 2.0, id="beta-twice_the_benchmark"),
    pytest.param(m.beta, {"risk_free": 0.003}, 2.0, id="beta-risk_free_invariant"),
    pytest.param(m.alpha, {"periods_per_year": 1}, 0.001, id="alpha-one_period_per_year"),
    pytest.param(m.alpha, {"periods_per_year": 12}, 1.001**12 - 1, id="alpha-compounded"),
]


@pytest.mark.parametrize(("fn", "kwargs", "expected"), BENCH_HAND)
def test_hand_computed_benchmark(fn: Callable[..., float], kwargs: dict, expected: float) -> None:
    bench = pl.Series([0.01, -0.01, 0.02, 0.005])
    ret = 2 * bench + 0.001
    assert_same(fn(ret, bench, **kwargs), expected, rel=1e-9)


# ----------------------------------------------------------- differential vs empyrical


def _seeded_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240603)
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def pair(ret: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bench = rng.normal(0.0003, 0.01, ret.size)
        return ret + 0.6 * bench, bench

    for i in range(4):
        cases[f"normal_{i}"] = pair(rng.normal(0.0005, 0.012, int(rng.integers(30, 700))))
    for i in range(4):
        n = int(rng.integers(30, 700))
        cases[f"student_t3_{i}"] = pair(rng.standard_t(3, n) * 0.01 + 0.0002)
    for i in range(3):
        ret, bench = pair(rng.normal(0.0, 0.015, int(rng.integers(30, 400))))
        ret[rng.random(ret.size) < 0.1] = np.nan
        bench[rng.random(bench.size) < 0.05] = np.nan
        cases[f"with_nans_{i}"] = (ret, bench)
    degenerate = {
        "empty": [],
        "all_nan": [NAN] * 4,
        "one_row": [-0.02],
        "two_rows": [0.01, -0.03],
        "constant": [0.002] * 9,
        "zeros": [0.0] * 6,
        "no_downside": [0.01, 0.0, 0.02, 0.005],
        "one_valid_among_nan": [NAN, -0.01, NAN],
        "loss_on_day_one": [-0.1, 0.01, 0.02, 0.01],
    }
    for name, values in degenerate.items():
        ret = np.array(values, dtype=float)
        cases[name] = (ret, np.linspace(-0.01, 0.02, ret.size))
    return cases


CASES = _seeded_cases()


def _present(a: np.ndarray) -> np.ndarray:
    return a[~np.isnan(a)]


# metric id -> (obsbench function, kwargs, empyrical reference on (ret, benchmark) arrays)
REFERENCES: dict[str, tuple[Callable[..., float], dict, Callable[..., float]]] = {
    "total_return": (m.total_return, {}, lambda r, b: ep.cum_returns_final(r)),
    "annual_return": (m.annual_return, {}, lambda r, b: ep.annual_return(r)),
    "annual_return_monthly": (
        m.annual_return,
        {"periods_per_year": 12},
        lambda r, b: ep.annual_return(r, "monthly"),
    ),
    "annual_volatility": (m.annual_volatility, {}, lambda r, b: ep.annual_volatility(r)),
    "sharpe": (m.sharpe_ratio, {}, lambda r, b: ep.sharpe_ratio(r)),
    "sharpe_rf": (
        m.sharpe_ratio,
        {"risk_free": 1e-4, "periods_per_year": 52},
        lambda r, b: ep.sharpe_ratio(r, risk_free=1e-4, annualization=52),
    ),
    "sortino": (m.sortino_ratio, {}, lambda r, b: ep.sortino_ratio(r)),
    "sortino_required": (
        m.sortino_ratio,
        {"required_return": 2e-4},
        lambda r, b: ep.sortino_ratio(r, required_return=2e-4),
    ),
    "downside_risk": (
        m.downside_risk,
        {"required_return": 1e-4},
        lambda r, b: ep.downside_risk(r, required_return=1e-4),
    ),
    "max_drawdown": (m.max_drawdown, {}, lambda r, b: ep.max_drawdown(r)),
    "calmar": (m.calmar_ratio, {}, lambda r, b: ep.calmar_ratio(r)),
    # empyrical's value_at_risk is not nan-aware (np.percentile): compare on present returns.
    "var_95": (m.value_at_risk, {}, lambda r, b: ep.value_at_risk(_present(r), cutoff=1 - 0.95)),
    "var_99": (
        m.value_at_risk,
        {"level": 0.99},
        lambda r, b: ep.value_at_risk(_present(r), cutoff=1 - 0.99),
    ),
    "cvar_95": (
        m.conditional_value_at_risk,
        {},
        lambda r, b: ep.conditional_value_at_risk(r, 1 - 0.95),
    ),
    "cvar_90": (
        m.conditional_value_at_risk,
        {"level": 0.9},
        lambda r, b: ep.conditional_value_at_risk(r, 1 - 0.9),
    ),
    "omega": (
        m.omega_ratio,
        {"threshold": 5e-4},
        lambda r, b: ep.omega_ratio(r, required_return=5e-4, annualization=1),
    ),
    "tail_ratio": (m.tail_ratio, {}, lambda r, b: ep.tail_ratio(r)),
    "stability": (m.stability_of_timeseries, {}, lambda r, b: ep.stability_of_timeseries(r)),
    "beta": (m.beta, {}, lambda r, b: ep.beta(r, b)),
    "alpha": (m.alpha, {}, lambda r, b: ep.alpha(r, b)),
    "alpha_rf": (
        m.alpha,
        {"risk_free": 1e-4, "periods_per_year": 12},
        lambda r, b: ep.alpha(r, b, risk_free=1e-4, annualization=12),
    ),
}
BENCHMARK_METRICS = {m.alpha, m.beta}


def reference(metric_id: str, ret: np.ndarray, bench: np.ndarray) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # empyrical warns on empty/all-NaN slices
        return float(REFERENCES[metric_id][2](ret.copy(), bench.copy()))


Evaluate = Callable[..., float]


def _call_args(fn: Callable[..., object], ret: object, bench: object) -> tuple[object, ...]:
    return (ret, bench) if fn in BENCHMARK_METRICS else (ret,)


def _eval_select(fn: Callable, ret: np.ndarray, bench: np.ndarray, lazy: bool, **kw) -> float:
    frame = pl.DataFrame({"r": ret, "b": bench}, schema={"r": pl.Float64, "b": pl.Float64})
    source = frame.lazy() if lazy else frame
    out = source.select(fn(*_call_args(fn, "r", "b"), **kw).alias("x"))
    return (out.collect() if lazy else out).item()


def _eval_series(fn: Callable, ret: np.ndarray, bench: np.ndarray, **kw) -> float:
    args = _call_args(fn, pl.Series(ret, dtype=pl.Float64), pl.Series(bench, dtype=pl.Float64))
    return fn(*args, **kw)


def _eval_group_by(fn: Callable, ret: np.ndarray, bench: np.ndarray, **kw) -> float:
    if ret.size == 0:
        pytest.skip("a group_by has no empty group")
    other = np.random.default_rng(7).normal(0.0, 0.02, 13)  # a neighbour group must not leak
    frame = pl.DataFrame(
        {
            "g": ["other"] * other.size + ["case"] * ret.size,
            "r": np.concatenate([other, ret]),
            "b": np.concatenate([other[::-1], bench]),
        }
    )
    out = frame.group_by("g").agg(fn(*_call_args(fn, "r", "b"), **kw).alias("x"))
    return out.filter(pl.col("g") == "case")["x"].item()


INPUT_KINDS: dict[str, Evaluate] = {
    "eager_select": lambda fn, r, b, **kw: _eval_select(fn, r, b, lazy=False, **kw),
    "lazy_select": lambda fn, r, b, **kw: _eval_select(fn, r, b, lazy=True, **kw),
    "series": _eval_series,
    "group_by": _eval_group_by,
}


@pytest.fixture(params=list(INPUT_KINDS))
def evaluate(request: pytest.FixtureRequest) -> Evaluate:
    """Evaluate a metric on (ret, benchmark) arrays through one input kind."""
    return INPUT_KINDS[request.param]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("metric_id", list(REFERENCES))
def test_agrees_with_empyrical(evaluate: Evaluate, metric_id: str, case: str) -> None:
    fn, kwargs, _ = REFERENCES[metric_id]
    ret, bench = CASES[case]
    actual = evaluate(fn, ret, bench, **kwargs)
    assert_same(actual, reference(metric_id, ret, bench))


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0].size])
def test_drawdown_series_agrees_with_empyrical(case: str) -> None:
    ret = CASES[case][0]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = drawdown_series(ret.copy())
    actual = m.drawdown(pl.Series(ret)).to_numpy()
    np.testing.assert_allclose(actual, expected, rtol=REL, atol=1e-12)


@pytest.mark.parametrize("window", [pytest.param(5, id="w5"), pytest.param(21, id="w21")])
@pytest.mark.parametrize(
    ("rolling", "base_ref"),
    [
        pytest.param(m.rolling_sharpe, roll_sharpe_ratio, id="rolling_sharpe"),
        pytest.param(m.rolling_volatility, roll_annual_volatility, id="rolling_volatility"),
    ],
)
def test_rolling_agrees_with_empyrical(rolling: Callable, base_ref: Callable, window: int) -> None:
    ret = CASES["with_nans_0"][0][:80]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = base_ref(ret.copy(), window=window)
    actual = rolling(pl.Series(ret), window=window)
    assert actual.len() == ret.size
    assert actual[: window - 1].null_count() == window - 1  # no full window yet
    for a, e in zip(actual[window - 1 :].to_list(), expected, strict=True):
        assert_same(a, e)


def test_rolling_over_groups_matches_each_group() -> None:
    a, b = CASES["normal_0"][0][:40], CASES["student_t3_0"][0][:30]
    frame = pl.DataFrame({"strategy": ["a"] * a.size + ["b"] * b.size, "ret": [*a, *b]})
    out = frame.with_columns(rs=m.rolling_sharpe("ret", window=10).over("strategy"))
    for name, values in (("a", a), ("b", b)):
        got = out.filter(pl.col("strategy") == name)["rs"]
        expected = m.rolling_sharpe(pl.Series("rs", values), window=10)
        assert got.is_null().equals(expected.is_null())
        for a_, e_ in zip(got.drop_nulls(), expected.drop_nulls(), strict=True):
            assert_same(a_, e_)


SUMMARY_FUNCTIONS = [
    m.total_return, m.annual_return, m.annual_volatility, m.sharpe_ratio, m.sortino_ratio,
    m.downside_risk, m.max_drawdown, m.calmar_ratio, m.omega_ratio, m.tail_ratio,
    m.stability_of_timeseries, m.value_at_risk, m.conditional_value_at_risk,
]  # fmt: skip


# ------------------------------------------------------------------ documented traps


def test_nan_and_null_are_both_missing() -> None:
    with_nan, with_null = series("with_nan"), series("with_null")
    for fn in (m.total_return, m.sharpe_ratio, m.sortino_ratio, m.value_at_risk, m.max_drawdown):
        assert_same(fn(with_nan), fn(with_null))


def test_quantile_is_linear_not_polars_default_nearest() -> None:
    s = series("five")
    nearest = s.quantile(0.2)  # polars' default interpolation
    linear = float(np.percentile(s.to_numpy(), 20))
    assert nearest != linear
    assert_same(m.value_at_risk(s, level=0.8), linear)


def test_sortino_downside_is_over_all_periods_not_std_of_losses() -> None:
    s = series("mixed4")
    losses = np.array([-0.02, -0.04])
    wrong = -0.0075 / losses.std(ddof=1)
    assert not same(m.sortino_ratio(s, periods_per_year=1), wrong)


def test_risk_free_is_per_period() -> None:
    s = pl.Series(CASES["normal_1"][0])
    assert_same(m.sharpe_ratio(s, risk_free=0.0002), m.sharpe_ratio(s - 0.0002))


def test_cagr_counts_periods_not_calendar_days() -> None:
    daily = pl.Series([0.001] * 504)  # two years of trading days, whatever the dates
    assert_same(m.annual_return(daily), 1.001**252 - 1, rel=1e-12)


def test_series_input_gives_python_float_and_keeps_name() -> None:
    assert type(m.sharpe_ratio(series("mixed4"))) is float
    dd = m.drawdown(pl.Series("equity", [0.01, -0.02]))
    assert isinstance(dd, pl.Series)
    assert dd.name == "equity"


@pytest.mark.parametrize("fn", [pytest.param(f, id=f.__name__) for f in SUMMARY_FUNCTIONS])
def test_over_broadcasts_per_strategy(fn: Callable[..., float]) -> None:
    a, b = [0.01, NAN, -0.03, 0.02], [-0.01, 0.02, None, 0.04, -0.02]
    frame = pl.DataFrame(
        {"strategy": ["a"] * len(a) + ["b"] * len(b), "ret": [*a, *b]},
        schema={"strategy": pl.String, "ret": pl.Float64},
    )
    out = frame.with_columns(x=fn("ret").over("strategy"))
    assert out["x"].len() == frame.height
    assert_same(out["x"][0], fn(pl.Series(a, dtype=pl.Float64)))
    assert_same(out["x"][len(a) + 1], fn(pl.Series(b, dtype=pl.Float64)))


def test_integer_returns_are_cast() -> None:
    assert_same(m.total_return(pl.Series([0, 1])), 1.0)


# ------------------------------------------------------------------------- invariants

returns_lists = st.lists(
    st.floats(min_value=-0.5, max_value=0.5, allow_nan=False, allow_subnormal=False),
    min_size=2,
    max_size=60,
)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(values=returns_lists, scale=st.floats(min_value=0.01, max_value=100.0))
def test_sharpe_is_scale_invariant(values: list[float], scale: float) -> None:
    r = np.array(values)
    if np.ptp(r) < 1e-6 * max(np.abs(r).max(), 1e-300):
        return  # near-constant: the ratio is dominated by rounding, not a useful check
    assert_same(m.sharpe_ratio(pl.Series(r * scale)), m.sharpe_ratio(pl.Series(r)), rel=1e-8)


@fast
@given(values=st.lists(st.floats(min_value=-1.0, max_value=2.0, allow_nan=False), max_size=80))
def test_drawdown_lies_in_minus_one_to_zero(values: list[float]) -> None:
    dd = m.drawdown(pl.Series(values, dtype=pl.Float64))
    assert dd.is_between(-1.0, 0.0).all()
    if values:
        assert -1.0 <= m.max_drawdown(pl.Series(values)) <= 0.0


@fast
@given(values=returns_lists, method=st.sampled_from(["historical", "gaussian"]))
def test_value_at_risk_is_monotone_in_level(values: list[float], method: str) -> None:
    s = pl.Series(values)
    vars_ = [m.value_at_risk(s, level=lv, method=method) for lv in (0.8, 0.9, 0.95, 0.99)]
    assert all(hi >= lo - 1e-12 for hi, lo in itertools.pairwise(vars_))


@fast
@given(values=returns_lists, level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_cvar_not_above_var(values: list[float], level: float) -> None:
    s = pl.Series(values)
    assert m.conditional_value_at_risk(s, level=level) <= m.value_at_risk(s, level=level) + 1e-12


@fast
@given(
    groups=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(
            st.one_of(st.floats(min_value=-0.3, max_value=0.3), st.just(NAN), st.none()),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
    )
)
def test_group_by_equals_per_group_series(groups: dict[str, list[float | None]]) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "strategy": [g for g, vals in groups.items() for _ in vals],
            "ts": [start + timedelta(days=i) for vals in groups.values() for i in range(len(vals))],
            "ret": [v for vals in groups.values() for v in vals],
        },
        schema={"strategy": pl.String, "ts": pl.Datetime("us", "UTC"), "ret": pl.Float64},
    )
    summary = m.strategy_summary(frame)
    for row in summary.iter_rows(named=True):
        s = pl.Series(groups[row["strategy"]], dtype=pl.Float64)
        for fn in SUMMARY_FUNCTIONS:
            assert_same(row[fn.__name__], fn(s), rel=1e-9, abs_=1e-12)


# ---------------------------------------------------------------------- frame helpers


def _long_frame(names: list[str], *, shuffle: bool = False) -> pl.DataFrame:
    start = datetime(2023, 1, 2, tzinfo=UTC)
    parts = []
    for name in names:
        ret = CASES[name][0]
        parts.append(
            pl.DataFrame(
                {
                    "strategy": [name] * ret.size,
                    "ts": [start + timedelta(days=i) for i in range(ret.size)],
                    "ret": ret,
                },
                schema={"strategy": pl.String, "ts": pl.Datetime("us", "UTC"), "ret": pl.Float64},
            )
        )
    frame = pl.concat(parts)
    return frame.sample(fraction=1.0, shuffle=True, seed=3) if shuffle else frame


SUMMARY_CASES = ["normal_0", "student_t3_1", "with_nans_2", "constant", "loss_on_day_one"]


@pytest.mark.parametrize("lazy", [pytest.param(False, id="eager"), pytest.param(True, id="lazy")])
def test_strategy_summary_is_the_composition_of_the_metrics(lazy: bool) -> None:
    frame = _long_frame(SUMMARY_CASES, shuffle=True)  # summary must order by ts itself
    out = m.strategy_summary(frame.lazy() if lazy else frame, level=0.9)
    assert isinstance(out, pl.LazyFrame if lazy else pl.DataFrame)
    out = out.collect() if isinstance(out, pl.LazyFrame) else out
    assert out["strategy"].to_list() == sorted(SUMMARY_CASES)
    for row in out.iter_rows(named=True):
        s = pl.Series(CASES[row["strategy"]][0])
        assert row["n_periods"] == s.len()
        for fn in SUMMARY_FUNCTIONS:
            kw = {"level": 0.9} if fn in (m.value_at_risk, m.conditional_value_at_risk) else {}
            assert_same(row[fn.__name__], fn(s, **kw))
        for method in ("gaussian", "cornish_fisher"):
            expected = m.value_at_risk(s, level=0.9, method=method)
            assert_same(row[f"value_at_risk_{method}"], expected)


def test_strategy_summary_with_benchmark_frame_and_column() -> None:
    frame = _long_frame(["normal_0", "normal_1"])
    bench_values = CASES["normal_2"][0]
    start = frame["ts"].min()
    bench = pl.DataFrame(
        {"ts": [start + timedelta(days=i) for i in range(bench_values.size)], "ret": bench_values}
    )
    by_frame = m.strategy_summary(frame, bench)
    with_col = frame.join(bench.rename({"ret": "spx"}), on="ts", how="left")
    by_column = m.strategy_summary(with_col, "spx")
    assert by_frame.equals(by_column)
    joined = with_col.filter(pl.col("strategy") == "normal_1")
    expected_beta = m.beta(joined["ret"], joined["spx"].fill_null(NAN))
    assert_same(by_frame.filter(pl.col("strategy") == "normal_1")["beta"].item(), expected_beta)


def test_correlation_matrix_agrees_with_pandas_pairwise() -> None:
    frame = _long_frame(["normal_0", "with_nans_0", "with_nans_1", "student_t3_2"])
    got = m.correlation_matrix(frame)
    expected = (
        frame.to_pandas().pivot(index="ts", columns="strategy", values="ret").corr().sort_index()
    )
    assert got["strategy"].to_list() == list(expected.index)
    np.testing.assert_allclose(got.drop("strategy").to_numpy(), expected.to_numpy(), rtol=1e-10)


def test_correlation_matrix_degenerate_strategy_is_nan() -> None:
    frame = _long_frame(["normal_0", "constant"])
    got = m.correlation_matrix(frame)
    assert math.isnan(got.filter(pl.col("strategy") == "constant")["normal_0"].item())
    assert got.filter(pl.col("strategy") == "normal_0")["normal_0"].item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- errors

ERRORS = [
    pytest.param(
        lambda: m.value_at_risk("ret", method="parametric"),
        InvalidParameter,
        r"method='parametric'(.|\n)*Hint: use one of \['historical', "
        r"'gaussian', 'cornish_fisher'\]",
        id="var-unknown_method",
    ),
    pytest.param(
        lambda: m.value_at_risk("ret", level=95),
        InvalidParameter,
        r"level=95(.|\n)*Hint:",
        id="var-level_as_percent",
    ),
    pytest.param(
        lambda: m.conditional_value_at_risk("ret", level=0.0),
        InvalidParameter,
        r"strictly in \(0, 1\)",
        id="cvar-level_zero",
    ),
    pytest.param(
        lambda: m.sharpe_ratio("ret", periods_per_year=0),
        InvalidParameter,
        r"periods_per_year=0(.|\n)*Hint: use e.g. periods_per_year=252",
        id="sharpe-zero_periods",
    ),
    pytest.param(
        lambda: m.rolling_sharpe("ret", window=0),
        InvalidParameter,
        r"window=0(.|\n)*Hint:",
        id="rolling-zero_window",
    ),
    pytest.param(
        lambda: m.rolling_volatility("ret", window=2.5),
        InvalidParameter,
        "must be an int",
        id="rolling-float_window",
    ),
    pytest.param(
        lambda: m.sharpe_ratio([0.01, 0.02]),
        InvalidArgumentType,
        r"got list(.|\n)*Hint: .*pl.Series",
        id="sharpe-list_input",
    ),
    pytest.param(
        lambda: m.beta(pl.Series([0.1, 0.2]), "bench"),
        InvalidArgumentType,
        r"\['ret'\] are Series but \['benchmark'\] are not",
        id="beta-mixed_inputs",
    ),
    pytest.param(
        lambda: m.alpha(pl.Series([0.1, 0.2]), pl.Series([0.1])),
        InvalidParameter,
        "different lengths",
        id="alpha-length_mismatch",
    ),
    pytest.param(
        lambda: m.strategy_summary(pl.DataFrame({"strategy": ["a"], "ts": [1], "r": [0.1]})),
        ColumnNotFound,
        r"lacks column\(s\) \['ret'\](.|\n)*Hint: the canonical returns frame",
        id="summary-missing_ret",
    ),
    pytest.param(
        lambda: m.strategy_summary(
            pl.DataFrame({"strategy": ["a"], "ts": [datetime(2024, 1, 1)], "ret": ["0.1"]})
        ),
        SchemaError,
        r"'ret' has dtype String(.|\n)*Hint:",
        id="summary-string_ret",
    ),
    pytest.param(
        lambda: m.strategy_summary(
            pl.DataFrame({"strategy": ["a"], "ts": [datetime(2024, 1, 1)], "ret": [0.1]}), "spx"
        ),
        ColumnNotFound,
        r"benchmark column 'spx'(.|\n)*Hint:",
        id="summary-missing_benchmark",
    ),
    pytest.param(
        lambda: m.correlation_matrix(pl.DataFrame({"strategy": ["a"], "ret": [0.1]})),
        ColumnNotFound,
        r"\['ts'\]",
        id="correlation-missing_ts",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS)
def test_errors(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, ObsbenchError)
    assert "Hint:" in str(info.value)


def test_parameter_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="method"):
        m.value_at_risk("ret", method="bogus")  # type: ignore[arg-type]
