"""End-to-end time per report, split by stage, on 30 days of simulated data.

    .venv/bin/python benchmarks/bench_reports.py [--days 30] [--keep DIR]

1. Simulates ``--days`` days of the default platform (20 strategies, ~550k requests a day)
   into a temporary OBSBENCH_HOME.
2. Runs each shipped notebook (sla, risk_review, best_execution) through
   :func:`obsbench.reports.run_report` for the whole period, each in a fresh process (as
   ``obsbench report run`` would), and prints the stages the runner records: parent imports
   (papermill, nbconvert, WeasyPrint), kernel start + execution (of which the cells' own
   time), HTML export, PDF, and the total.
3. Renders a 50-page, table-heavy report (a generated notebook with a 2,100 x 7 table) and
   prints the same stages; the PDF stage is WeasyPrint laying out the long table.

Targets (issue #8): each shipped report under 20 s end to end; the PDF stage of the 50-page
report under 15 s. Wall times on a shared 2-core machine are noisy: the CPU seconds of the
whole run are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from harness import threads

REPO = Path(__file__).resolve().parents[1]
TARGET_REPORT_S = 20.0
TARGET_PDF_50_S = 15.0

RUN = """
import json, resource, sys, time
t0 = time.perf_counter()
from obsbench.reports import run_report
params = json.loads(sys.argv[2])
result = run_report(sys.argv[1], params, out=sys.argv[3], history=False)
wall = time.perf_counter() - t0
usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu = sum(u.ru_utime + u.ru_stime for u in usage)
print(json.dumps({"timings": result.timings, "pages": result.pages, "wall": wall, "cpu": cpu}))
"""


def table_notebook(path: Path, rows: int = 2100) -> None:
    """A notebook that prints one long, 7-column table (about 50 A4 pages)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('start: str = "2024-01-01"\nend: str = "2024-01-30"')
    params.metadata["tags"] = ["parameters"]
    body = (
        "import polars as pl\n"
        "import obsbench.reports as rp\n"
        f"n = {rows}\n"
        "frame = pl.DataFrame({\n"
        '    "order": [f"O{i:06d}" for i in range(n)],\n'
        '    "venue": [["XNAS", "XNYS", "BATS", "IEXG"][i % 4] for i in range(n)],\n'
        '    "qty": [100 + (i * 37) % 900 for i in range(n)],\n'
        '    "notional": [1000.0 + i * 1234.5 for i in range(n)],\n'
        '    "fill_rate": [(i % 100) / 100 for i in range(n)],\n'
        '    "slippage": [((i * 7) % 50) / 10 for i in range(n)],\n'
        '    "latency": [10 + (i * 13) % 90 for i in range(n)],\n'
        "})\n"
        'rp.Table(frame, formats={"notional": "usd", "fill_rate": "pct1", '
        '"slippage": "bps_raw", "latency": "ms"}, title="All orders")'
    )
    nb.cells = [
        params,
        nbformat.v4.new_markdown_cell("## Appendix"),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["obsbench"] = {"title": "Table-heavy benchmark report"}
    nbformat.write(nb, path)


def run_one(notebook: str, params: dict, out: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, notebook, json.dumps(params), str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{notebook} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the output here.")
    args = parser.parse_args()

    from obsbench.sim import SimConfig, write_history
    from obsbench.store import Store

    scratch = Path(tempfile.mkdtemp(prefix="obsbench-bench-reports-"))
    home, out = scratch / "home", args.keep or scratch / "reports"
    start = date(2024, 1, 1)
    end = start + timedelta(days=args.days - 1)
    t0 = time.perf_counter()
    write_history(Store(home), SimConfig(days=args.days, start=start))
    counts = Store(home).counts()
    print(f"# simulated {args.days} days in {time.perf_counter() - t0:.1f} s: "
          f"{counts.get('requests', 0):,} requests, {counts.get('orders', 0):,} orders, "
          f"{counts.get('quotes', 0):,} quotes; {threads()}")  # fmt: skip
    env = {**os.environ, "OBSBENCH_HOME": str(home)}
    env.pop("OBSBENCH_DATABASE_URL", None)
    period = {"start": start.isoformat(), "end": end.isoformat()}

    tables = scratch / "table_report.ipynb"
    table_notebook(tables)
    runs = [(name, name, period) for name in ("sla", "risk_review", "best_execution")]
    runs.append(("table_50_pages", str(tables), {}))
    rows = []
    for label, notebook, params in runs:
        rows.append((label, run_one(notebook, params, out, env)))

    print("report,pages,imports_s,kernel_and_execution_s,of_which_cells_s,html_s,pdf_s,"
          "total_s,process_wall_s,process_cpu_s,target")  # fmt: skip
    failed = []
    for label, r in rows:
        t = r["timings"]
        if label == "table_50_pages":
            target, ok = f"pdf<{TARGET_PDF_50_S:.0f}s", t["pdf"] < TARGET_PDF_50_S
        else:
            target, ok = f"total<{TARGET_REPORT_S:.0f}s", r["wall"] < TARGET_REPORT_S
        if not ok:
            failed.append(label)
        print(
            f"{label},{r['pages']},{t['imports']:.2f},{t['execute']:.2f},{t['cells']:.2f},"
            f"{t['html']:.2f},{t['pdf']:.2f},{t['total']:.2f},{r['wall']:.2f},{r['cpu']:.2f},"
            f"{target} {'ok' if ok else 'MISSED'}"
        )
    print(f"# output in {out}" if args.keep else f"# scratch {scratch} (delete it when done)")
    if failed:
        print(f"# targets missed: {', '.join(failed)} (check the machine load: `uptime`)")


if __name__ == "__main__":
    main()
