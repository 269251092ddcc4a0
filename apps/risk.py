"""Risk: exposure by strategy/symbol/sector, VaR/CVaR, stress, correlation, drawdowns, limits."""

from __future__ import annotations

import panel as pn

from obsbench.dashboards import ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(slug="risk", title="Risk", roles=("risk",), groups=("risk", "history"), order=30)
EXPOSURE = ["long", "short", "gross", "net"]
MONEY = dict.fromkeys([*EXPOSURE, "value", "limit", "pnl"], "0,0")


class RiskPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.by_strategy = ui.LiveTable(["strategy", *EXPOSURE], formats=MONEY, height=300)
        self.by_symbol = ui.LiveTable(["symbol", *EXPOSURE], formats=MONEY, height=300)
        self.by_sector = ui.LiveTable(["sector", *EXPOSURE], formats=MONEY, height=300)
        self.var = ui.LiveTable(
            [
                "strategy",
                "value_at_risk",
                "conditional_value_at_risk",
                "value_at_risk_gaussian",
                "value_at_risk_cornish_fisher",
                "max_drawdown",
            ],
            formats=dict.fromkeys(
                [
                    "value_at_risk",
                    "conditional_value_at_risk",
                    "value_at_risk_gaussian",
                    "value_at_risk_cornish_fisher",
                    "max_drawdown",
                ],
                "0.00%",
            ),
            titles={"value_at_risk": "VaR 95% (hist.)", "conditional_value_at_risk": "CVaR 95%"},
            height=300,
        )
        self.stress = ui.LiveTable(["scenario", "net", "pnl"], formats=MONEY, height=150)
        self.limits = ui.LiveTable(
            ["scope", "name", "metric", "value", "limit", "utilisation", "breach"],
            formats={**MONEY, "utilisation": "0.0%"},
            height=300,
        )
        self.corr = ui.Heatmap(
            "Correlation of daily returns", x="other", y="strategy", value="corr", height=420
        )
        self.drawdown = ui.LineChart(
            "Drawdown by strategy (daily returns)", y="drawdown", by="strategy", height=420
        )
        return [
            pn.Row(
                pn.Column("### Exposure by strategy", self.by_strategy),
                pn.Column("### by symbol", self.by_symbol),
                pn.Column("### by sector", self.by_sector),
            ),
            pn.Row(
                pn.Column("### VaR / CVaR per strategy (daily, 95%)", self.var),
                pn.Column(
                    "### Stress tests (whole book)",
                    self.stress,
                    "### Risk-limit utilisation",
                    self.limits,
                ),
            ),
            pn.Row(self.corr, self.drawdown),
        ]

    def update(self, snap: Snapshot) -> None:
        self.by_strategy.update(snap.get("exposure_strategy"))
        self.by_symbol.update(snap.get("exposure_symbol"))
        self.by_sector.update(snap.get("exposure_sector"))
        self.var.update(snap.get("var_by_strategy"))
        self.stress.update(snap.get("stress"))
        self.limits.update(snap.get("limits"))
        self.corr.update(snap.get("correlation"))
        self.drawdown.update(snap.get("drawdown"))


def create() -> object:
    ui.extension()
    return RiskPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/risk.py`
    create().servable()
