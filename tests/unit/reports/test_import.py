from __future__ import annotations

import subprocess
import sys


def test_import_reports_and_cli_stay_cheap() -> None:
    """Importing obsbench.reports (and the CLI that registers its commands) loads no heavy stack."""
    heavy = ("papermill", "nbconvert", "weasyprint", "matplotlib", "nbclient", "jupyter_client")
    code = (
        "import sys, obsbench.reports, obsbench.cli, obsbench.reports.format; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
