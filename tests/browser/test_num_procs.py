"""`obsbench serve --num-procs 2`: pages load nothing from outside the server, and an alert
published through the PostgreSQL bridge reaches live sessions in both server processes."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from .conftest import (
    Server,
    fire_alert,
    login,
    obsbench_serve,
    record_toasts,
    screenshot,
    wait_for_toast,
)

PROCS = 2
# The kernel hands each connection to whichever process accepts first: open tabs until both
# have one. Under CI load one process won 8 tabs in a row once (2026-12-08), hence 16.
MAX_TABS = 16


@pytest.fixture(scope="module")
def multi(platform) -> Iterator[tuple[Server, str, str]]:
    """`obsbench serve --num-procs 2` on the platform's store, with its own alert channel."""
    channel = f"obsbench_alerts_{uuid.uuid4().hex[:8]}"
    args = ["--users", str(platform.home / "users.yaml"), "--num-procs", str(PROCS)]
    with obsbench_serve(
        platform.home, platform.database, channel, args, log_name="procs-server.log"
    ) as server:
        yield server, channel, platform.database


def live_sessions_by_process(url: str, timeout: float = 20.0) -> dict[int, int]:
    """Live sessions of each server process, from /health (answered by whichever accepts)."""
    seen: dict[int, int] = {}
    polls = 0
    deadline = time.monotonic() + timeout
    while (len(seen) < PROCS or polls < 12) and time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # new connection
            body = json.load(response)
        seen[body["pid"]] = body["sessions"]
        polls += 1
    assert len(seen) == PROCS, f"/health answered from {sorted(seen)} only"
    return seen


def _is_local(request_url: str, server_url: str) -> bool:
    parts, server = urlsplit(request_url), urlsplit(server_url)
    if parts.scheme in ("data", "blob"):
        return urlsplit(parts.path).netloc in ("", server.netloc)
    return parts.netloc == server.netloc


def test_num_procs_serves_everything_itself_and_alerts_reach_both_processes(multi, browser):
    server, channel, database = multi
    requests: list[str] = []
    tabs = []
    counts: dict[int, int] = {}
    while len(tabs) < MAX_TABS:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("websocket", lambda ws: requests.append(ws.url))
        login(page, server.url, "tess")
        page.goto(f"{server.url}/alerts")
        expect(page.locator(".obsbench-badge")).to_be_visible(timeout=30_000)
        for text in ("Active alerts", "Recent alerts", "Acknowledge"):
            expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=15_000)
        tabs.append(page)
        deadline = time.monotonic() + 30
        while sum((counts := live_sessions_by_process(server.url)).values()) < len(tabs):
            assert time.monotonic() < deadline, f"{len(tabs)} tabs, live sessions {counts}"
            page.wait_for_timeout(500)
        if all(counts.values()):
            break
    assert all(counts.values()), f"{MAX_TABS} tabs all landed in one process: {counts}"

    outside = sorted({u for u in requests if not _is_local(u, server.url)})
    assert outside == [], f"requests leaving the server: {outside}"
    # Panel's theme and notification CSS came from its CDN before the fix: now from here
    css = [u for u in requests if re.search(r"/static/extensions/panel/.*\.css", u)]
    assert any("/theme/" in u for u in css), css
    assert any("notifications.css" in u for u in css), css
    assert any(u.startswith(f"ws://{urlsplit(server.url).netloc}/") for u in requests)

    service = f"svc-procs-{int(time.time())}"
    for page in tabs:
        record_toasts(page)
    fire_alert(database, channel, service)
    for page in tabs:  # a toast lasts 6 s: the later tabs are checked from the record
        wait_for_toast(page, "BrowserTestErrors", 15_000)
        expect(page.locator(".tabulator-row", has_text=f"{service} failing").first).to_be_visible(
            timeout=15_000
        )
    screenshot(tabs[0], "num-procs-alerts")
    pids = {json.loads(line)["pid"] for line in server.log.read_text().splitlines()
            if line.startswith("{") and "dashboard runtime started" in line}  # fmt: skip
    assert set(counts) <= pids
    assert len(pids) == PROCS
    for page in tabs:
        page.context.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_num_procs_children_stop_with_the_parent(platform):
    """A SIGTERM to the parent alone (a service manager stopping it) stops every server."""
    channel = f"obsbench_alerts_{uuid.uuid4().hex[:8]}"
    args = ["--users", str(platform.home / "users.yaml"), "--num-procs", str(PROCS)]
    with obsbench_serve(
        platform.home, platform.database, channel, args, log_name="procs-stop.log"
    ) as server:
        children = set(live_sessions_by_process(server.url))
        assert server.proc.pid not in children
        assert len(children) == PROCS
        server.proc.send_signal(signal.SIGTERM)  # the parent only, not its process group
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (alive := {pid for pid in children if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive == set(), f"server processes {sorted(alive)} outlived their parent"
