"""The simulator's fake secrets never reach the database or the logs, on either backend."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from obsbench import audit
from obsbench.log import configure


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> Iterator[str]:
    value = (
        f"sqlite:///{tmp_path / 'audit.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema")
    )
    yield value
    audit.close_store(value)


def simulator_secrets(stream: pl.DataFrame) -> set[str]:
    """Every fake secret the simulator planted in its audit details."""
    from obsbench.sim.audit import EMAILS

    found: set[str] = set(EMAILS)

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif key in {"account", "api_key", "iban", "email", "contact"} and value:
            found.add(str(value))

    for details in stream["details"]:
        walk(json.loads(details))
    return found


def dump(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM audit_events")).all()
    finally:
        engine.dispose()
    return "\n".join("|".join(str(v) for v in row) for row in rows)


def test_simulator_secrets_are_masked_in_database_logs_and_search(url: str) -> None:
    from obsbench.sim import SimConfig, simulate

    stream = simulate(SimConfig.small(days=3))["audit"]  # 3 days: every kind of secret occurs
    secrets = simulator_secrets(stream)
    kinds = {s[:8] for s in secrets if s.startswith("sk_live_")}
    assert kinds == {"sk_live_"}, "the simulator should plant API keys"
    assert any(s.startswith("U") and s[1:].isdigit() for s in secrets), "and account numbers"
    assert any("OBSB" in s for s in secrets), "and IBANs"

    logs = io.StringIO()
    configure("DEBUG", stream=logs)
    try:
        audit.record_many(stream, url=url)
        # one by one too, with secrets in free text and in a URL
        for i, row in enumerate(
            stream.filter(pl.col("action") == "config.change").iter_rows(named=True)
        ):
            audit.record(
                row["actor"],
                row["action"],
                row["resource"] + f"?token={'t' * 20}{i}",
                row["details"],
                source="postgresql://svc:hunter2-secret@db.internal/prod",
                url=url,
            )
        audit.search(text="example", url=url)
    finally:
        logging.getLogger("obsbench").handlers.clear()
    stored = dump(url)
    shown = audit.iter_search(url=url).write_csv()
    for secret in (*secrets, "hunter2-secret", "t" * 20):
        assert secret not in stored, f"{secret!r} reached the database"
        assert secret not in logs.getvalue(), f"{secret!r} reached the logs"
        assert secret not in shown, f"{secret!r} reached a search result"
    assert '"api_key":"****' in stored  # masked, keeping the last 4 characters
    assert audit.verify(url=url).ok


def test_a_new_pattern_also_masks_what_was_stored_before_it(url: str) -> None:
    audit.record("user:alice", "access", "page/p", {"note": "desk phone +44 20 7946 0958"}, url=url)
    masker = audit.Masker().with_rules(audit.MaskRule.of("phone", r"\+\d[\d ]{8,}\d", "****"))
    from obsbench.audit.search import Query, run

    shown = run(audit.open_store(url), Query(), masker=masker)
    assert "7946" not in shown["details"][0]
    assert "7946" in dump(url)  # stored before the rule existed; hidden on display
