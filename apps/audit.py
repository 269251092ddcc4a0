"""Audit: search the hash-chained audit trail and verify it (compliance)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import panel as pn

from obsbench import audit
from obsbench.dashboards import events, ui
from obsbench.dashboards.live import Snapshot
from obsbench.dashboards.pages import PageSpec

PAGE = PageSpec(slug="audit", title="Audit", roles=("compliance",), groups=(), order=70)
SHOWN = ["seq", "ts", "actor", "action", "resource", "details", "correlation_id"]


class AuditPage(ui.LivePage):
    spec = PAGE

    def build(self) -> list:
        self.actor = pn.widgets.TextInput(label="Actor", width=180)
        self.action = pn.widgets.MultiChoice(label="Action", options=list(audit.ACTIONS), width=320)
        self.text = pn.widgets.TextInput(label="Text", width=200)
        self.hours = pn.widgets.IntInput(label="Last hours", value=24, start=1, width=110)
        self.search_button = pn.widgets.Button(label="Search", button_type="primary")
        self.verify_button = pn.widgets.Button(label="Verify chain", button_type="default")
        self.results = ui.Table(SHOWN, height=480)
        self.status = pn.pane.Markdown("")
        self.search_button.on_click(self._search)
        self.verify_button.on_click(self._verify)
        self._search()
        return [
            pn.Row(
                self.actor,
                self.action,
                self.text,
                self.hours,
                pn.Column(pn.Spacer(height=18), self.search_button),
                pn.Column(pn.Spacer(height=18), self.verify_button),
            ),
            self.status,
            self.results,
        ]

    def _search(self, *_: object) -> None:
        start = datetime.now(UTC) - timedelta(hours=int(self.hours.value))
        try:
            found = audit.search(
                actor=self.actor.value or None,
                action=self.action.value or None,
                text=self.text.value or None,
                start=start,
                limit=500,
                descending=True,
            )
        except Exception as exc:  # an unreachable audit database is shown, not raised
            self.status.object = f"Audit search failed: {exc}"
            return
        self.results.update(found)
        self.status.object = f"{found.height} event(s), newest first."
        events.record(self.user, "export", "audit/search", {"rows": found.height}, audit=False)

    def _verify(self, *_: object) -> None:
        result = audit.verify()
        head = f"head seq {result.head_seq}"
        self.status.object = (
            f"Chain verified: {result.checked} record(s), {head}."
            if result.ok
            else f"**Chain broken**: {result.problem}"
        )

    def update(self, snap: Snapshot) -> None:
        """Searches run on demand; the tick only refreshes the badge."""


def create() -> object:
    ui.extension()
    return AuditPage().__panel__()


if __name__.startswith("bokeh"):  # `panel serve apps/audit.py`
    create().servable()
