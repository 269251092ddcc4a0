from __future__ import annotations

import numpy as np
import polars as pl


def test_measured_slippage_matches_the_injected_model(small):
    """Market-order fills: slippage vs arrival = half spread + impact + latency + noise."""
    model = small.config.execution
    orders = small["orders"].filter(pl.col("limit_px").is_null())
    with_quote = orders.sort("ts").join_asof(
        small["quotes"].sort("ts"), on="ts", by="symbol", check_sortedness=False
    )
    fills = (
        small["fills"]
        .join(with_quote.select("order_id", "arrival_px", "bid", "ask", "mid", ts_o="ts"),
              on="order_id")
        .join(small.symbols, on="symbol")
        .with_columns(s=pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0))
        .with_columns(
            measured=pl.col("s") * (pl.col("px") / pl.col("arrival_px") - 1.0) * 1e4,
            half=(pl.col("ask") - pl.col("bid")) / (2 * pl.col("mid")) * 1e4,
            latency_ms=(pl.col("ts") - pl.col("ts_o")).dt.total_microseconds() / 1000.0,
        )
        .with_columns(
            predicted=pl.col("half")
            + model.impact_y * pl.col("sigma_bps") * (pl.col("qty") / pl.col("adv")).sqrt()
            + model.latency_kappa * pl.col("latency_ms").sqrt()
        )
    )  # fmt: skip
    resid = (fills["measured"] - fills["predicted"]).to_numpy()
    n = len(resid)
    assert n > 300
    assert abs(resid.mean()) < 4 * model.noise_bps / np.sqrt(n)
    assert abs(resid.std() / model.noise_bps - 1.0) < 0.1
    # positive cost on average, with every component contributing
    assert fills["measured"].mean() > fills["half"].mean() > 0


def test_slippage_grows_with_latency(small):
    orders = small["orders"].select("order_id", "arrival_px", "limit_px", ts_o="ts")
    fills = small["fills"].join(orders, on="order_id").filter(pl.col("limit_px").is_null())
    fills = fills.with_columns(
        late=(pl.col("ts") - pl.col("ts_o")) > pl.duration(seconds=1),
        measured=pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
        * (pl.col("px") / pl.col("arrival_px") - 1.0) * 1e4,
    )  # fmt: skip
    by = dict(fills.group_by("late").agg(pl.col("measured").mean()).iter_rows())
    assert by[True] > by[False] + 1.0
