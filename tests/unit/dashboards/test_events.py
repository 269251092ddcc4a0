from __future__ import annotations

import logging

import pytest

from obsbench.dashboards import events


@pytest.mark.parametrize(
    ("details", "secret"),
    [
        pytest.param({"contact": "jane.doe@example.com"}, "jane.doe@example.com", id="email"),
        pytest.param(
            {"token": "sk_live_0123456789abcdef"}, "sk_live_0123456789abcdef", id="api_key"
        ),
        pytest.param(
            {"url": "postgresql://app:hunter2@db:5432/x"}, "hunter2", id="password_in_url"
        ),
    ],
)
def test_event_log_lines_are_masked(
    caplog: pytest.LogCaptureFixture, details: dict[str, str], secret: str
) -> None:
    logger = logging.getLogger("obsbench.dashboards.events")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="obsbench.dashboards.events"):
            events.record("ada", "login", "/executive", details, audit=False)
    finally:
        logger.removeHandler(caplog.handler)
    entries = [r for r in caplog.records if r.name == "obsbench.dashboards.events"]
    assert entries
    for entry in entries:
        assert entry.fields["user"] == "ada"  # type: ignore[attr-defined]
        assert secret not in entry.getMessage()
        assert secret not in repr(entry.fields)  # type: ignore[attr-defined]
    assert events.COUNTS["login"] >= 1
