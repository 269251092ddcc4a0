"""End to end: simulate, ingest with the CLI, verify, run the compliance report into a PDF.

The report must verify the chain, print its head, carry no secret, and the anchor it
prints must later catch a tampered log (``obsbench audit verify --anchor``, exit code 1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def obsbench(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OBSBENCH_HOME": str(home), "COLUMNS": "250"}
    env.pop("OBSBENCH_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "obsbench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("reports")
    obsbench("sim", "--days", "3", "--start", "2024-01-01", home=home)
    ingest = obsbench("audit", "ingest", home=home)
    report = obsbench(
        "report", "run", "compliance",
        "--param", "start=2024-01-01", "--param", "end=2024-01-03",
        "--param", "slippage_threshold_bps=5",
        "--out", str(out), home=home,
    )  # fmt: skip
    run_dir = next((out / "compliance").glob("2*"))
    return {"home": home, "ingest": ingest.stdout, "report": report.stdout, "dir": run_dir}


def test_ingest_reports_the_chain_head(run: dict) -> None:
    assert re.search(r"ingested [\d,]+ event\(s\): seq 1\.\.\d+", run["ingest"])


def test_report_pdf_has_every_section_and_the_chain_head(run: dict) -> None:
    run_dir: Path = run["dir"]
    text = subprocess.run(
        ["pdftotext", "-layout", str(run_dir / "compliance.pdf"), "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for section in (
        "Chain verification",
        "Audit-trail completeness",
        "Access review by role",
        "Configuration changes",
        "Best-execution exceptions",
        "Open compliance gaps",
    ):
        assert section in text
    head = obsbench("audit", "head", home=run["home"]).stdout.split()[0]
    anchor = re.search(r"--anchor (\d+):([0-9a-f]{64})", (run_dir / "compliance.html").read_text())
    assert anchor is not None
    # the notebook recorded its report_generated event right after the head it verified
    assert int(anchor.group(1)) == int(head.split(":")[0]) - 1
    assert anchor.group(2) in text.replace("\n", "")  # the full chain head hash is printed
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    # the run itself wrote the anchor the PDF prints into its manifest
    assert manifest["audit_anchor"] == {
        "seq": int(anchor.group(1)),
        "hash": anchor.group(2),
        "verified": True,
    }


def test_report_carries_no_secret(run: dict) -> None:
    from obsbench.sim.audit import EMAILS

    run_dir: Path = run["dir"]
    rendered = (run_dir / "compliance.html").read_text() + (
        run_dir / "compliance.ipynb"
    ).read_text()
    rendered += subprocess.run(
        ["pdftotext", str(run_dir / "compliance.pdf"), "-"], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    for secret_pattern in (r"sk_live_[0-9a-f]{6}", r"GB\d{2}OBSB\d{14}", r"\bU\d{7}\b"):
        assert not re.search(secret_pattern, rendered), secret_pattern
    for email in EMAILS:
        assert email not in rendered


def test_anchor_from_the_report_catches_later_tampering(run: dict, tmp_path: Path) -> None:
    home: Path = run["home"]
    text = (run["dir"] / "compliance.html").read_text()
    anchor = re.search(r"--anchor (\d+:[0-9a-f]{64})", text)
    assert anchor is not None
    ok = obsbench("audit", "verify", "--anchor", anchor.group(1), home=home)
    assert "OK" in ok.stdout
    manifest = run["dir"] / "manifest.json"
    assert json.loads(manifest.read_text())["audit_anchor"]["verified"] is True

    import sqlite3

    db = sqlite3.connect(home / "obsbench.db")
    db.execute("DROP TRIGGER audit_events_no_update")
    db.execute("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 7")
    db.commit()
    db.close()
    broken = obsbench("audit", "verify", "--manifest", str(manifest), home=home, check=False)
    assert broken.returncode == 1
    assert "BROKEN at seq 7 (altered)" in broken.stderr.replace("\n", " ")


def test_cli_search_and_compliance(run: dict) -> None:
    home: Path = run["home"]
    out = obsbench(
        "audit", "search", "--action", "config_change", "--limit", "3", "--json", home=home
    )
    rows = json.loads(out.stdout)
    assert len(rows) == 3
    assert {r["action"] for r in rows} == {"config_change"}
    gaps = obsbench(
        "audit", "compliance", "--start", "2024-01-01", "--end", "2024-01-03",
        "--policy", str(ROOT / "notebooks" / "compliance_policy.yaml"), home=home,
    )  # fmt: skip
    assert "open compliance gaps" in gaps.stdout


def test_cli_bad_input_exits_2_with_a_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        '{"ts": "2024-01-01T00:00:00Z", "actor": "u", "action": "nope", "details": "{}"}\n'
    )
    out = obsbench("audit", "ingest", "--file", str(bad), home=tmp_path, check=False)
    assert out.returncode == 2
    assert "unknown action 'nope'" in out.stderr
    assert "hint" in out.stderr
