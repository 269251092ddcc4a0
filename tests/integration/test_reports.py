"""The report runner on real kernels: tiny fixture notebooks, papermill, nbconvert, WeasyPrint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from obsbench.errors import ParameterError, ReportCellError
from obsbench.reports import run_report
from obsbench.reports.history import History

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def _fixtures():  # tests/ is not a package: load the shared report fixtures by path
    import importlib.util

    name = "obsbench_test_report_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parents[1] / "reports_fixtures.py"
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


smtp_server = _fixtures().smtp_server


def pdf_pages(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


@pytest.fixture
def out(tmp_path: Path, home: Path) -> Path:
    return tmp_path / "reports"


def test_a_run_writes_notebook_html_pdf_and_manifest_atomically(out: Path) -> None:
    rows = 150
    result = run_report(
        NOTEBOOKS / "params.ipynb",
        {"rows": str(rows), "scale": "2.5", "names": "alpha,beta"},
        out=out,
    )
    assert result.out_dir == out / "params" / result.run_id
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "manifest.json", "params.html", "params.ipynb", "params.pdf",
    ]  # fmt: skip
    assert [p.name for p in (out / "params").iterdir()] == [result.run_id]  # no partial dir
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["parameters"] == {
        "rows": rows, "scale": 2.5, "names": ["alpha", "beta"], "interactive": False,
    }  # fmt: skip
    assert manifest["effective_parameters"]["start"] == "2024-01-01"
    assert manifest["obsbench_version"]
    assert manifest["git_commit"] is None or len(manifest["git_commit"]) >= 40
    assert set(manifest["timings_s"]) >= {"imports", "execute", "cells", "html", "pdf", "total"}
    assert manifest["sections"] == ["Parameters seen by the kernel", "Long table"]
    assert manifest["pages"] == result.pages
    assert any("something noisy" in s for s in manifest["stderr"])  # kept out of the PDF
    assert f"<td>{result.run_id}</td>" in (out / "index.html").read_text()


def test_the_pdf_shows_the_parameters_tables_header_footer_and_metadata(out: Path) -> None:
    rows = 150
    result = run_report(NOTEBOOKS / "params.ipynb", {"rows": rows, "scale": 2.5}, out=out)
    pages = pdf_pages(result.pdf)
    n = len(pages)
    assert n == result.pages >= 5  # title, contents, and a table over several pages
    text = "\n".join(pages)
    # The kernel saw the validated values; numbers are formatted once, by obsbench.reports.
    assert "2.500" in pages[2]  # fmt_num(scale, 3)
    assert "False" in pages[2]  # interactive=False in report mode
    assert str(Path(sys.prefix) / "bin" / "python") in text  # the project venv ran it
    last_x = (rows - 1) * 2.5 * 1000.5
    assert f"${last_x:,.2f}" in text
    assert "$1,000,500.00" not in text or rows > 400
    # Title page, contents with page numbers, running header and footer on every page.
    assert "Params fixture" in pages[0]
    assert "Contents" in pages[1]
    assert "Long table" in pages[1]
    for i, page in enumerate(pages, start=1):
        assert f"Page {i} of {n}" in page
        assert "obsbench · generated" in page
        if i > 1:
            assert "Params fixture" in page
            assert "2024-01-01 – 2024-01-31" in page
    # The long table's header row repeats on each page it spans.
    table_pages = [p for p in pages[2:] if "$" in p]
    assert len(table_pages) >= 2
    assert all("Rows" in p for p in table_pages)
    # No code and no removed cells in the PDF.
    assert "import polars" not in text
    assert "# Params fixture" not in text
    assert "something noisy" not in text
    meta = PdfReader(result.pdf).metadata
    assert (meta.title, meta.author, meta.subject) == ("Params fixture", "obsbench", "fixture")


def test_the_pdf_embeds_the_named_fonts(out: Path) -> None:
    result = run_report(NOTEBOOKS / "params.ipynb", out=out)
    fonts = subprocess.run(
        ["pdffonts", str(result.pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "DejaVu-Sans" in fonts
    for line in fonts.splitlines()[2:]:
        assert " yes yes " in line  # embedded and subset


def test_letter_pages(out: Path) -> None:
    result = run_report(NOTEBOOKS / "params.ipynb", out=out, page_size="Letter")
    box = PdfReader(result.pdf).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)


def test_a_failing_cell_fails_the_run_and_leaves_no_pdf(out: Path) -> None:
    with pytest.raises(ReportCellError) as info:
        run_report(NOTEBOOKS / "broken.ipynb", out=out)
    err = info.value
    assert (err.ename, err.evalue) == ("ZeroDivisionError", "division by zero")
    assert err.cell_index == 3
    assert err.exec_count == 3
    kept = Path(err.notebook_path)
    assert kept.exists()
    assert kept.parent.name.endswith(".failed")
    assert sorted(p.name for p in kept.parent.iterdir()) == ["broken.ipynb", "manifest.json"]
    assert not list(out.rglob("*.pdf"))
    assert not list(out.rglob("*.html")) or [p.name for p in out.rglob("*.html")] == ["index.html"]
    manifest = json.loads((kept.parent / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"]["cell_index"] == 3
    executed = json.loads(kept.read_text())
    assert executed["metadata"]["papermill"]["exception"] is True
    [run] = History().runs(report="broken")
    assert run["status"] == "failed"
    assert "ZeroDivisionError" in run["error"]


def test_bad_parameters_fail_before_any_kernel_starts(out: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ParameterError) as info:
        run_report(NOTEBOOKS / "params.ipynb", {"rows": "many", "colour": "red"}, out=out)
    assert time.perf_counter() - t0 < 1.0  # no kernel
    assert len(info.value.problems) == 2
    assert not out.exists()


def test_a_notebook_without_parameters_cell_runs(out: Path) -> None:
    result = run_report(NOTEBOOKS / "noparams.ipynb", out=out)
    assert "hello" in "\n".join(pdf_pages(result.pdf))
    assert result.manifest["parameters"] == {}


def test_render_in_a_child_process(out: Path) -> None:
    result = run_report(NOTEBOOKS / "params.ipynb", {"rows": 40}, out=out, isolate_pdf=True)
    assert result.pages == len(PdfReader(result.pdf).pages)


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OBSBENCH_HOME": str(home), "COLUMNS": "250"}
    env.pop("OBSBENCH_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "obsbench", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_cli_run_list_and_failure_exit_codes(out: Path, home: Path) -> None:
    ok = cli("report", "run", str(NOTEBOOKS / "params.ipynb"), "-p", "rows=3", "--out", str(out),
             home=home)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "params.pdf" in ok.stdout
    bad = cli("report", "run", str(NOTEBOOKS / "broken.ipynb"), "--out", str(out), home=home)
    assert bad.returncode != 0
    assert "ZeroDivisionError" in bad.stderr
    assert "broken.ipynb" in bad.stderr
    typo = cli("report", "run", str(NOTEBOOKS / "params.ipynb"), "-p", "rowz=3", home=home)
    assert typo.returncode == 2
    assert "did you mean 'rows'" in typo.stderr
    listing = cli("report", "list", "--out", str(out), home=home)
    assert listing.returncode == 0
    assert "params" in listing.stdout
    assert "failed" in listing.stdout
    params = cli("report", "params", str(NOTEBOOKS / "params.ipynb"), home=home)
    assert "list[str] | None" in params.stdout
    lab = cli("lab", "--dry-run", "--no-browser", "--notebooks", str(NOTEBOOKS), home=home)
    assert lab.returncode == 0
    assert "default_kernel_name=obsbench" in lab.stdout.replace("\n", "")


def test_scheduler_runs_a_real_report_and_mails_the_pdf(
    out: Path, tmp_path: Path, smtp_server
) -> None:
    from datetime import UTC, datetime

    import yaml

    from obsbench.reports.schedule import Scheduler, load_schedules

    folder = tmp_path / "scheduled"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        yaml.safe_dump({
            "report": "params",
            "schedule": {"cron": "0 6 * * mon-fri", "timezone": "Europe/London"},
            "parameters": {"start": "{{ previous_business_day }}", "rows": 4},
            "delivery": [{"type": "email", "to": ["risk@example.com"],
                          "host": smtp_server.host, "port": smtp_server.port}],
        })
    )  # fmt: skip
    history = History()
    sch = Scheduler(
        load_schedules(folder), history=history, out=out, notebooks=NOTEBOOKS,
        clock=lambda: datetime(2026, 3, 30, 5, 0, 30, tzinfo=UTC),  # Monday 06:00:30 BST
    )  # fmt: skip
    [outcome] = sch.tick()
    assert outcome.action == "ran", outcome.detail
    [mail] = smtp_server.messages
    [pdf] = [p for p in mail.walk() if p.get_filename() == "params.pdf"]
    assert pdf.get_payload(decode=True).startswith(b"%PDF")
    [run] = history.runs(schedule_id="p")
    assert (run["status"], run["trigger"]) == ("ok", "schedule")
    assert run["parameters"]["start"] == "2026-03-27"  # previous business day of Monday
