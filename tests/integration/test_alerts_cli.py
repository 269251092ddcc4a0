"""``obsbench alerts ...`` end to end on a simulated store (SQLite in a temp home)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from obsbench.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console() -> None:
    import obsbench.cli
    from obsbench.alerts import _cli

    for c in (_cli.console, _cli.err_console, obsbench.cli.console, obsbench.cli.err_console):
        c.width = 300


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import UTC, datetime, timedelta

    from obsbench.sim import Incident, SimConfig, write_history
    from obsbench.store import Store

    home = tmp_path_factory.mktemp("home")
    cfg = SimConfig.small(days=1, incident_rate=0)
    day = datetime.combine(cfg.start, datetime.min.time(), UTC)
    burst = Incident(
        "error_burst", "order-router", day + timedelta(hours=14, minutes=20),
        day + timedelta(hours=14, minutes=40), magnitude=80.0,
    )  # fmt: skip
    write_history(Store(home), cfg.with_incidents(burst))
    return home


def test_check_lists_the_shipped_rules() -> None:
    code, out = run("alerts", "check", str(ROOT / "rules"))
    assert code == 0, out
    assert "ApiErrorRateHigh" in out
    assert "ok" in out


def test_check_reports_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: X\n    signal: {promql: up}\n    thresholds: {warning: x}\n")
    code, out = run("alerts", "check", str(bad))
    assert code == 2
    assert "bad.yaml:4: rules[0].thresholds.warning: Input should be a valid number" in out


def test_backtest_on_the_store(sim_home: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "summary.csv"
    code, out = run(
        "alerts", "backtest", str(ROOT / "rules" / "platform.yaml"),
        "--from", "2024-01-01", "--to", "2024-01-02", "--home", str(sim_home),
        "--output", str(out_csv),
    )  # fmt: skip
    assert code == 0, out
    assert "ApiErrorRateHigh" in out
    import polars as pl

    summary = pl.read_csv(out_csv)
    row = summary.filter(pl.col("rule") == "ApiErrorRateHigh").row(0, named=True)
    assert row["incidents"] == 1
    assert row["detected"] == 1
    assert row["evaluations"] == 1441


def test_run_silence_ack_list(sim_home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    code, out = run(
        "alerts", "run", str(ROOT / "rules" / "platform.yaml"), "--cycles", "1",
        "--interval", "1s", "--home", str(sim_home), "--database", db,
    )  # fmt: skip
    assert code == 0, out
    assert "evaluating 5 rule(s)" in out
    assert "rules=5" in out
    code, out = run("alerts", "silence", 'service="order-router"', "--duration", "2h",
                    "--comment", "deploy", "--database", db)  # fmt: skip
    assert code == 0, out
    sid = out.split()[1]
    code, out = run("alerts", "list", "--database", db)
    assert code == 0
    assert "deploy" in out
    # the 2024 history has no data now: the one rule with no_data: nodata says so
    assert "1 active alert(s)" in out
    code, out = run("alerts", "list", "--json", "--database", db)
    import json

    doc = json.loads(out)
    assert [(a["rule"], a["state"]) for a in doc["alerts"]] == [("ApiErrorRateHigh", "nodata")]
    assert doc["silences"][0]["comment"] == "deploy"
    code, out = run("alerts", "ack", "ffff", "--database", db)
    assert code == 2
    assert "unknown active alert" in out
    code, out = run("alerts", "silence", "--expire", sid, "--database", db)
    assert code == 0
    assert "expired" in out
