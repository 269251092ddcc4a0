"""Reports: past report runs with status and parameters, and the PDF of the selected run."""

from __future__ import annotations

from pathlib import Path

import panel as pn
import polars as pl

from obsbench.dashboards import ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(
    slug="reports",
    title="Reports",
    roles=("executive", "risk", "operator", "compliance"),
    groups=("reports",),
    order=60,
)
SHOWN = ["started_at", "report", "status", "trigger", "duration_s", "parameters", "error"]


class ReportsPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.runs = ui.Table(SHOWN, formats={"duration_s": "0.0"}, height=420, selectable=1)
        self.download = pn.widgets.FileDownload(
            label="Download PDF", button_type="primary", disabled=True, embed=False
        )
        self.info = pn.pane.Markdown("Select a run to download its PDF.")
        self._runs = pl.DataFrame()
        self.runs.widget.param.watch(self._selected, "selection")
        return [
            pn.Column("### Report runs (newest first)", self.runs),
            pn.Row(self.download, self.info),
        ]

    def _selected(self, *_: object) -> None:
        sel = self.runs.widget.selection
        if not sel or sel[0] >= self._runs.height:
            return
        run = self._runs.row(sel[0], named=True)
        pdf = run.get("pdf")
        if pdf and Path(pdf).is_file():
            self.download.file = pdf
            self.download.filename = f"{run['report']}-{run['run_id']}.pdf"
            self.download.disabled = False
            self.info.object = f"**{run['report']}** run {run['run_id']}: {run['status']}"
        else:
            self.download.disabled = True
            self.info.object = f"**{run['report']}** run {run['run_id']}: no PDF ({run['status']})"

    def update(self, snap: Snapshot) -> None:
        runs = snap.get("report_runs")
        if isinstance(runs, pl.DataFrame):
            self._runs = runs
            self.runs.update(runs)


def create() -> object:
    ui.extension()
    return ReportsPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/reports.py`
    create().servable()
