"""``python -m obsbench`` runs the CLI."""

from __future__ import annotations

from obsbench.cli import app

app(prog_name="obsbench")
