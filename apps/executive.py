"""Executive: P&L today/MTD/YTD with trend, activity, availability and SLA, exposure, top names."""

from __future__ import annotations

import panel as pn
import polars as pl

from obsbench.dashboards import ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(
    slug="executive",
    title="Executive",
    roles=("executive",),
    groups=("pnl", "activity", "risk", "history", "service_levels"),
    order=10,
)


class ExecutivePage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.today = ui.Number("P&L today")
        self.mtd = ui.Number("P&L month to date")
        self.ytd = ui.Number("P&L year to date")
        self.orders = ui.Number("Orders today")
        self.fills = ui.Number("Fills today")
        self.shares = ui.Number("Shares traded today")
        self.intraday = ui.LineChart("P&L today (book)", y="pnl_today", y_label="P&L")
        self.trend = ui.LineChart(
            "Cumulative P&L by day (book)", x="date", y="cumulative_pnl", y_label="P&L"
        )
        self.sla = ui.LiveTable(
            ["service", "availability", "sla_attainment", "error_rate", "p99", "requests"],
            formats={
                "availability": "0.00%",
                "sla_attainment": "0.00%",
                "error_rate": "0.00%",
                "p99": "0,0",
                "requests": "0,0",
            },
            titles={"p99": "p99 latency (ms)", "sla_attainment": "SLA (≤250 ms)"},
            height=300,
        )
        self.heat = ui.Heatmap(
            "Net exposure by strategy and sector",
            x="sector",
            y="strategy",
            value="net",
            fmt="{0,0}",
        )
        self.top = ui.LiveTable(
            ["strategy", "sharpe_ratio", "total_return", "max_drawdown", "annual_volatility"],
            formats={
                "sharpe_ratio": "0.00",
                "total_return": "0.00%",
                "max_drawdown": "0.00%",
                "annual_volatility": "0.00%",
            },
            height=220,
        )
        self.top_today = ui.LiveTable(
            ["strategy", "total_pnl"], formats={"total_pnl": "0,0"}, height=220
        )
        return [
            pn.Row(self.today, self.mtd, self.ytd, self.orders, self.fills, self.shares),
            pn.Row(self.intraday, self.trend),
            pn.Row(
                pn.Column("### Availability and SLA today", self.sla),
                self.heat,
            ),
            pn.Row(
                pn.Column("### Top strategies (daily returns, by Sharpe)", self.top),
                pn.Column("### Top strategies today (P&L)", self.top_today),
            ),
        ]

    def update(self, snap: Snapshot) -> None:
        book = snap.get("pnl_book") or {}
        self.today.update(book.get("today"), signed=True)
        self.mtd.update(book.get("mtd"), signed=True)
        self.ytd.update(book.get("ytd"), signed=True)
        activity = snap.get("activity")
        if isinstance(activity, pl.DataFrame) and activity.height:
            self.orders.update(activity["orders"][0])
            self.fills.update(activity["fills"][0])
            self.shares.update(activity["filled_qty"][0])
        self.intraday.update(snap.get("pnl_intraday"))
        self.trend.update(book.get("trend"))
        self.sla.update(snap.get("sla_today"))
        self.heat.update(snap.get("exposure_heat"))
        self.top.update(snap.get("top_strategies"))
        self.top_today.update(snap.get("top_today"))


def create() -> object:
    ui.extension()
    return ExecutivePage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/executive.py`
    create().servable()
