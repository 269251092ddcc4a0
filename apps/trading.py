"""Trading: live P&L by strategy and symbol, execution quality, market-data latency, order flow."""

from __future__ import annotations

import panel as pn

from obsbench.dashboards import ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(
    slug="trading",
    title="Trading",
    roles=("trader", "risk"),
    groups=("pnl", "activity", "execution", "services"),
    order=20,
)
PNL = ["strategy", "total_pnl", "trading_pnl", "position_pnl", "fee_pnl"]
MONEY = dict.fromkeys(("total_pnl", "trading_pnl", "position_pnl", "fee_pnl"), "0,0")


class TradingPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.pnl_today = ui.Number("P&L today")
        self.orders = ui.Number("Orders today")
        self.fill_rate = ui.Number("Fill rate today", "{:.1%}")
        self.by_strategy = ui.LiveTable(PNL, formats=MONEY, height=330)
        self.by_symbol = ui.LiveTable(["symbol", *PNL[1:]], formats=MONEY, height=330)
        self.execution = ui.LiveTable(
            [
                "strategy",
                "orders",
                "fills",
                "fill_rate",
                "slippage_bps",
                "implementation_shortfall_bps",
                "latency_p50_ms",
                "latency_p95_ms",
                "latency_p99_ms",
            ],
            formats={
                "fill_rate": "0.0%",
                "slippage_bps": "0.00",
                "implementation_shortfall_bps": "0.00",
                "latency_p50_ms": "0,0",
                "latency_p95_ms": "0,0",
                "latency_p99_ms": "0,0",
            },
            height=330,
        )
        self.md_latency = ui.LineChart(
            "Market-data latency p99 (ms, per minute)", y="p99", by="service", y_label="ms"
        )
        self.order_flow = ui.LineChart(
            "Order flow (orders per minute)", y="orders", by="side", y_label="orders"
        )
        return [
            pn.Row(self.pnl_today, self.orders, self.fill_rate),
            pn.Row(
                pn.Column("### P&L by strategy (today)", self.by_strategy),
                pn.Column("### P&L by symbol (today)", self.by_symbol),
            ),
            pn.Column("### Execution quality (orders of the last 15 min)", self.execution),
            pn.Row(self.md_latency, self.order_flow),
        ]

    def update(self, snap: Snapshot) -> None:
        book = snap.get("pnl_book") or {}
        self.pnl_today.update(book.get("today"), signed=True)
        activity = snap.get("activity")
        if activity is not None and activity.height:
            self.orders.update(activity["orders"][0])
            self.fill_rate.update(activity["fill_rate"][0])
        self.by_strategy.update(snap.get("pnl_by_strategy"))
        self.by_symbol.update(snap.get("pnl_by_symbol"))
        self.execution.update(snap.get("execution"))
        self.md_latency.update(snap.get("md_latency"))
        self.order_flow.update(snap.get("order_flow"))


def create() -> object:
    ui.extension()
    return TradingPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/trading.py`
    create().servable()
