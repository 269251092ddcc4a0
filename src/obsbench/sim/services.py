r"""Service traffic: the order flow's traces, broker API usage and background requests.

Order flow
----------
Each trading decision starts a trace through :data:`~obsbench.sim.config.FLOW`
(market-data -> signal -> risk-check -> order-router -> broker-gateway), each hop's span the
child of the previous one. Hop ``i`` has a self time ``a_i`` (log-normal, median
:data:`HOP_MEDIAN_MS`, sigma 0.5, times ``0.85 + 0.15 u_{1.5}(tau)`` for intraday load and
the latency-spike magnitude). Spans nest: with ``D_i = sum_{j >= i} a_j`` over the executed
hops, hop ``i`` starts at ``t0 + sum_{j<i} floor(a_j / 2)`` and lasts ``D_i``; its request
row has ``latency_ms = D_i``. A hop fails with probability ``p = min(0.95, 0.001 M)`` (``M``
the error-burst magnitude, else 1) and answers 5xx; the trace stops there. A trace that
reaches the broker-gateway is an order; if the broker answers 429 (rate limit) or 5xx, the
order is ``rejected``. Callers of a failed hop handle the error and answer 200.

Broker API usage
----------------
Per broker and endpoint (``quotes``: market-data polling; ``orders``: order-status polling
by broker-gateway plus order submissions) and per window of ``broker_window_s`` during the
session, background polls arrive as ``Poisson(rate x window x M)`` (``M`` the throttling
magnitude, else 1), at uniform times. In arrival order, the requests beyond the window's
``limit`` answer 429. ``api_usage.used`` counts every request of the window (so
``used > limit`` means ``used - limit`` requests were throttled). Close-out orders use a
priority lane: counted in ``used``, never throttled.

Background
----------
Health checks of every service every ``health_interval_s`` (all day); web traffic
(portal, auth, reporting) at ``background_rps`` with a diurnal profile; the broker polling
above. Web requests fail with 5xx at ``0.002 M`` and have endpoint-specific 4xx rates
(``POST /login`` answers 401 for 5 % of attempts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from obsbench.sim.common import (
    DAY_US,
    SPREAD_A,
    US,
    DayClock,
    lognormal,
    names,
    sample_diurnal_times,
    timestamps,
    u_shape,
)
from obsbench.sim.config import FLOW, SimConfig
from obsbench.sim.incidents import Effects

HOP_ENDPOINTS = ("GET /snapshot", "POST /signals/evaluate", "POST /risk/check", "POST /orders")
HOP_MEDIAN_MS = (2.0, 5.0, 3.0, 2.0, 25.0)
HOP_SIGMA = 0.5
BASE_ERROR = 0.001
WEB_BASE_ERROR = 0.002
ERROR_CODES = np.array([500, 502, 503, 504], dtype=np.int32)
HEALTH_ENDPOINT = "GET /healthz"
HEALTH_MEDIAN_MS = 1.5
POLL_MEDIAN_MS = {"quotes": 20.0, "orders": 25.0}
THROTTLED_MEDIAN_MS = 3.0
BROKER_ENDPOINTS = ("quotes", "orders")

# service -> (weight, [(endpoint, weight, median_ms, client_error_code, client_error_p)])
WEB: dict[str, tuple[float, list[tuple[str, float, float, int, float]]]] = {
    "portal": (0.55, [("GET /dashboard", 0.5, 45.0, 404, 0.01),
                      ("GET /positions", 0.3, 30.0, 404, 0.01),
                      ("GET /orders", 0.2, 35.0, 404, 0.01)]),
    "auth": (0.30, [("POST /login", 0.15, 80.0, 401, 0.05),
                    ("POST /token/refresh", 0.85, 8.0, 401, 0.01)]),
    "reporting": (0.15, [("GET /reports", 0.7, 120.0, 404, 0.005),
                         ("POST /reports/run", 0.3, 900.0, 400, 0.01)]),
}  # fmt: skip
DEFAULT_WEB = (0.10, [("GET /api", 1.0, 20.0, 404, 0.01)])
LOGIN_ENDPOINT = "POST /login"

FLOW_MESSAGES = (
    ("quote snapshot served", "quote snapshot failed", ""),
    ("signal evaluated", "signal evaluation failed", ""),
    ("risk check passed", "risk check failed", ""),
    ("order routed", "order routing failed", ""),
    ("order accepted by broker", "broker rejected order: server error",
     "broker rejected order: rate limit exceeded"),
)  # fmt: skip


def web_services(config: SimConfig) -> list[str]:
    """Services that receive web traffic: every configured service outside the flow."""
    return [s for s in config.services if s not in FLOW]


@dataclass(frozen=True)
class Catalog:
    """Every endpoint string of the platform, indexable (requests store an index)."""

    endpoints: tuple[str, ...]

    @classmethod
    def of(cls, config: SimConfig) -> Catalog:
        eps = [*HOP_ENDPOINTS, HEALTH_ENDPOINT]
        for b in config.brokers:
            eps += [
                f"POST /brokers/{b}/orders",
                f"GET /brokers/{b}/quotes",
                f"GET /brokers/{b}/orders",
            ]
        for svc in web_services(config):
            eps += [e[0] for e in WEB.get(svc, DEFAULT_WEB)[1] if e[0] not in eps]
        return cls(tuple(dict.fromkeys(eps)))

    def index(self, endpoint: str) -> int:
        return self.endpoints.index(endpoint)


@dataclass
class Part:
    """Request rows as arrays (indices into services/endpoints/traces; -1 = none)."""

    ts: np.ndarray
    service: np.ndarray
    endpoint: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    trace: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    user: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __post_init__(self) -> None:
        n = len(self.ts)
        if len(self.trace) != n:
            self.trace = np.full(n, -1, dtype=np.int64)
        if len(self.user) != n:
            self.user = np.full(n, -1, dtype=np.int64)

    @classmethod
    def concat(cls, parts: list[Part]) -> Part:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("ts", "service", "endpoint", "latency_ms", "status", "trace", "user")
            )
        )


def _status(gen: np.random.Generator, p_error: np.ndarray) -> np.ndarray:
    n = len(p_error)
    err = gen.random(n) < p_error
    return np.where(err, ERROR_CODES[gen.integers(0, len(ERROR_CODES), n)], 200).astype(np.int32)


# ------------------------------------------------------------------ order flow
@dataclass(frozen=True)
class Flow:
    """Per trace and hop (shape ``(n, 5)``): start, duration (µs), executed, status code."""

    start: np.ndarray
    dur: np.ndarray
    executed: np.ndarray
    status: np.ndarray

    @property
    def reached_broker(self) -> np.ndarray:
        return self.executed[:, 4]

    @property
    def order_ts(self) -> np.ndarray:
        """Arrival of the order at the order-router (the order's ``ts``)."""
        return self.start[:, 3]

    @property
    def broker_answer_ts(self) -> np.ndarray:
        """End of the broker-gateway span: the broker's first answer."""
        return self.start[:, 4] + self.dur[:, 4]


def simulate_flow(
    config: SimConfig,
    clock: DayClock,
    effects: Effects,
    gen: np.random.Generator,
    t0: np.ndarray,
    force_ok: np.ndarray,
) -> Flow:
    """Hop timings and 5xx failures of the traces starting at ``t0`` (see module docstring)."""
    n = len(t0)
    load = 0.85 + 0.15 * u_shape(clock.tau(t0), SPREAD_A)
    a_ms = np.empty((n, 5))
    fail = np.empty((n, 5), dtype=bool)
    for i, svc in enumerate(FLOW):  # five hops: vectorised over traces
        target = np.full(n, config.services.index(svc))
        lat = effects.factor("latency_spike", config.services, target, t0)
        err = effects.factor("error_burst", config.services, target, t0)
        a_ms[:, i] = lognormal(gen, HOP_MEDIAN_MS[i], HOP_SIGMA, n) * load * lat
        fail[:, i] = (gen.random(n) < np.minimum(0.95, BASE_ERROR * err)) & ~force_ok
    first_fail = np.where(fail.any(axis=1), fail.argmax(axis=1), 5)
    hops = np.arange(5)[None, :]
    executed = hops <= first_fail[:, None]
    a_us = np.where(executed, np.maximum(1, np.round(a_ms * 1000)).astype(np.int64), 0)
    dur = np.cumsum(a_us[:, ::-1], axis=1)[:, ::-1]
    before = np.concatenate(
        [np.zeros((n, 1), np.int64), np.cumsum(a_us // 2, axis=1)[:, :-1]], axis=1
    )
    start = t0[:, None] + before
    codes = ERROR_CODES[gen.integers(0, len(ERROR_CODES), n)]
    status = np.where(hops == first_fail[:, None], codes[:, None], 200).astype(np.int32)
    return Flow(start, dur, executed, status)


def flow_part(
    config: SimConfig, catalog: Catalog, flow: Flow, broker: np.ndarray, offset: int
) -> Part:
    """Request rows of the executed hops (``trace`` = ``offset`` + trace index)."""
    n = len(broker)
    tr, hop = np.nonzero(flow.executed)
    hop_ep = np.array([catalog.index(e) for e in HOP_ENDPOINTS] + [0])
    broker_ep = np.array([catalog.index(f"POST /brokers/{b}/orders") for b in config.brokers])
    endpoint = np.where(hop == 4, broker_ep[broker[tr]], hop_ep[hop])
    svc = np.array([config.services.index(s) for s in FLOW])
    del n
    return Part(
        ts=flow.start[tr, hop],
        service=svc[hop],
        endpoint=endpoint,
        latency_ms=flow.dur[tr, hop] / 1000.0,
        status=flow.status[tr, hop],
        trace=tr + offset,
    )


# ------------------------------------------------------------------ broker API usage
@dataclass
class BrokerTraffic:
    """Broker polling requests, 429 decisions for order submissions, and window usage."""

    part: Part
    submit_throttled: np.ndarray
    used: dict[str, np.ndarray]  # endpoint -> (n_brokers, n_windows)
    window_us: int
    windows: int
    open: int

    def add_priority(self, ts: np.ndarray, broker: np.ndarray) -> None:
        """Count priority (close-out) submissions in the ``orders`` usage."""
        w = np.clip((ts - self.open) // self.window_us, 0, self.windows - 1)
        np.add.at(self.used["orders"], (broker, w), 1)

    def frame(self, config: SimConfig) -> pl.DataFrame:
        """The ``api_usage`` rows: one per window, provider and endpoint (in that order)."""
        n_b, n_w, n_e = len(config.brokers), self.windows, len(BROKER_ENDPOINTS)
        limits = np.array([config.broker_quote_limit, config.broker_order_limit], dtype=np.int64)
        # (window, broker, endpoint) order, brokers and endpoints alphabetical
        b_order = np.argsort(np.array(config.brokers))
        used = np.stack([self.used[ep] for ep in BROKER_ENDPOINTS], axis=2)  # (b, w, e)
        e_order = np.argsort(np.array(BROKER_ENDPOINTS))
        used = used[b_order][:, :, e_order].transpose(1, 0, 2).ravel()
        n = n_b * n_w * n_e
        return pl.DataFrame(
            {
                "ts": timestamps(np.repeat(self.open + np.arange(n_w) * self.window_us, n_b * n_e)),
                "provider": names(config.brokers, np.tile(np.repeat(b_order, n_e), n_w)),
                "endpoint": names(BROKER_ENDPOINTS, np.tile(e_order, n_b * n_w)),
                "used": used,
                "limit": np.tile(limits[e_order], n_b * n_w),
                "window_s": np.full(n, config.broker_window_s, dtype=np.int64),
            }
        )


def simulate_broker_traffic(
    config: SimConfig,
    clock: DayClock,
    effects: Effects,
    catalog: Catalog,
    gen: np.random.Generator,
    submit_ts: np.ndarray,
    submit_broker: np.ndarray,
) -> BrokerTraffic:
    """Polling traffic, rate-limit ranks and usage per window (see module docstring)."""
    n_b = len(config.brokers)
    win_us = config.broker_window_s * US
    n_w = config.session_seconds // config.broker_window_s
    w_start = clock.open + np.arange(n_w, dtype=np.int64) * win_us
    parts, used = [], {}
    throttled_submit = np.zeros(len(submit_ts), dtype=bool)
    for ep, rps, limit, svc_name in (
        ("quotes", config.broker_poll_rps, config.broker_quote_limit, "market-data"),
        ("orders", config.status_poll_rps, config.broker_order_limit, "broker-gateway"),
    ):
        b_grid = np.repeat(np.arange(n_b), n_w)
        t_grid = np.tile(w_start, n_b)
        mult = effects.factor("broker_throttling", config.brokers, b_grid, t_grid)
        counts = gen.poisson(rps * config.broker_window_s * mult)
        g = np.repeat(np.arange(n_b * n_w), counts)
        ts = t_grid[g] + (gen.random(len(g)) * win_us).astype(np.int64)
        is_submit = np.zeros(len(g), dtype=bool)
        if ep == "orders":
            w_sub = np.clip((submit_ts - clock.open) // win_us, 0, n_w - 1)
            g = np.concatenate([g, submit_broker * n_w + w_sub])
            ts = np.concatenate([ts, submit_ts])
            is_submit = np.concatenate([is_submit, np.ones(len(submit_ts), dtype=bool)])
        within = np.clip(ts - t_grid[g], 0, win_us - 1)
        order = np.argsort(g * win_us + within, kind="stable")  # by window, then time
        g_sorted = g[order]
        rank = np.arange(len(g)) - np.searchsorted(g_sorted, g_sorted, side="left")
        throttled = np.empty(len(g), dtype=bool)
        throttled[order] = rank >= limit
        used[ep] = np.bincount(g, minlength=n_b * n_w).reshape(n_b, n_w).astype(np.int64)
        if ep == "orders":
            throttled_submit = throttled[is_submit]
        poll = ~is_submit
        gp, tsp, thr = g[poll], ts[poll], throttled[poll]
        svc_idx = config.services.index(svc_name)
        lat_f = effects.factor("latency_spike", config.services, np.full(len(tsp), svc_idx), tsp)
        err_f = effects.factor("error_burst", config.services, np.full(len(tsp), svc_idx), tsp)
        status = np.where(thr, 429, _status(gen, np.minimum(0.95, BASE_ERROR * err_f))).astype(
            np.int32
        )
        latency = np.where(
            thr,
            lognormal(gen, THROTTLED_MEDIAN_MS, 0.3, len(tsp)),
            lognormal(gen, POLL_MEDIAN_MS[ep], 0.5, len(tsp)) * lat_f,
        )
        method = "GET"
        ep_idx = np.array([catalog.index(f"{method} /brokers/{b}/{ep}") for b in config.brokers])
        parts.append(Part(tsp, np.full(len(tsp), svc_idx), ep_idx[gp // n_w], latency, status))
    return BrokerTraffic(Part.concat(parts), throttled_submit, used, win_us, n_w, clock.open)


# ------------------------------------------------------------------ background
def simulate_background(
    config: SimConfig,
    clock: DayClock,
    effects: Effects,
    catalog: Catalog,
    gen: np.random.Generator,
    n_users: int,
) -> Part:
    """Health checks and web traffic of the day (``user`` set on login attempts)."""
    parts = []
    # health checks: a fixed grid per service (phase = 997 ms x service index)
    step = config.health_interval_s * US
    per = DAY_US // step
    n_svc = len(config.services)
    svc = np.repeat(np.arange(n_svc), per)
    phase = (np.arange(n_svc) * 997_000) % step
    ts = clock.day0 + phase[svc] + np.tile(np.arange(per, dtype=np.int64) * step, n_svc)
    lat_f = effects.factor("latency_spike", config.services, svc, ts)
    err_f = effects.factor("error_burst", config.services, svc, ts)
    parts.append(
        Part(
            ts=ts,
            service=svc,
            endpoint=np.full(len(ts), catalog.index(HEALTH_ENDPOINT)),
            latency_ms=lognormal(gen, HEALTH_MEDIAN_MS, 0.3, len(ts)) * lat_f,
            status=np.where(
                gen.random(len(ts)) < np.minimum(0.95, BASE_ERROR * err_f), 503, 200
            ).astype(np.int32),
        )
    )
    # web traffic
    webs = web_services(config)
    if webs and config.background_rps > 0:
        n = int(gen.poisson(config.background_rps * 86_400))
        ts = sample_diurnal_times(gen, n, clock.day0)
        weights = np.array([WEB.get(s, DEFAULT_WEB)[0] for s in webs])
        s_local = gen.choice(len(webs), n, p=weights / weights.sum())
        table = [(webs[i], ep) for i in range(len(webs)) for ep in WEB.get(webs[i], DEFAULT_WEB)[1]]
        ep_local = np.empty(n, dtype=np.int64)
        u = gen.random(n)
        for i, svc_name in enumerate(webs):  # a few services: vectorised over rows
            rows = [k for k, (s, _) in enumerate(table) if s == svc_name]
            w = np.array([table[k][1][1] for k in rows])
            cut = np.cumsum(w / w.sum())
            pick = np.minimum(np.searchsorted(cut, u), len(rows) - 1)
            ep_local = np.where(s_local == i, np.array(rows)[pick], ep_local)
        svc_idx = np.array([config.services.index(s) for s in webs])[s_local]
        median = np.array([t[1][2] for t in table])[ep_local]
        code_4xx = np.array([t[1][3] for t in table], dtype=np.int32)[ep_local]
        p_4xx = np.array([t[1][4] for t in table])[ep_local]
        lat_f = effects.factor("latency_spike", config.services, svc_idx, ts)
        err_f = effects.factor("error_burst", config.services, svc_idx, ts)
        status = _status(gen, np.minimum(0.95, WEB_BASE_ERROR * err_f))
        status = np.where((status == 200) & (gen.random(n) < p_4xx), code_4xx, status)
        ep_idx = np.array([catalog.index(t[1][0]) for t in table])[ep_local]
        is_login = (
            ep_idx == catalog.index(LOGIN_ENDPOINT)
            if LOGIN_ENDPOINT in catalog.endpoints
            else np.zeros(n, bool)
        )
        parts.append(
            Part(
                ts=ts,
                service=svc_idx,
                endpoint=ep_idx,
                latency_ms=lognormal(gen, median, 0.6, n) * lat_f,
                status=status.astype(np.int32),
                user=np.where(is_login, gen.integers(0, n_users, n), -1),
            )
        )
    return Part.concat(parts)


# ------------------------------------------------------------------ frames
def requests_frame(
    config: SimConfig, catalog: Catalog, part: Part, trace_ids: pl.Series
) -> pl.DataFrame:
    """The ``requests`` rows, sorted by time."""
    order = np.argsort(part.ts, kind="stable")
    trace = part.trace[order]
    has = trace >= 0
    tid = pl.Series(np.where(has, trace, 0), dtype=pl.UInt32)
    frame = pl.DataFrame(
        {
            "ts": timestamps(part.ts[order]),
            "service": names(config.services, part.service[order]),
            "endpoint": names(catalog.endpoints, part.endpoint[order]),
            "latency_ms": part.latency_ms[order],
            "status_code": part.status[order],
            "trace_id": trace_ids.gather(tid)
            if len(trace_ids)
            else pl.Series([None] * len(order), dtype=pl.String),
            "_has": has,
        }
    )
    return frame.select(
        "ts",
        "service",
        "endpoint",
        "latency_ms",
        "status_code",
        ok=pl.col("status_code") < 400,
        trace_id=pl.when("_has").then("trace_id"),
    )


def spans_frame(
    config: SimConfig,
    catalog: Catalog,
    flow: Flow,
    broker: np.ndarray,
    context: pl.DataFrame,
    span_ids: pl.Series,
) -> pl.DataFrame:
    """The ``spans`` rows of the order-flow traces.

    ``context`` has one row per trace: ``trace_id``, ``order_id`` (nullable), ``strategy``,
    ``symbol``; ``span_ids`` holds ``5 x n`` ids (trace-major).
    """
    tr, hop = np.nonzero(flow.executed)
    flat = tr * 5 + hop
    part = flow_part(config, catalog, flow, broker, 0)
    status = part.status
    ctx = context[tr]
    frame = pl.DataFrame(
        {
            "trace_id": ctx["trace_id"],
            "span_id": span_ids.gather(flat),
            "parent_span_id": span_ids.gather(np.maximum(flat - 1, 0)),
            "_root": hop == 0,
            "service": names(FLOW, hop),
            "name": names(catalog.endpoints, part.endpoint),
            "start": timestamps(part.ts),
            "end": timestamps(part.ts + flow.dur[tr, hop]),
            "_code": status,
            "order_id": ctx["order_id"],
            "strategy": ctx["strategy"],
            "symbol": ctx["symbol"],
        }
    )
    return frame.select(
        "trace_id",
        "span_id",
        parent_span_id=pl.when(~pl.col("_root")).then("parent_span_id"),
        service="service",
        name="name",
        start="start",
        end="end",
        status=pl.when(pl.col("_code") < 400).then(pl.lit("ok")).otherwise(pl.lit("error")),
        attributes=pl.struct(
            pl.col("name").alias("http.route"),
            pl.col("_code").alias("http.status_code"),
            pl.col("order_id").alias("order.id"),
            "strategy",
            "symbol",
        ).struct.json_encode(),
    ).sort("start", maintain_order=True)


def _level(status: pl.Expr) -> pl.Expr:
    return (
        pl.when(status >= 500).then(pl.lit("ERROR"))
        .when(status >= 400).then(pl.lit("WARNING"))
        .otherwise(pl.lit("INFO"))
    )  # fmt: skip


def flow_logs_frame(flow: Flow, context: pl.DataFrame) -> pl.DataFrame:
    """One log line per executed hop, at the hop's end (ERROR for 5xx, WARNING for 429)."""
    tr, hop = np.nonzero(flow.executed)
    status = flow.status[tr, hop]
    outcome = np.where(status == 429, 2, np.where(status >= 500, 1, 0))
    messages = [m for row in FLOW_MESSAGES for m in row]
    ctx = context[tr]
    frame = pl.DataFrame(
        {
            "ts": timestamps(flow.start[tr, hop] + flow.dur[tr, hop]),
            "service": names(FLOW, hop),
            "message": names(messages, hop * 3 + outcome),
            "trace_id": ctx["trace_id"],
            "order_id": ctx["order_id"],
            "strategy": ctx["strategy"],
            "symbol": ctx["symbol"],
            "status_code": status,
            "latency_ms": flow.dur[tr, hop] / 1000.0,
        }
    )
    return frame.select(
        "ts",
        level=_level(pl.col("status_code")),
        service="service",
        message="message",
        trace_id="trace_id",
        fields=pl.struct(
            "order_id", "strategy", "symbol", "status_code", "latency_ms"
        ).struct.json_encode(),
    )


def background_logs_frame(
    config: SimConfig, catalog: Catalog, part: Part, emails: tuple[str, ...]
) -> pl.DataFrame:
    """Log lines of background requests: every non-2xx answer, and every login attempt."""
    keep = (part.status >= 400) | (part.user >= 0)
    idx = np.flatnonzero(keep)
    user = part.user[idx]
    frame = pl.DataFrame(
        {
            "ts": timestamps(part.ts[idx] + (part.latency_ms[idx] * 1000).astype(np.int64)),
            "service": names(config.services, part.service[idx]),
            "endpoint": names(catalog.endpoints, part.endpoint[idx]),
            "status_code": part.status[idx],
            "latency_ms": part.latency_ms[idx],
            "user": names(emails, np.maximum(user, 0)),
            "_login": user >= 0,
        }
    )
    login_msg = (
        pl.when(pl.col("status_code") < 400)
        .then(pl.lit("login succeeded"))
        .otherwise(pl.lit("login failed"))
    )
    return frame.select(
        "ts",
        level=_level(pl.col("status_code")),
        service="service",
        message=pl.when("_login")
        .then(login_msg)
        .otherwise(
            pl.col("endpoint") + pl.lit(" returned ") + pl.col("status_code").cast(pl.String)
        ),
        trace_id=pl.lit(None, dtype=pl.String),
        fields=pl.struct(
            "endpoint",
            "status_code",
            "latency_ms",
            user=pl.when("_login").then("user"),
        ).struct.json_encode(),
    )
