from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from obsbench import metrics
from obsbench.dashboards import views
from obsbench.metrics import pnl, risk

from .conftest import NOW


@pytest.fixture
def frames(live_store):
    store, _ = live_store
    day0 = datetime.combine(NOW.date(), datetime.min.time(), tzinfo=UTC)
    hist_att = pnl.pnl_attribution(
        store.read("orders", end=day0),
        store.read("fills", end=day0),
        store.scan("quotes", end=day0),
    )
    hist = views.HistoryFrames(
        returns=store.read("returns"), attribution=hist_att, today=NOW.date()
    )
    live = views.LiveFrames(
        orders=store.read("orders", start=day0),
        fills=store.read("fills", start=day0),
        quotes=store.read("quotes", start=day0),
        requests=store.read("requests", start=NOW - timedelta(hours=1)),
        api_usage=store.read("api_usage", start=NOW - timedelta(minutes=15)),
        now=NOW,
    )
    return live, hist


def test_live_views_is_the_union_of_the_groups(frames):
    live, hist = frames
    union = {"now"}
    for fn in views.LIVE_GROUPS.values():
        union |= set(fn(live, hist))
    assert set(views.live_views(live, hist)) == union


def test_pnl_by_strategy_is_cumulative_pnl_of_the_attribution(frames):
    live, hist = frames
    out = views.pnl_views(live, hist)
    att = pnl.pnl_attribution(
        live.orders, live.fills, live.quotes, initial_positions=hist.opening_positions()
    ).filter(pl.col("date") == NOW.date())
    expected = pnl.cumulative_pnl(att, by=("strategy",)).sort("strategy")
    got = out["pnl_by_strategy"].sort("strategy")
    assert got["total_pnl"].to_list() == pytest.approx(expected["total_pnl"].to_list())
    assert out["pnl_book"]["today"] == pytest.approx(expected["total_pnl"].sum())


def test_book_mtd_and_ytd_add_the_history_to_today(frames):
    live, hist = frames
    book = views.pnl_views(live, hist)["pnl_book"]
    history_total = hist.attribution["total_pnl"].sum()
    # the history day is in the same month as NOW (one day back from the 25th)
    assert book["mtd"] == pytest.approx(history_total + book["today"])
    assert book["ytd"] == pytest.approx(book["mtd"])


def test_execution_view_is_execution_summary_of_the_window(frames):
    live, hist = frames
    got = views.execution_views(live, hist)["execution"]
    orders = live.orders.filter(pl.col("ts") > NOW - live.window)
    fills = live.fills.join(orders.select("order_id"), on="order_id", how="semi")
    want = metrics.execution_summary(orders, fills, live.quotes, by=("strategy",))
    assert_frame_equal(got, want, rel_tol=1e-9)


def test_risk_views_use_positions_marks_and_limits(frames):
    live, hist = frames
    out = views.risk_views(live, hist)
    pos = risk.positions(live.orders, live.fills)
    prices = risk.latest_marks(live.quotes)
    want = risk.exposure(pos, prices, by=("strategy",))
    assert_frame_equal(out["exposure_strategy"], want, rel_tol=1e-9)
    assert set(out["limits"].columns) >= {"scope", "name", "utilisation", "breach"}
    assert out["stress"]["scenario"].to_list() == sorted(out["stress"]["scenario"].to_list())


def test_service_views_match_service_summary(frames):
    live, hist = frames
    out = views.service_views(live, hist)
    want = metrics.service_summary(live.requests, qs=views.QUANTILES)
    assert_frame_equal(out["services"], want, rel_tol=1e-9)
    assert {"service", "ts", "error_rate", "flag"} <= set(out["error_anomalies"].columns)


def test_empty_inputs_give_empty_views_not_errors():
    out = views.live_views(views.LiveFrames(), views.HistoryFrames())
    assert out["pnl_by_strategy"].is_empty()
    assert out["services"].is_empty()
    assert out["pnl_book"]["today"] is None


def test_service_level_views_report_each_slo(live_store):
    store, _ = live_store
    out = views.service_level_views(store.scan("requests"))
    assert out["budgets"]["slo"].len() >= 3
    assert out["budgets"]["attainment"].is_between(0, 1).all()
    assert set(out["sla_today"]["service"]) >= {"order-router", "market-data"}
