from __future__ import annotations

from sqlalchemy import text

from obsbench.store import engine


def test_engine_connects_to_the_real_postgres(pg_schema: str) -> None:
    eng = engine(pg_schema)
    with eng.begin() as conn:
        version = conn.execute(text("select version()")).scalar()
        conn.execute(text("create table probe (x int)"))
        conn.execute(text("insert into probe values (1), (2)"))
        assert conn.execute(text("select sum(x) from probe")).scalar() == 3
        schema = conn.execute(text("select current_schema()")).scalar()
    assert "PostgreSQL" in str(version)
    assert schema.startswith("t_")
    eng.dispose()


def test_plain_postgresql_url_gets_the_psycopg3_driver(pg_schema: str) -> None:
    eng = engine(pg_schema.replace("postgresql+psycopg://", "postgresql://"))
    assert eng.dialect.driver == "psycopg"
    eng.dispose()
