"""Alerts: active and recent alerts (pushed live), acknowledge and silence, per-rule history."""

from __future__ import annotations

from datetime import timedelta

import panel as pn
import polars as pl

from obsbench.dashboards import alerts_feed, ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(
    slug="alerts",
    title="Alerts",
    roles=("trader", "risk", "operator", "compliance"),
    groups=(),
    order=50,
)
SHOWN = ["received", "status", "severity", "rule", "summary", "value", "labels", "starts_at"]
ACTIVE = [*SHOWN, "acked_by", "fingerprint"]


def _frame(rows: list[dict], columns: list[str]) -> pl.DataFrame:
    schema = {c: (pl.Float64 if c == "value" else pl.String) for c in columns}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema)


class AlertsPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        recent, active = self.rt.book.snapshot()
        self.active = ui.Table(ACTIVE, height=260, selectable=1)
        self.recent = ui.Table(SHOWN, height=360)
        self.active.update(_frame(active, ACTIVE))
        self.recent.update(_frame(recent[-200:], SHOWN))
        self.comment = pn.widgets.TextInput(placeholder="comment (optional)", width=260)
        self.ack = pn.widgets.Button(label="Acknowledge", button_type="primary", disabled=True)
        self.duration = pn.widgets.Select(
            options={"15 min": 15, "1 hour": 60, "4 hours": 240}, value=60, width=110
        )
        self.mute = pn.widgets.Button(label="Silence rule", button_type="warning", disabled=True)
        self.status = pn.pane.Markdown("Select an active alert to acknowledge or silence it.")
        self.rule = pn.widgets.Select(label="Rule history", options=self._rules(recent), width=300)
        self.history = ui.Table(SHOWN, height=260)
        self.active.widget.param.watch(self._selected, "selection")
        self.ack.on_click(self._acknowledge)
        self.mute.on_click(self._silence)
        self.rule.param.watch(self._show_rule, "value")
        self._show_rule()
        return [
            pn.Column("### Active alerts", self.active),
            pn.Row(self.comment, self.ack, self.duration, self.mute),
            self.status,
            pn.Column("### Recent alerts (newest at the bottom)", self.recent),
            pn.Column(self.rule, self.history),
        ]

    @staticmethod
    def _rules(rows: list[dict]) -> list[str]:
        return sorted({r["rule"] for r in rows if r["rule"]})

    def _row(self) -> dict | None:
        sel = self.active.widget.selection
        value = self.active.widget.value
        if not sel or value is None or sel[0] >= len(value):
            return None
        return value.iloc[sel[0]].to_dict()

    def _selected(self, *_: object) -> None:
        has = self._row() is not None
        self.ack.disabled = self.mute.disabled = not has

    def _acknowledge(self, *_: object) -> None:
        row = self._row()
        if row is None:
            return
        try:
            alerts_feed.acknowledge(row, self.user, self.comment.value)
        except Exception as exc:
            self.status.object = f"Could not acknowledge **{row['rule']}**: {exc}"
            return
        self.status.object = f"Acknowledged **{row['rule']}** as {self.user}."

    def _silence(self, *_: object) -> None:
        row = self._row()
        if row is None:
            return
        minutes = int(self.duration.value)
        sid = alerts_feed.silence(
            {"alertname": row["rule"]},
            self.user,
            duration=timedelta(minutes=minutes),
            comment=self.comment.value,
        )
        self.status.object = f"Silenced **{row['rule']}** for {minutes} min ({sid[:8]})."

    def _show_rule(self, *_: object) -> None:
        if self.rule.value:
            self.history.update(_frame(self.rt.book.rule_history(self.rule.value), SHOWN))

    def on_alert(self, rows: list[dict]) -> None:
        recent, active = self.rt.book.snapshot()
        shown = [r for r in rows if r["status"] != "acknowledged"]
        if shown:
            self.recent.widget.stream(_frame(shown, SHOWN).to_pandas(), rollover=200, follow=True)
        self.active.update(_frame(active, ACTIVE))
        rules = self._rules(recent)
        if rules != self.rule.options:
            self.rule.options = rules
        if self.rule.value in {r["rule"] for r in rows}:  # its history changed
            self._show_rule()

    def update(self, snap: Snapshot) -> None:
        """Alerts arrive by push (:meth:`on_alert`); the tick only refreshes the badge."""


def create() -> object:
    ui.extension()
    return AlertsPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/alerts.py`
    create().servable()
