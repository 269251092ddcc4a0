from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _fixtures():  # tests/ is not a package: load the shared report fixtures by path
    name = "obsbench_test_report_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parents[2] / "reports_fixtures.py"
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


smtp_server = _fixtures().smtp_server
webhook_server = _fixtures().webhook_server
