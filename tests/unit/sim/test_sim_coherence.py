from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from obsbench.sim import FLOW


def test_every_fill_has_its_order_with_same_side_symbol_venue(small):
    joined = small["fills"].join(small["orders"], on="order_id", how="left", suffix="_o")
    assert joined["strategy"].null_count() == 0
    assert (joined["side"] == joined["side_o"]).all()
    assert (joined["symbol"] == joined["symbol_o"]).all()
    assert (joined["venue"] == joined["venue_o"]).all()
    assert (joined["ts"] > joined["ts_o"]).all()


def test_filled_quantity_and_status_agree(small):
    filled = small["fills"].group_by("order_id").agg(filled=pl.col("qty").sum(), n=pl.len())
    orders = (
        small["orders"]
        .join(filled, on="order_id", how="left")
        .with_columns(pl.col("filled").fill_null(0.0))
    )
    assert (orders["filled"] <= orders["qty"]).all()
    expected = (
        pl.when(pl.col("status") == "rejected").then(pl.col("filled") == 0)
        .when(pl.col("status") == "cancelled").then(pl.col("filled") == 0)
        .when(pl.col("status") == "partially_filled")
        .then((pl.col("filled") > 0) & (pl.col("filled") < pl.col("qty")))
        .otherwise(pl.col("filled") == pl.col("qty"))
    )  # fmt: skip
    assert orders.select(expected.all()).item()
    counts = orders["status"].value_counts()
    assert set(counts["status"]) >= {"filled", "partially_filled", "cancelled"}
    assert orders["n"].max() > 1  # some orders have several fills
    assert (small["fills"]["fee"] > 0).all()


def test_limit_orders_never_fill_through_their_limit(small):
    joined = (
        small["fills"]
        .join(small["orders"], on="order_id", suffix="_o")
        .filter(pl.col("limit_px").is_not_null())
    )
    assert joined.height > 0
    buy = pl.col("side") == "buy"
    within = (
        pl.when(buy)
        .then(pl.col("px") <= pl.col("limit_px"))
        .otherwise(pl.col("px") >= pl.col("limit_px"))
    )
    assert joined.select(within.all()).item()


def test_arrival_price_is_the_mid_of_the_last_quote(small):
    joined = (
        small["orders"]
        .sort("ts")
        .join_asof(
            small["quotes"].sort("ts"),
            on="ts",
            by="symbol",
            strategy="backward",
            check_sortedness=False,
        )
    )
    np.testing.assert_array_equal(joined["arrival_px"].to_numpy(), joined["mid"].to_numpy())


def test_quotes_have_u_shaped_spread(small):
    q = small["quotes"].with_columns(
        rel=(pl.col("ask") - pl.col("bid")) / pl.col("mid"),
        minute=pl.col("ts").dt.hour() * 60 + pl.col("ts").dt.minute(),
    )
    by_min = q.group_by("minute").agg(pl.col("rel").mean()).sort("minute")["rel"].to_numpy()
    edges = np.r_[by_min[:5], by_min[-5:]].mean()
    assert edges > 1.5 * by_min[25:35].mean()


def test_every_order_has_a_five_hop_trace(small):
    spans = small["spans"]
    orders = small["orders"].with_columns(
        trace_id=pl.col("order_id").replace_strict(
            dict(
                spans.select(pl.col("attributes").str.json_path_match("$['order.id']"), "trace_id")
                .unique()
                .drop_nulls()
                .iter_rows()
            )
        )
    )
    per_trace = spans.filter(pl.col("trace_id").is_in(orders["trace_id"].implode()))
    chains = (
        per_trace.sort("trace_id", "start")
        .group_by("trace_id", maintain_order=True)
        .agg("service", "span_id", "parent_span_id", "start", "end")
    )
    assert chains.height == orders.height
    for row in chains.head(200).iter_rows(named=True):
        assert row["service"] == list(FLOW)
        assert row["parent_span_id"][0] is None
        assert row["parent_span_id"][1:] == row["span_id"][:-1]
        for i in range(1, 5):  # children nest inside their parent
            assert row["start"][i] >= row["start"][i - 1]
            assert row["end"][i] <= row["end"][i - 1]


def test_requests_and_logs_of_an_order_share_its_trace(small):
    spans = small["spans"]
    traced = small["requests"].filter(pl.col("trace_id").is_not_null())
    assert set(traced["trace_id"]) == set(spans["trace_id"])
    per = (
        traced.group_by("trace_id")
        .agg(n=pl.len())
        .join(spans.group_by("trace_id").agg(n_spans=pl.len()), on="trace_id")
    )
    assert (per["n"] == per["n_spans"]).all()  # one request per hop
    logs = small["logs"].filter(pl.col("trace_id").is_not_null())
    per_log = logs.group_by("trace_id").agg(n=pl.len()).join(per, on="trace_id", suffix="_r")
    assert per_log.height == per.height
    assert (per_log["n"] == per_log["n_r"]).all()  # one log per hop


def test_errors_are_logged_at_error_level(small):
    logs = small["logs"].with_columns(
        code=pl.col("fields").str.json_path_match("$.status_code").cast(pl.Int32)
    )
    assert (logs.filter(pl.col("code") >= 500)["level"] == "ERROR").all()
    assert (logs.filter(pl.col("code") < 400)["level"] == "INFO").all()
    n_5xx = small["requests"].filter(pl.col("status_code") >= 500).height
    assert logs.filter(pl.col("level") == "ERROR").height == n_5xx


def test_requests_ok_flag_and_background_traffic(small):
    r = small["requests"]
    assert (r["ok"] == (r["status_code"] < 400)).all()
    untraced = r.filter(pl.col("trace_id").is_null())
    assert {"GET /healthz", "POST /login"} <= set(untraced["endpoint"])
    assert untraced.height > r.height / 2


def test_returns_agree_with_fills_and_quotes(small):
    """Recompute intraday and daily returns independently (as-of joins) to 1e-9."""
    cfg = small.config
    fills = small["fills"].join(small["orders"].select("order_id", "strategy"), on="order_id")
    flows = (
        fills.with_columns(
            sq=pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty"))
        )
        .with_columns(cash=-pl.col("sq") * pl.col("px") - pl.col("fee"))
        .sort("ts")
    )
    pos = flows.with_columns(pos=pl.col("sq").cum_sum().over("strategy", "symbol")).select(
        "strategy", "symbol", "ts", "pos"
    )
    cash = flows.with_columns(cum_cash=pl.col("cash").cum_sum().over("strategy")).select(
        "strategy", "ts", "cum_cash"
    )
    bars = small["returns_intraday"].select("strategy", "ts").sort("ts")
    grid = bars.join(pl.DataFrame({"symbol": list(cfg.symbols)}), how="cross").sort("ts")
    held = (
        grid.join_asof(pos, on="ts", by=["strategy", "symbol"], check_sortedness=False)
        .join_asof(small["quotes"].sort("ts"), on="ts", by="symbol", check_sortedness=False)
        .with_columns(value=pl.col("pos").fill_null(0.0) * pl.col("mid"))
        .group_by("strategy", "ts").agg(pl.col("value").sum())
    )  # fmt: skip
    equity = (
        bars.join_asof(cash, on="ts", by="strategy", check_sortedness=False)
        .join(held, on=["strategy", "ts"])
        .with_columns(eq=pl.col("cum_cash").fill_null(0.0) + pl.col("value"))
        .sort("strategy", "ts")
        .with_columns(day=pl.col("ts").dt.date())
        .with_columns(
            ret=(pl.col("eq") - pl.col("eq").shift(1, fill_value=0.0).over("strategy", "day"))
        )
    )
    # equity is cumulative over days; each day starts flat, so remove the previous close
    day_open = (
        equity.group_by("strategy", "day")
        .agg(pl.col("eq").last().alias("close"))
        .sort("strategy", "day")
        .with_columns(prev=pl.col("close").shift(1, fill_value=0.0).over("strategy"))
    )
    equity = equity.join(day_open, on=["strategy", "day"]).with_columns(
        ret=pl.when(pl.col("ts") == pl.col("ts").min().over("strategy", "day"))
        .then(pl.col("eq") - pl.col("prev"))
        .otherwise(pl.col("ret"))
        / cfg.capital
    )
    got = small["returns_intraday"].join(equity, on=["strategy", "ts"], suffix="_re")
    assert got.height == small["returns_intraday"].height
    np.testing.assert_allclose(got["ret"], got["ret_re"], rtol=0, atol=1e-9)
    daily = (
        got.group_by("strategy", "day")
        .agg(pl.col("ret").sum())
        .with_columns(ts=pl.col("day").cast(pl.Datetime("us", "UTC")))
    )
    both = small["returns"].join(daily, on=["strategy", "ts"], suffix="_sum")
    assert both.height == small["returns"].height
    np.testing.assert_allclose(both["ret"], both["ret_sum"], rtol=0, atol=1e-9)


def test_positions_are_flat_at_the_close(small):
    fills = small["fills"].join(small["orders"].select("order_id", "strategy"), on="order_id")
    net = fills.group_by("strategy", "symbol", pl.col("ts").dt.date()).agg(
        pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty")).sum()
    )
    assert (net["qty"] == 0).all()


def test_audit_events_share_the_order_correlation(small):
    audit = small["audit"]
    actions = set(audit["action"])
    assert {
        "order.decision",
        "order.submit",
        "order.execution",
        "auth.login",
        "config.change",
    } <= actions
    orders = small["orders"]
    per_order = (
        audit.filter(pl.col("action").is_in(["order.decision", "order.submit"]))
        .with_columns(order_id=pl.col("resource").str.strip_prefix("order/"))
        .group_by("order_id")
        .agg(pl.col("correlation_id").n_unique(), n=pl.len())
    )
    assert per_order.height == orders.height
    assert (per_order["correlation_id"] == 1).all()
    assert (per_order["n"] == 2).all()
    execs = audit.filter(pl.col("action") == "order.execution").with_columns(
        order_id=pl.col("details").str.json_path_match("$.order_id")
    )
    assert execs.height == small["fills"].height
    corr = dict(
        audit.filter(pl.col("action") == "order.submit")
        .select(pl.col("resource").str.strip_prefix("order/"), "correlation_id")
        .iter_rows()
    )
    assert all(corr[o] == c for o, c in execs.select("order_id", "correlation_id").iter_rows())
    # the correlation id is the order's trace id
    assert set(corr.values()) <= set(small["spans"]["trace_id"])


def test_logins_match_login_requests(small):
    logins = small["audit"].filter(pl.col("action").str.starts_with("auth.login"))
    requests = small["requests"].filter(pl.col("endpoint") == "POST /login")
    assert logins.height == requests.height
    assert (
        logins.filter(pl.col("action") == "auth.login_failed").height
        == requests.filter(pl.col("status_code") >= 400).height
    )


def test_config_changes_carry_before_after_and_fake_secrets():
    from obsbench.sim import SimConfig, simulate

    audit = simulate(SimConfig.small(days=5))["audit"]
    changes = audit.filter(pl.col("action") == "config.change")
    assert changes.height > 0
    for details in changes["details"]:
        doc = json.loads(details)
        assert {"before", "after"} <= set(doc)
    text = "\n".join(audit["details"])
    assert "sk_live_" in text
    assert '"iban":"GB' in text
    assert '"account":"U' in text
    assert "@example." in text


def test_api_usage_counts_broker_requests_and_429s(small):
    cfg = small.config
    usage = small["api_usage"]
    assert set(usage["provider"]) == set(cfg.brokers)
    broker_req = (
        small["requests"]
        .filter(pl.col("endpoint").str.contains("/brokers/"))
        .with_columns(
            provider=pl.col("endpoint").str.extract(r"/brokers/([^/]+)/"),
            endpoint=pl.col("endpoint").str.extract(r"/(quotes|orders)$"),
            ts=pl.col("ts").dt.truncate(f"{cfg.broker_window_s}s"),
        )
    )
    counted = broker_req.group_by("ts", "provider", "endpoint").agg(
        n=pl.len(), throttled=(pl.col("status_code") == 429).sum()
    )
    joined = usage.join(counted, on=["ts", "provider", "endpoint"], how="left").with_columns(
        pl.col("n", "throttled").fill_null(0)
    )
    assert (joined["used"] == joined["n"]).all()  # every request counts, submissions included
    over = (joined["used"] - joined["limit"]).clip(lower_bound=0)
    assert (joined["throttled"] <= over).all()


@pytest.mark.parametrize("dataset", ["quotes", "orders", "fills", "requests", "logs", "audit"])
def test_frames_are_sorted_by_time(small, dataset):
    assert small[dataset]["ts"].is_sorted()


def test_costs_are_hourly_per_resource_with_team_tags(small):
    costs = small["costs"]
    cfg = small.config
    per = costs.group_by("ResourceId").len()
    assert (per["len"] == 24 * cfg.days).all()
    tags = costs["Tags"].struct.unnest()
    assert set(tags["service"]) == set(cfg.services)
    assert tags["team"].null_count() == 0
    assert (costs["EffectiveCost"] <= costs["BilledCost"]).all()
