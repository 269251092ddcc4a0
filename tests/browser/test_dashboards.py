from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from obsbench.dashboards.auth import ROLES
from obsbench.dashboards.pages import discover, pages_for

from .conftest import (
    REPORT_RUN,
    STALE_AFTER,
    USERS,
    console_errors,
    fire_alert,
    login,
    record_toasts,
    screenshot,
    wait_for_toast,
)

PAGES = discover()
# What each page must show once rendered (a heading or a column of its main views).
COMPONENTS = {
    "executive": ["P&L today", "P&L month to date", "Availability and SLA today", "Top strategies"],
    "trading": ["P&L by strategy (today)", "Execution quality", "slippage_bps"],
    "risk": ["Exposure by strategy", "VaR / CVaR per strategy", "Stress tests", "equity_crash"],
    "operations": ["Service health", "Error budgets and burn rates", "order-router-availability"],
    "alerts": ["Active alerts", "Recent alerts", "Acknowledge"],
    "reports": ["Report runs", "Download PDF", "2026-11"],
    "audit": ["Verify chain", "Search"],
}


def test_every_role_sees_exactly_its_pages(platform, browser):
    assert set(ROLES) == {r for roles in USERS.values() for r in roles}
    for user, roles in USERS.items():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        login(page, platform.url, user)
        expected = {p.spec.title for p in pages_for(roles, PAGES)}
        links = page.locator(".obsbench-pages a")
        expect(links).to_have_count(len(expected), timeout=10_000)
        assert set(links.all_text_contents()) == expected, user
        for other in PAGES:
            if other.spec.title in expected:
                continue
            response = page.goto(f"{platform.url}/{other.spec.slug}")
            assert response is not None
            assert response.status == 403, (user, other.spec.slug)
        context.close()
    log = platform.log.read_text()
    assert '"event": "login"' in log
    assert '"event": "access_denied"' in log
    from obsbench import audit

    trail = audit.search(action=["login", "access_denied"], url=platform.database, limit=1000)
    assert set(trail.filter(trail["action"] == "login")["actor"]) == set(USERS)
    denied = trail.filter(trail["action"] == "access_denied")
    assert ("tess", "/risk") in set(zip(denied["actor"], denied["resource"], strict=True))


def test_wrong_password_is_refused_and_logged(platform, tab):
    page = tab
    page.goto(f"{platform.url}/login")
    page.fill("input[name=username]", "tess")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit], input[type=submit]")
    expect(page.get_by_text("Invalid username or password")).to_be_visible(timeout=5_000)
    assert '"event": "login_failed"' in platform.log.read_text()


@pytest.mark.parametrize("slug", [p.spec.slug for p in PAGES])
def test_page_renders_its_components_without_console_errors(platform, browser, slug):
    # tall enough for the whole page in the screenshot (Panel scrolls inside the template)
    context = browser.new_context(viewport={"width": 1400, "height": 2100})
    page = context.new_page()
    errors = console_errors(page)
    login(page, platform.url, "ada")
    page.goto(f"{platform.url}/{slug}")
    expect(page.locator(".obsbench-badge")).to_contain_text("live", timeout=15_000)
    for text in COMPONENTS[slug]:
        expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=15_000)
    page.wait_for_timeout(2_500)  # a few live ticks
    screenshot(page, slug)
    assert errors == []
    context.close()


def test_a_value_changes_within_5s_when_the_data_changes(platform, tab):
    page = tab
    login(page, platform.url, "olga")
    page.goto(f"{platform.url}/operations")
    # the service-health table (a Bokeh DataTable): column 1 is the request count
    cell = page.locator(".slick-row", has_text="market-data").first.locator(".slick-cell.l1")
    expect(cell).not_to_have_text("", timeout=15_000)
    before = cell.inner_text()
    deadline = time.monotonic() + 5.0
    while cell.inner_text() == before:
        assert time.monotonic() < deadline, f"market-data requests stayed {before} for 5 s"
        page.wait_for_timeout(100)
    badge = page.locator(".obsbench-badge")
    stamp = badge.inner_text()
    page.wait_for_timeout(2_000)
    assert badge.inner_text() != stamp


def _fire(platform, service: str):
    """Evaluate a rule in this process, like an evaluator beside the servers."""
    return fire_alert(platform.database, platform.channel, service)


def test_alert_reaches_two_sessions_and_is_acknowledged_from_the_page(platform, browser):
    sessions = []
    for user, slug in (("tess", "alerts"), ("olga", "alerts")):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        login(page, platform.url, user)
        page.goto(f"{platform.url}/{slug}")
        expect(page.locator(".obsbench-badge")).to_contain_text("live", timeout=15_000)
        sessions.append((user, page))
    service = f"svc-{int(time.time())}"
    for _, page in sessions:
        record_toasts(page)
    _fire(platform, service)
    for _, page in sessions:  # a toast lasts 6 s: the second tab is checked from the record
        wait_for_toast(page, "BrowserTestErrors", 5_000)
        expect(page.locator(".tabulator-row", has_text=f"{service} failing").first).to_be_visible(
            timeout=5_000
        )
    user, first = sessions[0]
    screenshot(first, "alerts-pushed")
    first.locator(".tabulator-row", has_text=f"{service} failing").first.locator(
        ".tabulator-cell[tabulator-field=rule]"
    ).click()
    first.get_by_role("button", name="Acknowledge").click()
    expect(first.get_by_text(f"Acknowledged BrowserTestErrors as {user}")).to_be_visible(
        timeout=5_000
    )
    other = sessions[1][1]
    expect(
        other.locator(".tabulator-cell[tabulator-field=acked_by]", has_text=user).first
    ).to_be_visible(timeout=5_000)
    screenshot(other, "alerts-acknowledged")
    _assert_ack_stored(platform, user)
    for _, page in sessions:
        page.context.close()


def _assert_ack_stored(platform, user: str) -> None:
    from sqlalchemy import create_engine, select

    from obsbench.alerts.db import alert_acks

    eng = create_engine(platform.database)
    with eng.connect() as conn:
        rows = conn.execute(select(alert_acks.c.acked_by)).scalars().all()
    eng.dispose()
    assert user in rows
    assert '"event": "alert_ack"' in platform.log.read_text()


def test_a_stopped_source_shows_the_stale_badge(platform, tab):
    page = tab
    # start from a fresh feed: under CI load an earlier test's feed may have fallen behind
    platform.stop_data()
    platform.start_data()
    login(page, platform.url, "tess")
    page.goto(f"{platform.url}/trading")
    badge = page.locator(".obsbench-badge")
    expect(badge).to_contain_text("live", timeout=30_000)
    platform.stop_data()
    try:
        expect(badge).to_contain_text(
            re.compile(r"stale since \d\d:\d\d:\d\d"), timeout=(STALE_AFTER + 5) * 1000
        )
        screenshot(page, "trading-stale")
    finally:
        platform.start_data()
    expect(badge).to_contain_text("live", timeout=30_000)


def test_report_pdf_downloads_from_the_reports_page(platform, tab):
    page = tab
    login(page, platform.url, "cory")
    page.goto(f"{platform.url}/reports")
    row = page.locator(".tabulator-row", has_text="sla").first
    expect(row).to_be_visible(timeout=15_000)
    row.locator(".tabulator-cell[tabulator-field=report]").click()
    expect(page.get_by_text(f"run {REPORT_RUN}: ok")).to_be_visible(timeout=5_000)
    with page.expect_download(timeout=10_000) as info:
        page.get_by_role("button", name="Download PDF").click()
    path = info.value.path()
    assert path is not None
    assert Path(path).read_bytes()[:5] == b"%PDF-"


def test_health_reports_tick_costs_and_live_objects(platform):
    """``/health?ticks=N`` names each tick's view groups; ``?objects=N`` counts live objects."""
    import json
    import urllib.error
    import urllib.request

    def health(query: str) -> dict:
        with urllib.request.urlopen(f"{platform.url}/health?{query}", timeout=30) as r:
            return json.load(r)

    deadline = time.monotonic() + 30
    while health("")["tick"] < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    body = health("ticks=5&objects=5")
    assert len(body["ticks"]) == 5
    assert all(t["compute_ms"] > 0 and isinstance(t["groups_ms"], dict) for t in body["ticks"])
    assert any(t["groups_ms"] for t in body["ticks"])  # some view group ran in 5 ticks
    assert len(body["objects"]) == 5
    assert all(isinstance(n, int) and n > 0 for n in body["objects"].values())
    assert body["weakrefs"]
    assert all(n > 0 for n in body["weakrefs"].values())
    with pytest.raises(urllib.error.HTTPError) as bad:
        health("objects=lots")
    bad.value.close()
    assert bad.value.code == 400
    assert "whole number" in bad.value.reason
