"""Dashboards under load, with the live demo running: tick cost, alert push latency, memory.

Runs ``obsbench demo`` (live dashboards; the simulator and the shipped-rule evaluator run
in processes of their own) in a subprocess on a free port, with its alert tables in a fresh
PostgreSQL schema, then opens sessions:

1. **tick cost** with 1 and with ``--sessions`` (20) open sessions: the shared computation of
   a tick (``compute_ms``, the live-model thread) and the event-loop time spent updating
   every session for that tick (``push_ms``), read from ``/health?ticks=N`` (target: total
   under 200 ms with 20 sessions);
2. **alert push latency**, evaluator -> DOM, measured in the browser: this process evaluates
   a rule that fires (a fresh series each time) and publishes through PostgreSQL NOTIFY (the
   path of an evaluator beside the server); an in-page MutationObserver records when the
   toast appears; latency = seen - time before ``evaluate()``, same clock (target: p95
   under 1 s); measured with 2 and with 20 open sessions, in the first and the last opened
   Chromium page, plus the server-side part (alert on the bus -> each session's handler
   run) and the arrival at every websocket-client session;
3. **memory soak**: sessions open and close for ``--minutes`` while the server's RSS is
   sampled every 10 s with the native heaps of ``/metrics``; prints the second half's
   least-squares slope and its robust trend (Theil-Sen slope of each minute's median and
   minimum, which transient peaks do not swing), target: no growth trend.
   ``--no-soak-sessions`` is the control: the same soak with no session open.

Method (changed 2026-11-25). The targets are about the *server*. With N sessions, only
``--browser-sessions`` of them (default 2) are Chromium pages, where the DOM latency is
measured; the others are real Bokeh sessions opened by a lightweight websocket client
(``bokeh_sessions.py``: the same login cookie, the page loaded over HTTP so the server
builds the session's document, the Bokeh handshake, the ``document_ready`` event a browser
sends, then every pushed patch read off the socket). The server does the same work for
them as for a browser; what they leave out is the rendering, which is the client's cost.
Before, all 20 sessions were Chromium pages on the same 2-core machine: 20 renderers
saturated it (load average above 20) and their backlog, not the server, dominated both
figures. That mode is still available and is printed beside the new one, labelled
"all Chromium": ``--browser-sessions 2 20`` (the default) runs both, ``--browser-sessions
2`` only the new one. Every figure is printed with the 1-minute load average of the machine
(other jobs may share it).

Usage: ``python benchmarks/bench_dashboards.py [--minutes 30] [--sessions 20] [--alerts 10]
[--browser-sessions 2 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

POSTGRES_URL = os.environ.get(
    "OBSBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ["trading", "executive", "operations", "risk", "alerts"]
POLLER = """
(() => {
  // Panel's toasts (notyf) live in document.body, outside the shadow roots: observe them.
  window.__seen = window.__seen || {};
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('.notyf__message')) {
      const m = el.textContent.match(/bench-(\\d+)/);
      if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = Date.now();
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    # Generous: with many sessions on a loaded machine the server's loop can lag seconds.
    return json.loads(urllib.request.urlopen(url, timeout=60).read())


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def tick_stats(base: str, n: int) -> dict:
    ticks = [t for t in get(f"{base}/health?ticks={n}")["ticks"] if t["version"] > 1]
    compute = [t["compute_ms"] for t in ticks]
    push = [t["push_ms"] for t in ticks]
    push_cpu = [t["push_cpu_ms"] for t in ticks]
    total = [c + p for c, p in zip(compute, push, strict=True)]
    groups: dict[str, list[float]] = {}
    for t in ticks:
        for name, ms in t.get("groups_ms", {}).items():
            groups.setdefault(name, []).append(ms)
    return {
        "ticks": len(ticks),
        "sessions": max(t["sessions"] for t in ticks),
        # p50 cost of each view group when it ran (side groups run beside the tick)
        "groups_p50": {name: round(statistics.median(v), 1) for name, v in sorted(groups.items())},
        **{
            f"{name}_{stat}": round(fn(vals), 1)
            for name, vals in (
                ("compute", compute),
                ("push", push),
                ("push_cpu", push_cpu),
                ("total", total),
            )
            for stat, fn in (
                ("p50", statistics.median),
                ("p95", lambda v: quantile(v, 0.95)),
                ("max", max),
            )
        },
    }


def summary(values: list[float], expected: int) -> str:
    if not values:
        return "none seen"
    return (
        f"n={len(values)}/{expected} p50={statistics.median(values):.0f} "
        f"p95={quantile(values, 0.95):.0f} max={max(values):.0f}"
    )


def push_latency(sessions, database: str, channel: str, n: int, first: int, ws_sessions=()) -> dict:
    """Fire ``n`` alerts; the toast latency in the first and the last opened Chromium page.

    With ``ws_sessions`` (websocket-client sessions) also the arrival of the toast's text at
    each of them (``websocket``: one value per session and alert).
    """
    watched = {"first": sessions[0][1], "last": sessions[-1][1]}
    for page in watched.values():
        page.evaluate(POLLER)
    fired = {}
    for k in range(first, first + n):
        fired[str(k)] = fire(database, channel, k)
        time.sleep(1.5)
    time.sleep(5)
    out = {}
    for name, page in watched.items():
        seen = page.evaluate("window.__seen")
        out[name] = [seen[k] - fired[k] for k in fired if k in seen]
    if ws_sessions:
        out["websocket"] = [
            ws.seen[k] - fired[k] for ws in ws_sessions for k in fired if k in ws.seen
        ]
    return out


def load() -> str:
    """The machine's load averages (1, 5, 15 min)."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def wait_sessions(base: str, n: int, timeout: float = 60.0) -> None:
    """Wait until ``n`` sessions are subscribed to the live model (pages ready)."""
    deadline = time.monotonic() + timeout
    while (got := get(f"{base}/health")["sessions"]) != n:
        if time.monotonic() > deadline:
            msg = f"{got} sessions subscribed to the live model, expected {n}"
            raise RuntimeError(msg)
        time.sleep(0.5)


def login(page, base: str, user: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(f"{base}/", timeout=15_000)


def open_session(browser, base: str, slug: str, password: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        login(page, base, "ada", password)
        page.goto(f"{base}/{slug}")
        badge = page.locator(".obsbench-badge")
        try:
            badge.filter(has_text="live").wait_for(timeout=30_000)
        except Exception as exc:  # say what the page showed instead
            shown = badge.all_text_contents() if badge.count() else "no badge"
            msg = f"/{slug} not live within 30 s; badge: {shown}"
            raise TimeoutError(msg) from exc
    except BaseException:
        context.close()  # a page that failed must not stay open (and hold a session)
        raise
    return context, page


def fire(database: str, channel: str, k: int) -> float:
    """Evaluate a rule that fires for a fresh series; returns the epoch ms before evaluating."""
    import polars as pl

    from obsbench.alerts.evaluator import Evaluator
    from obsbench.alerts.rules import parse_rules

    # A rule of its own per alert: a rule is evaluated once per interval, so a second
    # series of the same rule would wait for the next interval.
    rules = parse_rules(
        f"""
rules:
  - name: BenchPush{k}
    signal: {{metric: error_rate, dataset: requests, by: [service], window: 1m}}
    op: ">"
    thresholds: {{critical: 0.5}}
    for: 0s
    annotations: {{summary: "{{{{ labels.service }}}}"}}
"""
    )
    now = datetime.now(UTC).replace(microsecond=0)
    failing = pl.DataFrame(
        {
            "ts": [now],
            "service": [f"bench-{k}"],
            "endpoint": ["GET /x"],
            "latency_ms": [1.0],
            "status_code": [500],
            "ok": [False],
            "trace_id": [None],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "status_code": pl.Int32},
    )
    ev = Evaluator(rules, database=database, sources={"requests": failing}, pg_channel=channel)
    try:
        began = time.time() * 1000
        ev.evaluate(now)
    finally:
        ev.close()
    return began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--alerts", type=int, default=10, help="alerts per phase")
    parser.add_argument("--days", type=int, default=2, help="history of the demo")
    parser.add_argument(
        "--browser-sessions",
        type=int,
        nargs="+",
        default=None,
        metavar="B",
        help="Chromium pages among the --sessions (the rest are websocket clients); one "
        "phase per value (default: 2 and --sessions, i.e. also the all-Chromium mode)",
    )
    parser.add_argument("--soak-only", action="store_true", help="skip the tick and latency phases")
    parser.add_argument(
        "--no-soak-sessions",
        dest="soak_sessions",
        action="store_false",
        help="soak with no session open (the control: the server's own work only)",
    )
    args = parser.parse_args()
    modes = args.browser_sessions or [2, args.sessions]
    if any(not 2 <= b <= args.sessions for b in modes):
        parser.error(f"--browser-sessions must be between 2 and --sessions ({args.sessions})")

    from playwright.sync_api import sync_playwright
    from sqlalchemy import create_engine, text

    from obsbench.dashboards import auth

    sys.path.insert(0, str(Path(__file__).parent))
    from bokeh_sessions import WsSessions

    chromium = os.environ.get("OBSBENCH_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("chromium is not installed: run scripts/test-services.sh")
        return 1
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    channel = f"obsbench_bench_{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix="obsbench-bench-"))
    password = uuid.uuid4().hex[:12]
    users = auth.write_users(home / "users.yaml", {"ada": (password, ["admin"])})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OBSBENCH_DATABASE_URL": database,
        "OBSBENCH_ALERTS_CHANNEL": channel,
    }
    log = (home / "demo.log").open("w")
    cmd = [
        sys.executable, "-m", "obsbench", "demo", "--home", str(home), "--port", str(port),
        "--users", str(users), "--days", str(args.days),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if proc.poll() is not None:
                print((home / "demo.log").read_text()[-3000:])
                return 1
            try:
                if get(f"{base}/health")["tick"] > 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        print(f"demo up in {time.monotonic() - started:.1f} s ({args.days} day(s) of history)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, headless=True
            )
            clients = WsSessions(base, "ada", password, mark=r"bench-(\d+)")
            if not args.soak_only:
                sessions = [open_session(browser, base, PAGES[0], password)]
                wait_sessions(base, 1)
                time.sleep(30)
                one = tick_stats(base, 25)
                one_load = load()
                sessions.append(open_session(browser, base, "alerts", password))
                wait_sessions(base, 2)
                time.sleep(10)
                lat_two = push_latency(sessions, database, channel, args.alerts, 0)
                two_load = load()
                print("\n== 1 session (Chromium)")
                print(
                    f"  tick cost (ms), compute = shared live model, push = session updates: "
                    f"{json.dumps(one)}  [{one_load}]"
                )
                print(
                    f"== alert push latency with 2 sessions (Chromium), evaluator -> toast in the "
                    f"DOM (ms)  [{two_load}]"
                )
                for name, values in lat_two.items():
                    print(f"  {name} session: {summary(values, args.alerts)}")
                for phase, browsers in enumerate(modes, start=1):
                    try:
                        many_sessions(
                            browser, clients, base, password, sessions, args, browsers, phase,
                            database, channel,
                        )  # fmt: skip
                    except Exception as exc:  # report it and go on with the next phase / the soak
                        print(f"  phase with {browsers} Chromium pages failed: {exc!r}  [{load()}]")
                        traceback.print_exc(file=sys.stdout)
                for context, _ in sessions:
                    context.close()

            # -- memory soak: sessions open and close
            churn = (
                "up to 5 Chromium pages and 10 websocket-client sessions opening and closing"
                if args.soak_sessions
                else "no session (control)"
            )
            print(f"\n== memory soak: {args.minutes:g} min, {churn}  [{load()}]")
            samples: list[tuple[float, float]] = []
            held: list[tuple[float, float]] = []  # the live model's frames (grow with the day)
            heaps: dict[str, list[tuple[float, float]]] = {}  # native heaps by allocator/state
            loads: list[float] = []
            open_ctx: list = []
            open_ws: list = []
            t0 = time.monotonic()
            next_sample = t0
            rng = random.Random(7)
            opened = 0
            failed: list[str] = []
            while time.monotonic() - t0 < args.minutes * 60:
                try:  # a page that does not go live in time is counted, not fatal
                    if args.soak_sessions and len(open_ctx) < 5:
                        context, _ = open_session(browser, base, rng.choice(PAGES), password)
                        open_ctx.append(context)
                        opened += 1
                    elif open_ctx:
                        open_ctx.pop(rng.randrange(len(open_ctx))).close()
                    if args.soak_sessions and len(open_ws) < 10:
                        open_ws.append(clients.open(rng.choice(PAGES)))
                        opened += 1
                    elif open_ws:
                        clients.close(open_ws.pop(rng.randrange(len(open_ws))))
                except Exception as exc:
                    failed.append(f"{(time.monotonic() - t0) / 60:.1f} min: {exc!r}"[:200])
                if time.monotonic() >= next_sample:
                    now = metrics(base)
                    minute = (time.monotonic() - t0) / 60
                    samples.append((minute, now["process_resident_memory_bytes"] / 2**20))
                    held.append((minute, now["obsbench_dashboard_live_data_bytes"] / 2**20))
                    for key, value in now.items():
                        if key.startswith("obsbench_dashboard_heap_bytes{"):
                            heaps.setdefault(key[30:-1], []).append((minute, value / 2**20))
                    loads.append(os.getloadavg()[0])
                    next_sample += 10
                time.sleep(2)
            for context in open_ctx:
                context.close()
            clients.stop()
            if samples:
                time.sleep(5)
                end_rss = metric(base, "process_resident_memory_bytes") / 2**20
                half = samples[len(samples) // 2 :]
                slope = _slope(half)
                print(
                    f"  sessions opened: {opened}; RSS start {samples[0][1]:.0f} MB, "
                    f"peak {max(r for _, r in samples):.0f} MB, after closing all {end_rss:.0f} MB"
                )
                print(
                    f"  RSS trend over the second half: {slope:+.2f} MB/min ({len(half)} samples)"
                    f"; first-half trend {_slope(samples[: len(samples) // 2]):+.2f} MB/min"
                )
                print(  # transient peaks (a history reload) swing a least-squares line
                    f"  robust second-half trend (Theil-Sen over per-minute medians / minima): "
                    f"{_robust_slope(half, statistics.median):+.2f} / "
                    f"{_robust_slope(half, min):+.2f} MB/min"
                )
                # The day's orders, fills and quotes stay in memory by design: what is left
                # of the RSS trend without them is what sessions leave behind.
                data_half = held[len(held) // 2 :]
                rest = [(t, r - d) for (t, r), (_, d) in zip(half, data_half, strict=True)]
                print(
                    f"  live model's frames: {held[0][1]:.1f} -> {held[-1][1]:.1f} MB, second-half "
                    f"trend {_slope(data_half):+.2f} MB/min; RSS minus frames "
                    f"{_slope(rest):+.2f} MB/min"
                )
                for key, series in sorted(heaps.items()):  # where the RSS trend lives
                    print(
                        f"  heap {key}: {series[0][1]:.1f} -> {series[-1][1]:.1f} MB, "
                        f"second-half trend {_slope(series[len(series) // 2 :]):+.2f} MB/min"
                    )
                print(
                    f"  1-min load average during the soak: median "
                    f"{statistics.median(loads):.1f}, max {max(loads):.1f}"
                )
                print(
                    f"  open sessions at the end: {metric(base, 'obsbench_dashboard_sessions'):.0f}"
                )
                print(
                    "  RSS samples (min, MB): " + " ".join(f"{t:.1f}:{r:.0f}" for t, r in samples)
                )
                print(f"  session opens that failed: {len(failed)}")
                for line in failed[:10]:
                    print(f"    {line}")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)
    return 0


def many_sessions(
    browser, clients, base, password, sessions, args, browsers, phase, database, channel
) -> None:
    """Open ``args.sessions`` sessions (``browsers`` Chromium pages), measure and print."""
    label = (
        f"{args.sessions} sessions, all Chromium"
        if browsers == args.sessions
        else f"{args.sessions} sessions: {browsers} Chromium + "
        f"{args.sessions - browsers} websocket clients"
    )
    print(f"\n== {label}", flush=True)
    extra_pages = []
    ws_sessions = []
    try:
        extra_pages += [
            open_session(browser, base, PAGES[i % len(PAGES)], password) for i in range(2, browsers)
        ]
        ws_sessions += [clients.open(PAGES[i % len(PAGES)]) for i in range(browsers, args.sessions)]
        wait_sessions(base, args.sessions, timeout=180)
        time.sleep(40)
        many = tick_stats(base, 30)
        print(f"  tick cost (ms): {json.dumps(many)}  [{load()}]", flush=True)
        dispatch_before = len(get(f"{base}/health?ticks=1")["alert_dispatch_ms"])
        # The last opened Chromium page is watched with the first one.
        watched = [sessions[0], *(extra_pages or sessions[1:])]
        lat_many = push_latency(watched, database, channel, args.alerts, 1000 * phase, ws_sessions)
        lat_load = load()
        dispatch = get(f"{base}/health?ticks=1")["alert_dispatch_ms"][dispatch_before:]
        print(f"  alert push latency (ms)  [{lat_load}]:")
        for name, values in lat_many.items():
            where = (
                "at each websocket client (no renderer)"
                if name == "websocket"
                else f"{name} Chromium page, toast in the DOM"
            )
            expected = args.alerts * (len(ws_sessions) if name == "websocket" else 1)
            print(f"    {where}: {summary(values, expected)}")
        print(
            f"    server side (bus -> each session's handler): {summary(dispatch, len(dispatch))}"
        )
        if ws_sessions:
            received = sum(ws.bytes for ws in ws_sessions)
            print(f"  websocket clients received {received / 2**20:.1f} MB in all", flush=True)
    finally:
        for ws in ws_sessions:
            clients.close(ws)
        for context, _ in extra_pages:
            context.close()
        try:  # closed sessions are dropped after their unused lifetime; slower under load
            wait_sessions(base, 2, timeout=180)
        except RuntimeError as exc:
            print(f"  after closing: {exc}")


def metrics(base: str) -> dict[str, float]:
    """The server's ``/metrics`` samples, keyed by name with their labels."""
    body = urllib.request.urlopen(f"{base}/metrics", timeout=60).read().decode()
    return {
        key: float(value)
        for key, _, value in (line.rpartition(" ") for line in body.splitlines())
        if key and not key.startswith("#")
    }


def metric(base: str, name: str) -> float:
    try:
        return metrics(base)[name]
    except KeyError:
        msg = f"{name} not in /metrics"
        raise KeyError(msg) from None


def _robust_slope(points: list[tuple[float, float]], per_minute: Callable) -> float:
    """Theil-Sen slope (median of pairwise slopes) of each whole minute's summary value."""
    minutes: dict[int, list[float]] = {}
    for t, y in points:
        minutes.setdefault(int(t), []).append(y)
    summary = [(m, per_minute(ys)) for m, ys in sorted(minutes.items())]
    slopes = [
        (y2 - y1) / (m2 - m1) for i, (m1, y1) in enumerate(summary) for m2, y2 in summary[i + 1 :]
    ]
    return statistics.median(slopes) if slopes else 0.0


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


if __name__ == "__main__":
    sys.exit(main())
