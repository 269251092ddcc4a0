"""Smoke tests of the ``obsbench`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "OBSBENCH_HOME": str(home), "COLUMNS": "200", **env}
    environ.pop("OBSBENCH_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "obsbench", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = run("--help", home=tmp_path)
    assert out.returncode == 0
    for command in ("sim", "demo", "info"):
        assert command in out.stdout


def test_sim_then_info_reports_row_counts(tmp_path: Path) -> None:
    sim = run("sim", "--days", "1", "--seed", "3", home=tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert "requests" in sim.stdout
    info = run("info", home=tmp_path)
    assert info.returncode == 0, info.stderr
    assert str(tmp_path) in info.stdout
    for dataset in ("requests", "orders", "fills", "quotes", "returns", "incidents"):
        assert dataset in info.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(("sim", "--days", "0"), {}, "Invalid value", id="days_below_range"),
        pytest.param(("sim", "--days", "two"), {}, "Invalid value", id="days_not_a_number"),
        pytest.param(("sim", "--start", "2026-13-01"), {}, "is not a date", id="bad_start_date"),
        pytest.param(
            ("info",), {"OBSBENCH_LOG_LEVEL": "loud"}, "OBSBENCH_LOG_LEVEL", id="bad_environment"
        ),
        pytest.param(("frobnicate",), {}, "No such command", id="unknown_command"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    out = run(*args, home=tmp_path, **env)
    assert out.returncode != 0
    assert expected in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
