"""Browser tests: a real `obsbench serve` subprocess, Debian's chromium driven by Playwright.

The test process plays the platform: it writes the store (simulator thread, wall-clock
time) and runs an alert evaluator that publishes through PostgreSQL NOTIFY, the way an
evaluator in another process reaches every server process. `scripts/test-services.sh`
installs chromium; `playwright install` is never used (it downloads a browser build).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OBSBENCH_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POSTGRES_URL = os.environ.get(
    "OBSBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "pw-{}"
USERS = {
    "tess": ["trader"],
    "rick": ["risk"],
    "olga": ["operator"],
    "eve": ["executive"],
    "cory": ["compliance"],
    "ada": ["admin"],
}
STALE_AFTER = 6.0  # tolerant of CI load (two test workers beside the server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright hook: launch the system chromium."""
    if not CHROMIUM:
        pytest.fail("chromium is not installed: run scripts/test-services.sh")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema of its own for the server's alert and audit tables."""
    from sqlalchemy import create_engine, text

    schema = f"b_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Platform:
    """The server under test and the data/alert sources the test process drives."""

    url: str
    home: Path
    store: object
    sim: object
    channel: str
    database: str
    log: Path
    proc: subprocess.Popen
    feeds: list = field(default_factory=list)  # (thread, stop event) of running feeds

    def start_data(self) -> None:
        from obsbench.dashboards import demo

        self.feeds.append(demo.start_simulator(self.store, self.sim))

    def stop_data(self) -> None:
        # Wait for the running tick: a feed restarted while its predecessor still appends
        # (a compaction takes seconds under CI load) runs two threads on one simulator.
        for _, stop in self.feeds:
            stop.set()
        for thread, _ in self.feeds:
            thread.join(60)
        self.feeds.clear()


@dataclass
class Server:
    """An `obsbench serve` subprocess: its URL, log file and process."""

    url: str
    log: Path
    proc: subprocess.Popen

    def events(self, event: str) -> list[dict]:
        """The structured dashboard events ``event`` written to the log so far."""
        lines = self.log.read_text().splitlines()
        return [
            json.loads(line)
            for line in lines
            if line.startswith("{") and f'"event": "{event}"' in line
        ]


@contextmanager
def obsbench_serve(
    home: Path, database: str, channel: str, args: list[str], *, env: dict | None = None,
    log_name: str = "server.log",
) -> Iterator[Server]:  # fmt: skip
    """Start `obsbench serve ARGS` on a free port for ``home``; ready once /health answers."""
    port = _free_port()
    full_env = {
        **os.environ,
        "OBSBENCH_HOME": str(home),
        "OBSBENCH_DATABASE_URL": database,
        "OBSBENCH_ALERTS_CHANNEL": channel,
        "OBSBENCH_DASHBOARD_STALE_AFTER": str(STALE_AFTER),
        **(env or {}),
    }
    log = home / log_name
    cmd = [
        sys.executable, "-m", "obsbench", "serve", "--port", str(port),
        "--home", str(home), "--interval", "1", *args,
    ]  # fmt: skip
    with log.open("w") as out:  # own process group: --num-procs forks children that
        # outlive a SIGTERM to the parent alone (Tornado's fork_processes)
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"obsbench serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(f"{server.url}/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"obsbench serve not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the server and its forked children), then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # any member left?
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Platform]:
    from obsbench.dashboards import auth, demo
    from obsbench.store import Store

    home = tmp_path_factory.mktemp("home")
    store = Store(home)
    sim = demo.prepare(store, demo.demo_config(days=1, small=True, first_incident=_hours(99)))
    users = auth.write_users(
        home / "users.yaml", {u: (PASSWORD.format(u), roles) for u, roles in USERS.items()}
    )
    channel = f"obsbench_alerts_{uuid.uuid4().hex[:8]}"
    _record_report_run(home, pg_url)
    args = ["--users", str(users)]
    with obsbench_serve(home, pg_url, channel, args) as server:
        plat = Platform(server.url, home, store, sim, channel, pg_url, server.log, server.proc)
        plat.start_data()
        try:
            yield plat
        finally:
            plat.stop_data()


def fire_alert(database: str, channel: str, service: str):
    """Evaluate a rule in this process and publish through PostgreSQL NOTIFY on ``channel``,
    like an evaluator beside the servers."""
    import polars as pl

    from obsbench.alerts.evaluator import Evaluator
    from obsbench.alerts.rules import parse_rules

    rules = parse_rules(
        """
rules:
  - name: BrowserTestErrors
    signal: {metric: error_rate, dataset: requests, by: [service], window: 1m}
    op: ">"
    thresholds: {critical: 0.5}
    for: 0s
    annotations: {summary: "{{ labels.service }} failing"}
"""
    )
    now = datetime.now(UTC).replace(microsecond=0)
    failing = pl.DataFrame(
        {
            "ts": [now] * 4,
            "service": [service] * 4,
            "endpoint": ["GET /x"] * 4,
            "latency_ms": [5.0] * 4,
            "status_code": [500] * 4,
            "ok": [False] * 4,
            "trace_id": [None] * 4,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "status_code": pl.Int32},
    )
    ev = Evaluator(rules, database=database, sources={"requests": failing}, pg_channel=channel)
    try:
        report = ev.evaluate(now)
    finally:
        ev.close()
    assert report.firing >= 1
    return report


REPORT_RUN = "browser-test-run"


def _record_report_run(home: Path, database: str) -> None:
    """One finished report run with a real PDF, for the reports page."""
    from weasyprint import HTML

    from obsbench.reports.history import History

    pdf = home / "reports" / "sla" / REPORT_RUN / "sla.pdf"
    pdf.parent.mkdir(parents=True)
    HTML(string="<h1>SLA report</h1><p>browser test</p>").write_pdf(pdf)
    history = History(database)
    history.start(run_id=REPORT_RUN, report="sla", parameters={"month": "2026-11"})
    history.finish(REPORT_RUN, status="ok", pdf=str(pdf), out_dir=str(pdf.parent))
    history.close()


def _hours(n: float):
    from datetime import timedelta

    return timedelta(hours=n)


def login(page, base: str, user: str, password: str | None = None) -> None:
    """Log in through the form; lands on the page list."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password or PASSWORD.format(user))
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(re.compile(r"/(\?.*)?$"), timeout=10_000)


def console_errors(page) -> list[str]:
    """Attach a collector of console errors and page errors; returns the live list."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


_TOAST_RECORDER = """
() => {
  // Toasts (Notyf, in document.body) vanish after 6 s: keep every message seen, so a
  // check that reaches this tab late still finds it.
  window.__toasts = [];
  new MutationObserver(() => {
    for (const m of document.querySelectorAll('.notyf__message')) {
      if (!window.__toasts.includes(m.textContent)) window.__toasts.push(m.textContent);
    }
  }).observe(document.body, {childList: true, subtree: true});
}
"""


def record_toasts(page) -> None:
    """Start keeping the text of every toast the page shows (see :func:`wait_for_toast`)."""
    page.evaluate(_TOAST_RECORDER)


def wait_for_toast(page, text: str, timeout_ms: float) -> None:
    """Wait until a toast containing ``text`` has been shown since :func:`record_toasts`."""
    page.wait_for_function(
        "t => window.__toasts.some(m => m.includes(t))", arg=text, timeout=timeout_ms
    )


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def tab(browser):
    """A page in a fresh browser context (one Bokeh session per context)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()
