"""Operations: service health, latency, error rates with anomalies, error budgets, quotas."""

from __future__ import annotations

import panel as pn

from obsbench.dashboards import ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(
    slug="operations",
    title="Operations",
    roles=("operator",),
    groups=("services", "quotas", "service_levels"),
    order=40,
)


class OperationsPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.health = ui.LiveTable(
            [
                "service",
                "requests",
                "error_rate",
                "p50",
                "p95",
                "p99",
                "availability",
                "sla_attainment",
            ],
            formats={
                "requests": "0,0",
                "error_rate": "0.00%",
                "p50": "0,0",
                "p95": "0,0",
                "p99": "0,0",
                "availability": "0.00%",
                "sla_attainment": "0.00%",
            },
            titles={"p50": "p50 ms", "p95": "p95 ms", "p99": "p99 ms"},
            height=300,
        )
        self.matrix = ui.Heatmap(
            "Error rate by service and minute",
            x="minute",
            y="service",
            value="error_rate",
            diverging=False,
            fmt="{0.00%}",
            height=300,
        )
        self.latency = ui.LineChart(
            "p99 latency by service (ms, per minute)", y="p99", by="service", y_label="ms"
        )
        self.errors = ui.LineChart(
            "Error rate by service (▲ anomaly)",
            y="error_rate",
            by="service",
            scatter="flag",
            y_label="error rate",
        )
        self.budgets = ui.LiveTable(
            [
                "slo",
                "objective",
                "attainment",
                "budget_remaining",
                "burn_rate",
                "burn_rate_1h",
                "burn_rate_5m",
            ],
            formats={
                "objective": "0.00%",
                "attainment": "0.000%",
                "budget_remaining": "0.0%",
                "burn_rate": "0.00",
                "burn_rate_1h": "0.00",
                "burn_rate_5m": "0.00",
            },
            height=220,
        )
        self.quotas = ui.LiveTable(
            [
                "provider",
                "endpoint",
                "limit",
                "last_utilisation",
                "mean_utilisation",
                "peak_utilisation",
                "throttled_requests",
                "time_to_exhaustion_s",
            ],
            formats={
                "last_utilisation": "0%",
                "mean_utilisation": "0%",
                "peak_utilisation": "0%",
                "throttled_requests": "0,0",
                "time_to_exhaustion_s": "0,0",
            },
            height=220,
        )
        return [
            pn.Row(pn.Column("### Service health (last 60 min)", self.health), self.matrix),
            pn.Row(self.latency, self.errors),
            pn.Row(
                pn.Column("### Error budgets and burn rates", self.budgets),
                pn.Column("### Broker API quota use (last 5 min)", self.quotas),
            ),
        ]

    def update(self, snap: Snapshot) -> None:
        self.health.update(snap.get("services"))
        self.matrix.update(snap.get("error_matrix"))
        self.latency.update(snap.get("service_buckets"))
        self.errors.update(snap.get("error_anomalies"))
        self.budgets.update(snap.get("budgets"))
        self.quotas.update(snap.get("quotas"))


def create() -> object:
    ui.extension()
    return OperationsPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/operations.py`
    create().servable()
