from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "OBSBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty OBSBENCH_HOME for one test."""
    monkeypatch.setenv("OBSBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OBSBENCH_DATABASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema, dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The datasets ``schemas.validate`` really checks from now on (memo hits excluded)."""
    from obsbench import schemas

    calls: list[str] = []
    real = schemas._validate

    def counting(frame: object, dataset: str, **kw: object) -> object:
        calls.append(dataset)
        return real(frame, dataset, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(schemas, "_validate", counting)
    return calls
