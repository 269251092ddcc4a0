"""Audit events: decisions, orders, executions, logins and configuration changes.

=====================  ==========================  =====================================
action                 actor                       details (JSON)
=====================  ==========================  =====================================
``order.decision``     ``strategy:<name>``         symbol, side, qty, horizon_s
``order.submit``       ``service:order-router``    broker, venue, qty, limit_px, account
``order.reject``       ``broker:<name>``           status_code, reason
``order.execution``    ``broker:<name>``           order_id, symbol, side, qty, px, fee, venue
``auth.login``         ``user:<name>``             email, ip, user_agent (one per
``auth.login_failed``                              ``POST /login`` request of the day)
``config.change``      ``user:<name>``             before, after (+ ticket)
=====================  ==========================  =====================================

Decision, submit, reject and execution events of an order share ``correlation_id`` = the
order's trace id. ``seq``, ``prev_hash`` and ``hash`` are left null for the audit store.

Fake secrets (for masking tests)
--------------------------------
Some details carry realistic-looking but fake sensitive values: ``account`` (broker account
numbers ``U`` + 7 digits) in every ``order.submit``; ``email`` and ``ip`` in logins;
``api_key`` (``sk_live_`` + 24 hex) in ``broker/<b>/credentials`` changes; ``iban``
and a contact ``email`` in ``broker/<b>/settlement_account`` changes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from obsbench.sim.common import US, DayClock, Stream, hex_ids, names, numbered, rng, timestamps

USERS: tuple[tuple[str, str], ...] = (
    ("alice", "alice.martin@example.com"),
    ("bob", "bob.nguyen@example.com"),
    ("carol", "carol.schmidt@example.org"),
    ("dave", "dave.okafor@example.com"),
    ("erin", "erin.rossi@example.net"),
    ("frank", "frank.li@example.com"),
    ("grace", "grace.kim@example.org"),
    ("heidi", "heidi.larsen@example.com"),
)
EMAILS = tuple(email for _, email in USERS)
CONFIG_CHANGES_PER_DAY = 6.0
_COLUMNS = ("ts", "actor", "action", "resource", "details", "correlation_id")


def account_numbers(n_strategies: int, seed: int) -> list[str]:
    """The (fake) broker account number of each strategy, ``U`` + 7 digits."""
    gen = rng(seed, Stream.STRATEGIES, 10_000)
    return [f"U{v:07d}" for v in gen.integers(1_000_000, 9_999_999, n_strategies)]


def _frame(**cols: object) -> pl.DataFrame:
    return pl.DataFrame(cols).select(list(_COLUMNS))


def order_events(
    orders: pl.DataFrame,
    decision_ts: np.ndarray,
    reject_ts: np.ndarray,
    accounts: list[str],
    strategies: tuple[str, ...],
    horizon_s: int,
) -> pl.DataFrame:
    """Decision, submit and reject events; ``orders`` has the order columns plus ``trace_id``."""
    decision = orders.select(
        ts=pl.Series(decision_ts).cast(pl.Datetime("us", "UTC")),
        actor=pl.lit("strategy:") + pl.col("strategy"),
        action=pl.lit("order.decision"),
        resource=pl.lit("order/") + pl.col("order_id"),
        details=pl.struct(
            "symbol", "side", "qty", horizon_s=pl.lit(horizon_s)
        ).struct.json_encode(),
        correlation_id="trace_id",
    )
    account_of = dict(zip(strategies, accounts, strict=True))
    submit = orders.select(
        "ts",
        actor=pl.lit("service:order-router"),
        action=pl.lit("order.submit"),
        resource=pl.lit("order/") + pl.col("order_id"),
        details=pl.struct(
            "broker",
            "venue",
            "qty",
            "limit_px",
            account=pl.col("strategy").replace_strict(account_of, return_dtype=pl.String),
        ).struct.json_encode(),
        correlation_id="trace_id",
    )
    rejected = orders.with_columns(_rts=pl.Series(reject_ts).cast(pl.Datetime("us", "UTC"))).filter(
        pl.col("status") == "rejected"
    )
    reject = rejected.select(
        ts="_rts",
        actor=pl.lit("broker:") + pl.col("broker"),
        action=pl.lit("order.reject"),
        resource=pl.lit("order/") + pl.col("order_id"),
        details=pl.struct(
            "status_code",
            reason=pl.when(pl.col("status_code") == 429)
            .then(pl.lit("rate limit exceeded"))
            .otherwise(pl.lit("broker server error")),
        ).struct.json_encode(),
        correlation_id="trace_id",
    )
    return pl.concat([decision, submit, reject])


def execution_events(fills: pl.DataFrame) -> pl.DataFrame:
    """One ``order.execution`` per fill; ``fills`` has the fill columns plus broker, trace_id."""
    return fills.select(
        "ts",
        actor=pl.lit("broker:") + pl.col("broker"),
        action=pl.lit("order.execution"),
        resource=pl.lit("fill/") + pl.col("fill_id"),
        details=pl.struct(
            "order_id", "symbol", "side", "qty", "px", "fee", "venue"
        ).struct.json_encode(),
        correlation_id="trace_id",
    )


def login_events(
    gen: np.random.Generator, ts: np.ndarray, user: np.ndarray, ok: np.ndarray
) -> pl.DataFrame:
    """One event per login attempt (``POST /login`` request)."""
    n = len(ts)
    octets = gen.integers(1, 255, (n, 3))
    ip = (
        pl.lit("10.")
        + pl.Series(octets[:, 0]).cast(pl.String)
        + pl.lit(".")
        + pl.Series(octets[:, 1]).cast(pl.String)
        + pl.lit(".")
        + pl.Series(octets[:, 2]).cast(pl.String)
    )
    agents = ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "obsbench-cli/0.1")
    frame = pl.DataFrame(
        {
            "ts": timestamps(ts),
            "user": names([u for u, _ in USERS], user),
            "email": names(EMAILS, user),
            "ok": ok,
            "user_agent": names(agents, gen.integers(0, len(agents), n)),
        }
    )
    return frame.select(
        "ts",
        actor=pl.lit("user:") + pl.col("user"),
        action=pl.when("ok").then(pl.lit("auth.login")).otherwise(pl.lit("auth.login_failed")),
        resource=pl.lit("service/auth"),
        details=pl.struct("email", ip.alias("ip"), "user_agent").struct.json_encode(),
        correlation_id=pl.lit(None, dtype=pl.String),
    )


def config_change_events(
    gen: np.random.Generator,
    clock: DayClock,
    strategies: tuple[str, ...],
    services: tuple[str, ...],
    brokers: tuple[str, ...],
) -> pl.DataFrame:
    """``config.change`` events with before/after values (some carrying fake secrets)."""
    n = int(gen.poisson(CONFIG_CHANGES_PER_DAY))
    ts = np.sort(gen.integers(clock.day0 + 13 * 3600 * US, clock.day0 + 21 * 3600 * US, n))
    kind = gen.integers(0, 4, n)
    user = gen.integers(0, len(USERS), n)
    ticket = numbered("CHG-", gen.integers(1000, 9999, n), 4)
    base = pl.DataFrame(
        {
            "ts": timestamps(ts),
            "actor": "user:" + names([u for u, _ in USERS], user),
            "action": pl.repeat("config.change", n, eager=True, dtype=pl.String),
            "ticket": ticket,
            "correlation_id": pl.Series([None] * n, dtype=pl.String),
        }
    )
    parts = []
    # 0: strategy risk limits
    m = kind == 0
    k = int(m.sum())
    before_pos = gen.integers(5, 50, k) * 10_000
    parts.append(
        base.filter(pl.Series(m)).with_columns(
            resource=pl.lit("strategy/")
            + names(strategies, gen.integers(0, len(strategies), k))
            + pl.lit("/risk_limits"),
            details=pl.struct(
                before=pl.struct(
                    max_position=pl.Series(before_pos), max_order_qty=pl.Series(before_pos // 20)
                ),
                after=pl.struct(
                    max_position=pl.Series(before_pos * 2),
                    max_order_qty=pl.Series(before_pos // 10),
                ),
                ticket="ticket",
            ).struct.json_encode(),
        )
    )
    # 1: broker API key rotation (fake secrets)
    m = kind == 1
    k = int(m.sum())
    parts.append(
        base.filter(pl.Series(m)).with_columns(
            resource=pl.lit("broker/")
            + names(brokers, gen.integers(0, len(brokers), k))
            + pl.lit("/credentials"),
            details=pl.struct(
                before=pl.struct(api_key=pl.lit("sk_live_") + hex_ids(gen, k, 12)),
                after=pl.struct(api_key=pl.lit("sk_live_") + hex_ids(gen, k, 12)),
                ticket="ticket",
            ).struct.json_encode(),
        )
    )
    # 2: service configuration
    m = kind == 2
    k = int(m.sum())
    timeout = gen.integers(1, 10, k) * 100
    replicas = gen.integers(2, 6, k)
    parts.append(
        base.filter(pl.Series(m)).with_columns(
            resource=pl.lit("service/")
            + names(services, gen.integers(0, len(services), k))
            + pl.lit("/config"),
            details=pl.struct(
                before=pl.struct(timeout_ms=pl.Series(timeout), replicas=pl.Series(replicas)),
                after=pl.struct(
                    timeout_ms=pl.Series(timeout * 2), replicas=pl.Series(replicas + 1)
                ),
                ticket="ticket",
            ).struct.json_encode(),
        )
    )
    # 3: settlement account (fake IBAN and e-mail)
    m = kind == 3
    k = int(m.sum())
    iban = [
        pl.lit("GB")
        + numbered("", gen.integers(10, 99, k), 2)
        + pl.lit("OBSB")
        + numbered("", gen.integers(10**13, 10**14 - 1, k), 14)
        for _ in range(2)
    ]
    parts.append(
        base.filter(pl.Series(m)).with_columns(
            resource=pl.lit("broker/")
            + names(brokers, gen.integers(0, len(brokers), k))
            + pl.lit("/settlement_account"),
            details=pl.struct(
                before=pl.struct(
                    iban=iban[0], contact=names(EMAILS, gen.integers(0, len(EMAILS), k))
                ),
                after=pl.struct(
                    iban=iban[1], contact=names(EMAILS, gen.integers(0, len(EMAILS), k))
                ),
                ticket="ticket",
            ).struct.json_encode(),
        )
    )
    return pl.concat([p.select(list(_COLUMNS)) for p in parts])
