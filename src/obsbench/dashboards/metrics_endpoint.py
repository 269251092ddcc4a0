"""``/health`` and ``/metrics``: the dashboard server's own health and Prometheus metrics.

Both are plain Tornado handlers added to the Panel server (``extra_patterns``); they do not
require a login (scrape them on loopback or behind the proxy's access rules).

``/metrics`` (Prometheus text format 0.0.4) exports, per server process:

==============================================  =============================================
metric                                          meaning
==============================================  =============================================
``obsbench_dashboard_sessions``                 open sessions subscribed to the live model
``obsbench_dashboard_ticks_total``              live-model ticks
``obsbench_dashboard_tick_seconds``             quantiles over the last 600 ticks of the
                                                shared computation (``part="compute"``) and
                                                of the event-loop time spent updating every
                                                session (``part="push"``) and their sum
                                                (``part="total"``)
``obsbench_dashboard_updates_skipped_total``   session updates conflated on a busy loop
``obsbench_dashboard_source_stale``             1 while a source or view group is stale
``obsbench_dashboard_source_age_seconds``       seconds since its data last advanced
``obsbench_dashboard_alert_dispatch_seconds``  bus -> session handler delay of alerts
``obsbench_dashboard_alerts_received_total``    alert rows received from the bus
``obsbench_dashboard_events_total``             logins, denied accesses, acks... by action
``obsbench_dashboard_live_data_bytes``          in-memory size of the live model's frames
``obsbench_dashboard_heap_bytes``               native heap bytes by ``allocator`` (glibc,
                                                arrow) and ``state`` (in_use, free)
``process_resident_memory_bytes``               resident memory of the process
==============================================  =============================================
"""

from __future__ import annotations

import json
import os
import weakref
from datetime import UTC, datetime
from typing import Any

import tornado.web

from obsbench.dashboards import memory

__all__ = ["HealthHandler", "MetricsHandler", "render_metrics"]


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(rt: Any) -> str:
    """The Prometheus exposition text for a :class:`~obsbench.dashboards.setup.Runtime`."""
    from obsbench.dashboards import events

    model = rt.model
    snap = model.snapshot
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    metric(
        "obsbench_dashboard_sessions", "gauge", "Open dashboard sessions.", [({}, model.sessions)]
    )
    metric("obsbench_dashboard_ticks_total", "counter", "Live-model ticks.", [({}, snap.version)])
    metric(
        "obsbench_dashboard_updates_skipped_total",
        "counter",
        "Session updates skipped because the previous one had not run yet (busy loop).",
        [({}, model.skipped)],
    )
    costs = list(model.tick_costs)
    compute = [c["compute_ms"] / 1000 for c in costs]
    push = []
    total = []
    for c in costs:
        n, ms = model.push_cost(int(c["version"]))
        if n:
            push.append(ms / 1000)
            total.append((ms + c["compute_ms"]) / 1000)
    samples = [
        ({"part": part, "quantile": str(q)}, _quantile(values, q))
        for part, values in (("compute", compute), ("push", push), ("total", total))
        for q in (0.5, 0.95, 0.99)
    ]
    metric(
        "obsbench_dashboard_tick_seconds",
        "summary",
        "Live-model tick cost: shared computation, session updates, total.",
        samples,
    )
    now = datetime.now(UTC)
    stale, age = [], []
    for name, state in sorted(snap.states.items()):
        since = state.stale_since(now, stale_after=snap.stale_after)
        stale.append(({"source": name}, 1 if since is not None else 0))
        if state.last_ok is not None:
            age.append(({"source": name}, round((now - state.last_ok).total_seconds(), 3)))
    metric("obsbench_dashboard_source_stale", "gauge", "1 while stale.", stale)
    metric("obsbench_dashboard_source_age_seconds", "gauge", "Seconds since fresh data.", age)
    from obsbench.dashboards.alerts_feed import DISPATCH_MS

    dispatch = [v / 1000 for v in DISPATCH_MS]
    metric(
        "obsbench_dashboard_alert_dispatch_seconds",
        "summary",
        "From an alert on this process's bus to a session handling it (recent 2000).",
        [({"quantile": str(q)}, _quantile(dispatch, q)) for q in (0.5, 0.95, 0.99)],
    )
    metric(
        "obsbench_dashboard_alerts_received_total",
        "counter",
        "Alert rows received from the bus.",
        [({}, rt.book.received)],
    )
    metric(
        "obsbench_dashboard_events_total",
        "counter",
        "Dashboard security events by action.",
        [({"action": a}, n) for a, n in sorted(events.COUNTS.items())],
    )
    metric(
        "obsbench_dashboard_live_data_bytes",
        "gauge",
        "In-memory size of the live model's frames (the day's data, windows, history).",
        [({}, model.data_bytes())],
    )
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory in bytes.",
        [({}, memory.rss_bytes())],
    )
    metric(
        "obsbench_dashboard_heap_bytes",
        "gauge",
        "Native heap bytes by allocator and state (glibc in use / free, Arrow pool in use).",
        [({"allocator": a, "state": s}, n) for (a, s), n in sorted(memory.heap_bytes().items())],
    )
    return "\n".join(lines) + "\n"


class MetricsHandler(tornado.web.RequestHandler):
    """``GET /metrics``: Prometheus text format."""

    def get(self) -> None:
        from obsbench.dashboards.setup import runtime

        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(render_metrics(runtime()))


class HealthHandler(tornado.web.RequestHandler):
    """``GET /health``: JSON status; 503 when the live model thread is not running.

    ``?ticks=N`` adds the cost of the last N ticks (``compute_ms``, ``groups_ms``: each
    view group computed in that tick, ``push_ms``, ``push_cpu_ms``: CPU time of the event
    loop for the session updates, ``sessions``). ``?objects=N`` adds the N most numerous
    object types the garbage collector tracks, after a collection, and ``weakrefs``: what
    the weak references point at (``dead``: a reference whose object is gone but which is
    still held; slow: for leak hunting). A value that is not a whole number gives a 400.
    """

    def get(self) -> None:
        from obsbench.dashboards.setup import runtime

        rt = runtime()
        snap = rt.model.snapshot
        alive = rt.model._thread is not None and rt.model._thread.is_alive()
        now = datetime.now(UTC)
        sources = {
            name: {
                "stale_since": (
                    since.isoformat()
                    if (since := s.stale_since(now, stale_after=snap.stale_after))
                    else None
                ),
                "error": s.error,
            }
            for name, s in snap.states.items()
        }
        stale = any(v["stale_since"] for v in sources.values())
        body = {
            "status": "down" if not alive else ("degraded" if stale else "ok"),
            "pid": os.getpid(),
            "sessions": rt.model.sessions,
            "tick": snap.version,
            "data_now": snap.data_now.isoformat() if snap.data_now else None,
            "sources": sources,
        }
        ticks = self._count("ticks")
        if ticks > 0:  # recent tick costs, for benchmarks and diagnosis
            recent = list(rt.model.tick_costs)[-ticks:]
            body["ticks"] = [
                {
                    **c,
                    "push_ms": rt.model.push_cost(int(c["version"]))[1],
                    "push_cpu_ms": rt.model.push_cpu(int(c["version"])),
                }
                for c in recent
            ]
            from obsbench.dashboards.alerts_feed import DISPATCH_MS

            body["alert_dispatch_ms"] = list(DISPATCH_MS)
        if top := self._count("objects"):  # leak hunting: the most numerous live objects
            import gc
            from collections import Counter

            gc.collect()
            live = gc.get_objects()
            counts = Counter(type(o).__qualname__ for o in live)
            body["objects"] = dict(counts.most_common(top))
            # What the weak references point at ("dead": their object is gone, the
            # reference itself is still held somewhere).
            targets = Counter(
                "dead" if (t := o()) is None else type(t).__qualname__
                for o in live
                if type(o) is weakref.ReferenceType
            )
            body["weakrefs"] = dict(targets.most_common(top))
        self.set_status(200 if alive else 503)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body))

    def _count(self, name: str) -> int:
        """The query argument ``name`` as a count (0 when absent); 400 when not one."""
        value = self.get_argument(name, "") or "0"
        if not value.isdigit():
            raise tornado.web.HTTPError(
                400,
                reason=f"?{name}={value[:20]} is not a count: give a whole number, e.g. ?{name}=5",
            )
        return int(value)
