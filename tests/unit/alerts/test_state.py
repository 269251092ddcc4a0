"""Hand-worked timelines for every rule of the state machine (one evaluation per minute).

Notation: one character per evaluation: ``.`` inactive, ``p`` pending, ``f`` firing.
Values: a number, or ``None`` for "the series has no row at this evaluation".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsbench.alerts import advance, parse_rules, replay
from obsbench.alerts.signals import with_series_key
from obsbench.alerts.state import DuplicateSeries, empty_state
from obsbench.errors import SchemaError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CODE = {"inactive": ".", "pending": "p", "firing": "f", "nodata": "n", "error": "e"}


def make_rule(**fields: object):
    base = {
        "name": "R",
        "signal": {"promql": "x"},
        "op": ">",
        "thresholds": {"warning": 0.5},
        "for": "0s",
        "keep_firing_for": "0s",
        "no_data": "ok",
    }
    base.update(fields)
    import yaml

    return parse_rules(yaml.safe_dump({"rules": [base]}))[0]


def at(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def values_of(series: dict[str, list[float | None]]) -> pl.DataFrame:
    rows = [
        {"ts": at(i), "svc": name, "value": v}
        for name, vals in series.items()
        for i, v in enumerate(vals)
        if v is not None
    ]
    return pl.DataFrame(
        rows, schema={"ts": pl.Datetime("us", "UTC"), "svc": pl.String, "value": pl.Float64}
    )


def states(timeline: pl.DataFrame, n: int, svc: str | None = "a", severity: str = "warning") -> str:
    out = ["."] * n
    sel = timeline.filter(pl.col("severity") == severity)
    sel = sel.filter(pl.col("svc").is_null() if svc is None else pl.col("svc") == svc)
    for ts, state in sel.select("ts", "state").iter_rows():
        out[round((ts - T0).total_seconds() / 60)] = CODE[state]
    return "".join(out)


CASES = [
    pytest.param({}, [0, 1, 1, 0], ".ff.", id="for_0_fires_on_first_true"),
    pytest.param({"for": "2m"}, [0, 1, 1, 1, 1, 0], ".ppff.", id="pending_until_for_elapsed"),
    pytest.param({"for": "2m"}, [1, 1, 0, 1, 1, 1], "pp.ppf", id="pending_cleared_restarts_clock"),
    pytest.param({"for": "90s"}, [1, 1, 1, 1], "ppff", id="for_between_evaluations_rounds_up"),
    pytest.param({"for": "1m"}, [1, 1, 0, 0], "pf..", id="firing_resolves_when_clear"),
    pytest.param({"keep_firing_for": "2m"}, [1, 0, 0, 0, 0], "fff..", id="keep_firing_for"),
    pytest.param(
        {"keep_firing_for": "2m"}, [1, 0, 1, 0, 0, 0, 0], "fffff..", id="keep_clock_resets"
    ),
    pytest.param(
        {"keep_firing_for": "2m", "for": "2m"},
        [1, 1, 0, 1, 0, 0],
        "pp.p..",
        id="keep_firing_for_ignores_pending",
    ),
    pytest.param({}, [1, 1, None, 1], "ff.f", id="series_disappears_resolves"),
    pytest.param(
        {"keep_firing_for": "2m"}, [1, None, None, None], "fff.", id="disappeared_kept_firing"
    ),
    pytest.param({"for": "2m"}, [1, None, 1, 1, 1], "p.ppf", id="pending_disappears_dropped"),
    pytest.param({"op": "<", "thresholds": {"warning": 0.5}}, [1, 0, 0.5, 0], ".f.f", id="op_lt"),
    pytest.param({"op": ">="}, [0.4, 0.5, 0.6], ".ff", id="op_ge_inclusive"),
    pytest.param({"op": "=="}, [0.5, 0.4, 0.5], "f.f", id="op_eq"),
    pytest.param({}, [float("nan"), 1.0], ".f", id="nan_never_holds"),
]


@pytest.mark.parametrize(("fields", "vals", "expected"), CASES)
def test_single_series_timelines(fields: dict, vals: list, expected: str) -> None:
    rule = make_rule(**fields)
    eval_times = [at(i) for i in range(len(vals))]
    timeline = replay(rule, values_of({"a": vals}), eval_times)
    assert states(timeline, len(vals)) == expected


def test_active_at_and_values() -> None:
    rule = make_rule(**{"for": "1m", "keep_firing_for": "1m"})
    tl = replay(rule, values_of({"a": [0, 0.7, 0.8, 0, 0]}), [at(i) for i in range(5)])
    rows = tl.select("ts", "state", "value", "active_at").rows()
    assert rows == [
        (at(1), "pending", 0.7, at(1)),
        (at(2), "firing", 0.8, at(1)),
        (at(3), "firing", 0.8, at(1)),  # kept firing: last value, same active_at
        (at(4), "inactive", 0.8, at(1)),
    ]


def test_escalation_and_de_escalation_on_one_series() -> None:
    rule = make_rule(
        thresholds={"warning": 0.5, "critical": 1.0, "emergency": 2.0}, **{"for": "1m"}
    )
    vals = [0.6, 1.2, 1.2, 2.5, 2.5, 1.2, 0.6, 0.6, 0]
    tl = replay(rule, values_of({"a": vals}), [at(i) for i in range(len(vals))])
    assert states(tl, len(vals), severity="warning") == "pffffffff"[:8] + "."
    assert states(tl, len(vals), severity="critical") == ".pffff.." + "."
    assert states(tl, len(vals), severity="emergency") == "...pf...."


def test_current_severity_follows_escalation() -> None:
    from obsbench.alerts import current_severity

    rule = make_rule(thresholds={"warning": 0.5, "critical": 1.0}, **{"for": "1m"})
    vals = [0.6, 1.2, 1.2, 1.2, 0.6, 0.6, 0]
    tl = current_severity(replay(rule, values_of({"a": vals})))
    seen = [
        (round((t - T0).total_seconds() / 60), sev, st)
        for t, sev, st in tl.select("ts", "severity", "state").rows()
    ]
    assert seen == [
        (0, "warning", "pending"),
        (1, "warning", "firing"),  # critical only pending: warning is what fires
        (2, "critical", "firing"),
        (3, "critical", "firing"),
        (4, "warning", "firing"),  # de-escalated
        (5, "warning", "firing"),
    ]


def test_series_are_independent() -> None:
    rule = make_rule(**{"for": "1m"})
    vals = {"a": [1, 1, 1, 0], "b": [0, 1, 1, None], "c": [0, 0, 0, 0]}
    tl = replay(rule, values_of(vals), [at(i) for i in range(4)])
    assert states(tl, 4, "a") == "pff."
    assert states(tl, 4, "b") == ".pf."
    assert set(tl["svc"].unique()) == {"a", "b"}


def test_dense_has_every_evaluation() -> None:
    rule = make_rule()
    tl = replay(rule, values_of({"a": [0, 1, 0, 0], "b": [0, 0, 0, 0]}), dense=True)
    assert tl.height == 4
    assert tl["state"].to_list() == ["inactive", "firing", "inactive", "inactive"]


NODATA_CASES = [
    # (policy fields, values with None = whole-rule no data, errors at, expected series, rule-level)
    pytest.param(
        {"no_data": "ok", "for": "2m"}, [1, 1, None, 1], (), "pp.p", "....", id="nodata_ok"
    ),
    pytest.param(
        {"no_data": "nodata", "for": "2m"}, [1, 1, None, 1], (), "pp.p", "..n.", id="nodata_state"
    ),
    pytest.param(
        {"no_data": "keep_last", "for": "2m"}, [1, 1, None, 1], (), "ppff", "....", id="keep_last"
    ),
    pytest.param(
        {"no_data": "keep_last"}, [0, None, None, 1], (), "...f", "....", id="keep_last_false"
    ),
    pytest.param(
        {"no_data": "alerting", "for": "1m"},
        [0, None, None, None, 0],
        (),
        ".....",
        ".pff.",
        id="nodata_alerting_honours_for",
    ),
    pytest.param(
        {"on_error": "error", "for": "2m"}, [1, 1, 1, 1], (2,), "ppff", "..e.", id="error_keeps"
    ),
    pytest.param({"on_error": "ok"}, [1, 1, 1, 1], (2,), "ff.f", "....", id="error_ok_resolves"),
    pytest.param(
        {"on_error": "alerting"}, [1, 1, 1, 0], (1, 2), "fff.", ".ff.", id="error_alerting"
    ),
]


@pytest.mark.parametrize(("fields", "vals", "errors", "series", "level"), NODATA_CASES)
def test_no_data_and_error_policies(
    fields: dict, vals: list, errors: tuple, series: str, level: str
) -> None:
    rule = make_rule(**fields)
    n = len(vals)
    tl = replay(
        rule, values_of({"a": vals}), [at(i) for i in range(n)], errors=[at(i) for i in errors]
    )
    assert states(tl, n, "a") == series
    assert states(tl, n, None) == level


def test_duplicate_label_sets_are_an_error() -> None:
    frame = pl.concat([values_of({"a": [1]}), values_of({"a": [2]})])
    with pytest.raises(DuplicateSeries, match="same labels"):
        replay(make_rule(), frame)


def test_missing_columns_are_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="missing column 'value'"):
        replay(make_rule(), pl.DataFrame({"ts": [T0]}))


def test_no_labels_and_no_rows() -> None:
    frame = pl.DataFrame({"ts": [at(0), at(1)], "value": [1.0, 1.0]})
    assert states_no_label(replay(make_rule(), frame), 2) == "ff"
    empty = frame.clear()
    assert replay(make_rule(), empty, [at(0)]).height == 0


def states_no_label(tl: pl.DataFrame, n: int) -> str:
    out = ["."] * n
    for ts, state in tl.select("ts", "state").iter_rows():
        out[round((ts - T0).total_seconds() / 60)] = CODE[state]
    return "".join(out)


def test_replay_does_not_mutate_input() -> None:
    frame = values_of({"a": [1, 0, 1]})
    before = frame.clone()
    replay(make_rule(), frame)
    assert frame.equals(before)


# -- advance() folded over evaluations equals replay() --------------------------------


def fold_advance(rule, values: pl.DataFrame, n: int) -> set[tuple]:
    state = empty_state()
    seen: set[tuple] = set()
    params = pl.DataFrame(
        {
            "rule": [rule.name],
            "for_us": [int(rule.for_seconds * 1e6)],
            "kff_us": [int(rule.keep_firing_seconds * 1e6)],
        }
    )
    for i in range(n):
        now = values.filter(pl.col("ts") == at(i))
        obs = []
        for sev, thr in rule.thresholds.items():
            obs.append(
                with_series_key(now).select(
                    rule=pl.lit(rule.name),
                    series="series",
                    severity=pl.lit(sev),
                    cond=pl.col("value") > thr,
                    value="value",
                )
            )
        state, trans = advance(state, pl.concat(obs), at(i), params=params)
        for row in state.iter_rows(named=True):
            seen.add((i, row["series"], row["severity"], row["state"], row["active_at"]))
        for row in trans.filter(pl.col("to_state") == "inactive").iter_rows(named=True):
            seen.add((i, row["series"], row["severity"], "inactive", row["active_at"]))
    return seen


def replay_set(rule, values: pl.DataFrame, n: int) -> set[tuple]:
    tl = replay(rule, values, [at(i) for i in range(n)])
    tl = tl.with_columns(series=with_series_key(tl.select("ts", "svc", "value"))["series"])
    return {
        (
            round((r["ts"] - T0).total_seconds() / 60),
            r["series"],
            r["severity"],
            r["state"],
            r["active_at"],
        )
        for r in tl.iter_rows(named=True)
    }


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.one_of(st.none(), st.sampled_from([0.0, 0.7, 1.5])), min_size=12, max_size=12),
        min_size=1,
        max_size=3,
    ),
    for_m=st.integers(0, 3),
    kff_m=st.integers(0, 3),
)
def test_advance_folded_equals_replay(data: list[list], for_m: int, kff_m: int) -> None:
    rule = make_rule(
        thresholds={"warning": 0.5, "critical": 1.0},
        **{"for": f"{for_m}m", "keep_firing_for": f"{kff_m}m"},
    )
    values = values_of({f"s{i}": vals for i, vals in enumerate(data)})
    assert fold_advance(rule, values, 12) == replay_set(rule, values, 12)
