"""Each shipped report notebook, run for real on a small simulated store.

The key figures are recomputed here from the raw data with plain polars/numpy (not with the
obsbench metric functions the notebooks call) and must appear, formatted, in the PDF text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pypdf import PdfReader

from obsbench.reports import fmt_int, fmt_num, fmt_pct, run_report

START, END = "2024-01-01", "2024-01-03"


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """OBSBENCH_HOME with three simulated days (small platform, a few incidents)."""
    from obsbench.sim import SimConfig, write_history
    from obsbench.store import Store

    home = tmp_path_factory.mktemp("home")
    config = SimConfig.small(days=3, start=date(2024, 1, 1), incident_rate=1.0, seed=11)
    write_history(Store(home), config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OBSBENCH_HOME", str(home))
        mp.delenv("OBSBENCH_DATABASE_URL", raising=False)
        yield home


def read(home: Path, dataset: str) -> pl.DataFrame:
    from obsbench.store import Store

    return Store(home).read(dataset)


def run(name: str, tmp_path: Path, **params: object) -> tuple[list[str], int]:
    result = run_report(name, {"start": START, "end": END, **params}, out=tmp_path)
    pages = [p.extract_text() for p in PdfReader(result.pdf).pages]
    assert len(pages) == result.pages
    for i, page in enumerate(pages[1:], start=2):  # running header and footer
        assert f"{START} – {END}" in page
        assert f"Page {i} of {len(pages)}" in page
    assert not result.manifest["stderr"], result.manifest["stderr"]  # no warnings
    assert result.manifest["input"]["files"] > 0
    return pages, result.pages


def test_sla_report(store_home: Path, tmp_path: Path) -> None:
    pages, n = run("sla", tmp_path, threshold_ms=250.0)
    text = "\n".join(pages)
    assert n >= 4
    assert "SLA report" in pages[0]
    for section in ("Summary", "Service levels by service", "Error budgets", "Incidents"):
        assert section in pages[1]  # table of contents
    requests = read(store_home, "requests")
    assert fmt_int(requests.height) in text
    within = requests.select((pl.col("ok") & (pl.col("latency_ms") <= 250)).mean()).item()
    assert fmt_pct(within, 3) in text
    per_service = requests.group_by("service").agg(
        pl.len().alias("n"), (~pl.col("ok")).mean().alias("err")
    )
    for service, count, err in per_service.iter_rows():
        assert f"{service}" in text or service.replace("-", "-\n") in text
        assert fmt_int(count) in text
        assert fmt_pct(err, 3) in text
    for incident_id in read(store_home, "incidents")["incident_id"]:
        assert incident_id in text


def test_risk_review(store_home: Path, tmp_path: Path) -> None:
    pages, n = run("risk_review", tmp_path, var_level=0.95)
    text = "\n".join(pages)
    assert n >= 4
    for section in ("Returns and risk by strategy", "Value at risk", "Drawdowns",
                    "Stress tests", "Correlations"):  # fmt: skip
        assert section in pages[1]
    returns = read(store_home, "returns").sort("ts")
    for (strategy,), part in returns.group_by("strategy"):
        r = part["ret"].to_numpy()
        sharpe = r.mean() / r.std(ddof=1) * math.sqrt(252)
        wealth = np.cumprod(1 + r)
        max_dd = (wealth / np.maximum.accumulate(np.maximum(wealth, 1.0))).min() - 1
        total = wealth[-1] - 1
        assert f"{strategy}" in text
        assert fmt_num(sharpe) in text, (strategy, sharpe)
        assert fmt_pct(max_dd) in text, (strategy, max_dd)
        assert fmt_pct(total) in text, (strategy, total)
    assert "equity crash" in text


def test_best_execution(store_home: Path, tmp_path: Path) -> None:
    pages, n = run("best_execution", tmp_path)
    text = "\n".join(pages)
    assert n >= 4
    for section in ("By venue", "By broker", "Venue and broker pairs", "By strategy"):
        assert section in pages[1]
    orders, fills = read(store_home, "orders"), read(store_home, "fills")
    assert fmt_int(orders.height) in text
    assert fmt_int(fills.height) in text
    filled = fills.group_by("order_id").agg(pl.col("qty").sum().alias("filled"))
    per_venue = (
        orders.join(filled, on="order_id", how="left")
        .group_by("venue")
        .agg(pl.len().alias("n"), (pl.col("filled").fill_null(0).sum() / pl.col("qty").sum()))
    )
    for venue, count, rate in per_venue.iter_rows():
        assert f"{venue} {fmt_int(count)}" in text
        assert fmt_pct(rate, 1) in text, (venue, rate)


def test_a_period_without_data_fails_the_report(store_home: Path, tmp_path: Path) -> None:
    from obsbench.errors import ReportCellError

    with pytest.raises(ReportCellError) as info:
        run_report("sla", {"start": "2023-06-01", "end": "2023-06-30"}, out=tmp_path)
    assert info.value.ename == "ReportDataError"
    assert "no requests data for 2023-06-01 – 2023-06-30" in info.value.evalue
    assert not list(tmp_path.rglob("*.pdf"))


def test_stale_data_is_refused(store_home: Path, tmp_path: Path) -> None:
    from obsbench.errors import ReportCellError

    with pytest.raises(ReportCellError, match="does not cover"):
        run_report("best_execution", {"start": START, "end": "2024-01-20"}, out=tmp_path)
