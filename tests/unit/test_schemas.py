from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from obsbench import schemas
from obsbench.errors import SchemaError, UnknownName

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def quotes(**overrides: list[object]) -> pl.DataFrame:
    data: dict[str, list[object]] = {
        "symbol": ["AAA", "BBB"],
        "ts": [T0, T0],
        "bid": [99.9, 50.0],
        "ask": [100.1, 50.2],
        "mid": [100.0, 50.1],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def fills(**overrides: list[object]) -> pl.DataFrame:
    data: dict[str, list[object]] = {
        "fill_id": ["f1", "f2"],
        "order_id": ["o1", "o1"],
        "ts": [T0, T0],
        "symbol": ["AAA", "AAA"],
        "side": ["buy", "buy"],
        "qty": [10.0, 5.0],
        "px": [100.0, 100.1],
        "fee": [0.1, 0.05],
        "venue": ["XNAS", "XNAS"],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_valid_frame_passes_unchanged() -> None:
    df = quotes()
    assert schemas.validate(df, "quotes").equals(df)


@pytest.mark.parametrize(
    ("frame", "dataset", "message"),
    [
        pytest.param(
            quotes().drop("mid"), "quotes", r"missing column\(s\): mid", id="missing_column"
        ),
        pytest.param(
            quotes().with_columns(spread=pl.lit(0.2)),
            "quotes",
            r"unexpected column\(s\): spread",
            id="extra_column",
        ),
        pytest.param(
            quotes(bid=["99.9", "50.0"]),
            "quotes",
            r"column 'bid' has dtype String, expected Float64",
            id="wrong_dtype",
        ),
        pytest.param(
            quotes().with_columns(pl.col("ts").dt.replace_time_zone(None)),
            "quotes",
            r"column 'ts' holds timestamps without time zone.*replace_time_zone",
            id="naive_timestamp",
        ),
        pytest.param(
            quotes(bid=[99.9, 50.3]),
            "quotes",
            r"ask not below bid: 1 row\(s\) \(symbol/ts: BBB/",
            id="ask_below_bid",
        ),
        pytest.param(
            fills(qty=[10.0, -5.0]),
            "fills",
            r"'qty' not > 0.0: 1 row\(s\) \(fill_id/order_id: f2/o1\)",
            id="negative_quantity",
        ),
        pytest.param(
            fills(px=[0.0, 100.0]),
            "fills",
            r"'px' not > 0.0: 1 row\(s\) \(fill_id/order_id: f1/o1\)",
            id="zero_price",
        ),
        pytest.param(
            fills(order_id=["o1", None]),
            "fills",
            r"nulls in required column 'order_id': 1 row",
            id="null_in_key",
        ),
        pytest.param(
            fills(fill_id=["f1", "f1"]),
            "fills",
            r"duplicate key \(fill_id\): 2 row",
            id="duplicate_primary_key",
        ),
        pytest.param(
            fills(side=["buy", "hold"]),
            "fills",
            r"'side' not one of \['buy', 'sell'\]: 1 row",
            id="unknown_side",
        ),
        pytest.param(fills(fee=[float("nan"), 0.0]), "fills", r"NaN in 'fee': 1 row", id="nan_fee"),
    ],
)
def test_each_rule_names_the_problem(frame: pl.DataFrame, dataset: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message) as info:
        schemas.validate(frame, dataset)
    assert "Hint:" in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    bad = fills(qty=[-1.0, 5.0], side=["buy", "hold"]).drop("venue")
    with pytest.raises(SchemaError) as info:
        schemas.validate(bad, "fills")
    # column problems come first and stop before row rules (they would be meaningless)
    assert info.value.problems == ["missing column(s): venue"]
    with pytest.raises(SchemaError) as info:
        schemas.validate(fills(qty=[-1.0, 5.0], side=["buy", "hold"]), "fills")
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    ("column", "values", "dtype"),
    [
        pytest.param("qty", [10, 5], pl.Int64, id="int_to_float"),
        pytest.param("qty", [10.0, 5.0], pl.Float32, id="float32_to_float64"),
        pytest.param("symbol", ["AAA", "AAA"], pl.Categorical, id="categorical_to_string"),
    ],
)
def test_safe_casts_are_applied(column: str, values: list[object], dtype: pl.DataType) -> None:
    df = fills().with_columns(pl.Series(column, values, dtype=dtype))
    out = schemas.validate(df, "fills")
    assert out.schema == schemas.schema_of("fills")


def test_date_and_other_zones_become_utc() -> None:
    r = pl.DataFrame({"strategy": ["s"], "ts": [date(2026, 1, 5)], "ret": [0.01]})
    assert schemas.validate(r, "returns")["ts"].to_list() == [datetime(2026, 1, 5, tzinfo=UTC)]
    ny = quotes().with_columns(pl.col("ts").dt.convert_time_zone("America/New_York"))
    out = schemas.validate(ny, "quotes")
    assert out["ts"].dtype == schemas.TIMESTAMP
    assert out["ts"].to_list() == [T0, T0]


def test_lazy_in_lazy_out_and_columns_reordered() -> None:
    lf = quotes().select(["mid", "ask", "bid", "ts", "symbol"]).lazy()
    out = schemas.validate(lf, "quotes")
    assert isinstance(out, pl.LazyFrame)
    assert out.collect_schema().names() == ["symbol", "ts", "bid", "ask", "mid"]


def test_allow_extra_keeps_extra_columns_last() -> None:
    out = schemas.validate(quotes().with_columns(spread=pl.lit(0.2)), "quotes", allow_extra=True)
    assert out.columns[-1] == "spread"


def test_nan_returns_are_allowed_but_losses_beyond_total_are_not() -> None:
    ok = pl.DataFrame({"strategy": ["s", "s"], "ts": [T0, T0], "ret": [float("nan"), None]})
    schemas.validate(ok, "returns")
    with pytest.raises(SchemaError, match=r"'ret' below its minimum -1.0"):
        schemas.validate(ok.with_columns(ret=pl.lit(-1.5)), "returns")


@pytest.mark.parametrize("dataset", schemas.DATASETS)
def test_empty_frames_validate(dataset: str) -> None:
    assert schemas.validate(schemas.empty(dataset), dataset).height == 0
    assert schemas.describe(dataset).count("\n") == len(schemas.schema_of(dataset)) - 1


def test_unknown_dataset() -> None:
    with pytest.raises(UnknownName, match=r"(?s)unknown dataset 'trades'.*Hint: use one of"):
        schemas.validate(quotes(), "trades")


@pytest.mark.parametrize(
    "ids",
    [["a", "b", "c", "b"], ["a", "b", "b", "c"], ["c", "b", "a", "c"]],
    ids=["unsorted", "sorted", "descending"],
)
def test_duplicate_keys_found_whatever_their_order(ids: list[str]) -> None:
    frame = pl.DataFrame({"trace_id": ids, "span_id": ids})
    spans = frame.with_columns(
        pl.lit(None, pl.String).alias("parent_span_id"),
        pl.lit("svc").alias("service"),
        pl.lit("op").alias("name"),
        pl.lit(datetime(2024, 1, 1, tzinfo=UTC)).alias("start"),
        pl.lit(datetime(2024, 1, 1, tzinfo=UTC)).alias("end"),
        pl.lit("ok").alias("status"),
        pl.lit(None, pl.String).alias("attributes"),
    )
    with pytest.raises(SchemaError, match=r"duplicate key \(span_id\)"):
        schemas.validate(spans, "spans")
    assert schemas.validate(spans.unique("span_id"), "spans").height == 3


def test_validation_memo_checks_each_frame_once(validated: list[str]) -> None:
    calls = validated
    q = quotes()
    with schemas.validation_memo():
        first = schemas.validate(q, "quotes")
        assert schemas.validate(q, "quotes") is first  # the same object: not checked again
        schemas.validate(q.clone(), "quotes")  # another object: checked
        schemas.validate(q, "quotes", allow_extra=True)  # other options: checked
    assert calls == ["quotes"] * 3
    schemas.validate(q, "quotes")  # outside the block: always checked
    assert len(calls) == 4


def test_validation_memo_never_remembers_a_failure() -> None:
    bad = quotes(bid=[101.0, 50.0])  # ask < bid
    with schemas.validation_memo():
        for _ in range(2):
            with pytest.raises(SchemaError, match="ask"):
                schemas.validate(bad, "quotes")
