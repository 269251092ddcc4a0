from __future__ import annotations

import subprocess
import sys

HEAVY = ("panel", "papermill", "weasyprint", "sqlalchemy", "pandas", "bokeh", "matplotlib")


def test_import_obsbench_is_cheap() -> None:
    """``import obsbench`` must not pull in the dashboard, report or database stacks."""
    code = (
        "import sys, obsbench; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_with_heavy_packages_blocked() -> None:
    """The core works where the heavy packages are not even installed."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {('panel', 'papermill', 'weasyprint', 'bokeh')!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import polars as pl, obsbench as ob\n"
        "df = pl.DataFrame({'strategy': ['a'], 'ts': [__import__('datetime').date(2026, 1, 5)],"
        " 'ret': [0.01]})\n"
        "print(ob.schemas.validate(df, 'returns').height)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"


def test_every_advertised_submodule_imports() -> None:
    """Each name in ``obsbench.__all__`` resolves (a lazy submodule must exist)."""
    code = "import obsbench as ob; [getattr(ob, name) for name in ob.__all__]; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
