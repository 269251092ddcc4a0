from __future__ import annotations

import io
import json
import logging
import pickle
from pathlib import Path

import pytest

from obsbench import errors, log
from obsbench.config import get_settings


def test_defaults_live_under_home(home: Path) -> None:
    s = get_settings()
    assert s.home == home
    assert s.data_dir == home / "data"
    assert s.database == f"sqlite:///{home / 'obsbench.db'}"
    assert s.prometheus_url is None
    assert s.log_level == "INFO"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("OBSBENCH_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/test")
    monkeypatch.setenv("OBSBENCH_PROMETHEUS_URL", "http://127.0.0.1:9090/")
    monkeypatch.setenv("OBSBENCH_LOG_LEVEL", "debug")
    s = get_settings()
    assert s.database == "postgresql+psycopg://u@127.0.0.1/test"
    assert s.prometheus_url == "http://127.0.0.1:9090"
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        pytest.param("OBSBENCH_LOG_LEVEL", "loud", "OBSBENCH_LOG_LEVEL", id="log_level"),
        pytest.param(
            "OBSBENCH_DATABASE_URL",
            "mysql://x",
            "OBSBENCH_DATABASE_URL: .*sqlite",
            id="database_driver",
        ),
        pytest.param(
            "OBSBENCH_PROMETHEUS_URL",
            "127.0.0.1:9090",
            "OBSBENCH_PROMETHEUS_URL: .*http",
            id="prometheus_scheme",
        ),
    ],
)
def test_invalid_settings_raise_config_error(
    monkeypatch: pytest.MonkeyPatch, home: Path, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(errors.ConfigError, match=message) as info:
        get_settings()
    assert "Hint:" in str(info.value)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(errors.SchemaError("fills", ["qty < 0"]), id="schema"),
        pytest.param(errors.SourceUnavailable("down", hint="start it"), id="source"),
        pytest.param(errors.UnknownName.from_choices("channel", "x", ["log"]), id="unknown"),
        pytest.param(errors.ConfigError("bad", hint="fix"), id="config"),
    ],
)
def test_errors_pickle_and_carry_hints(error: errors.ObsbenchError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert "Hint:" in str(error)
    assert isinstance(error, errors.ObsbenchError)


def test_builtin_bases_let_users_catch_naturally() -> None:
    assert issubclass(errors.SchemaError, ValueError)
    assert issubclass(errors.SourceUnavailable, ConnectionError)
    assert issubclass(errors.UnknownName, KeyError)


def test_logs_are_json_lines_with_correlation_id() -> None:
    stream = io.StringIO()
    log.configure("INFO", stream=stream)
    logger = log.get_logger("obsbench.test")
    with log.correlation("run-42"):
        logger.info("simulated", extra={"fields": {"rows": 10}})
    logger.debug("hidden")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "simulated"
    assert lines[0]["correlation_id"] == "run-42"
    assert lines[0]["rows"] == 10
    assert lines[0]["level"] == "INFO"
    logging.getLogger("obsbench").handlers.clear()
