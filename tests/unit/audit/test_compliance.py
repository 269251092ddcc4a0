"""Compliance checks on hand-made audit frames (no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from obsbench.audit import compliance as cp
from obsbench.audit.search import SEARCH_SCHEMA

T0 = datetime(2024, 1, 2, 14, 0, tzinfo=UTC)


def events(*rows: tuple) -> pl.DataFrame:
    """Rows of (actor, action, resource, details, correlation_id)."""
    data = {name: [] for name in SEARCH_SCHEMA}
    for i, (actor, action, resource, details, cid) in enumerate(rows):
        data["seq"].append(i + 1)
        data["ts"].append(T0 + timedelta(minutes=i))
        data["actor"].append(actor)
        data["action"].append(action)
        data["resource"].append(resource)
        data["details"].append(json.dumps(details))
        data["correlation_id"].append(cid)
        data["prev_hash"].append("0" * 64)
        data["hash"].append(f"{i + 1:064x}")
        data["source"].append(None)
        data["event_id"].append(f"e{i}")
    return pl.DataFrame(data, schema=SEARCH_SCHEMA)


TRADES = events(
    ("strategy:a", "decision", "order/O1", {}, "c1"),
    ("service:router", "order", "order/O1", {}, "c1"),
    ("broker:x", "execution", "fill/O1-1", {}, "c1"),
    ("service:router", "order", "order/O2", {}, "c2"),  # no decision
    ("broker:x", "execution", "fill/O2-1", {}, "c2"),
    ("broker:x", "execution", "fill/O3-1", {}, "c3"),  # neither
    ("broker:x", "execution", "fill/O4-1", {}, None),  # no correlation id
)


def test_trace_gaps() -> None:
    gaps = cp.trace_gaps(TRADES)
    assert gaps.schema == cp.GAP_SCHEMA
    assert gaps.select("seq", "evidence").rows() == [
        (5, "no decision event for correlation id c2"),
        (6, "no order or decision event for correlation id c3"),
        (7, "execution has no correlation id"),
    ]


CHANGES = events(
    ("user:alice", "config_change", "svc/a", {"before": 1, "after": 2}, None),
    ("unknown", "config_change", "svc/b", {"before": 1, "after": 2}, None),
    ("user:bob", "config_change", "svc/c", {"after": 2}, None),
    ("user:bob", "config_change", "svc/d", {"before": {"x": 1}}, None),
    ("user:bob", "config_change", "svc/e", {"before": None, "after": 0}, None),
)


def test_config_change_gaps() -> None:
    gaps = cp.config_change_gaps(CHANGES)
    assert gaps.select("seq", "evidence").rows() == [
        (2, "no named actor"),
        (3, "no 'before' value"),
        (4, "no 'after' value"),
        (5, "no 'before' value"),  # null is not a before value
    ]


def test_config_changes_table() -> None:
    table = cp.config_changes(CHANGES)
    assert table.row(0, named=True) | {"ts": None} == {
        "seq": 1, "ts": None, "actor": "user:alice", "resource": "svc/a",
        "before": "1", "after": "2", "ticket": None,
    }  # fmt: skip


POLICY = cp.AccessPolicy.from_mapping(
    {
        "roles": {"user:alice": ["compliance"], "user:bob": ["trader"]},
        "permissions": {"compliance": ["page/audit*"], "trader": ["page/trading*", "strategy/*"]},
    }
)
ACCESS = events(
    ("user:alice", "login", "service/auth", {}, None),
    ("user:alice", "access", "page/audit", {}, None),
    ("user:bob", "access", "page/audit", {}, None),  # outside role
    ("user:bob", "access_denied", "page/audit", {}, None),
    ("user:carol", "access", "page/trading", {"role": "trader"}, None),  # role from details
    ("user:carol", "access", "page/audit", {"role": "trader"}, None),  # outside role
    ("user:bob", "config_change", "service/x/config", {"before": 1, "after": 2}, None),  # outside
    ("user:bob", "alert_ack", "strategy/m1", {}, None),
    ("user:bob", "login_failed", "service/auth", {}, None),
)


def test_access_violations() -> None:
    found = cp.access_violations(ACCESS, POLICY)
    assert found.select("check", "seq").rows() == [
        ("access_outside_role", 3),
        ("access_outside_role", 6),
        ("access_outside_role", 7),
        ("access_denied", 4),
    ]
    assert found["evidence"][0] == "access by roles [trader] not permitted on page/audit"


def test_access_review() -> None:
    review = cp.access_review(ACCESS, POLICY)
    assert review.select("actor", "roles", "logins", "failed_logins", "outside_role").rows() == [
        ("user:alice", "compliance", 1, 0, 0),
        ("user:bob", "trader", 0, 1, 2),
        ("user:carol", "trader", 0, 0, 1),
    ]


def test_failed_login_bursts() -> None:
    burst = events(*[("user:eve", "login_failed", "service/auth", {}, None)] * 4)
    assert cp.failed_login_bursts(burst, threshold=3)["failed_logins"].to_list() == [4]
    assert cp.failed_login_bursts(burst, threshold=4).is_empty()


ORDERS = pl.DataFrame(
    {
        "order_id": ["O1", "O2"],
        "ts": [T0, T0],
        "strategy": ["a", "b"],
        "symbol": ["AAPL", "MSFT"],
        "side": ["buy", "sell"],
        "qty": [100.0, 100.0],
        "arrival_px": [100.0, 200.0],
        "limit_px": [None, None],
        "venue": ["XNAS", "XNYS"],
        "broker": ["x", "y"],
        "status": ["filled", "filled"],
    },
    schema_overrides={"limit_px": pl.Float64, "ts": pl.Datetime("us", "UTC")},
)
FILLS = pl.DataFrame(
    {
        "fill_id": ["O1-1", "O2-1"],
        "order_id": ["O1", "O2"],
        "ts": [T0 + timedelta(seconds=1)] * 2,
        "symbol": ["AAPL", "MSFT"],
        "side": ["buy", "sell"],
        "qty": [100.0, 100.0],
        "px": [100.30, 199.90],  # buy 30 bps worse; sell 5 bps worse
        "fee": [0.0, 0.0],
        "venue": ["XNAS", "XNYS"],
    },
    schema_overrides={"ts": pl.Datetime("us", "UTC")},
)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        pytest.param(25.0, ["O1-1"], id="25bps"),
        pytest.param(4.0, ["O1-1", "O2-1"], id="4bps_worst_first"),
        pytest.param(50.0, [], id="none"),
    ],
)
def test_best_execution_exceptions(threshold: float, expected: list[str]) -> None:
    found = cp.best_execution_exceptions(ORDERS, FILLS, threshold_bps=threshold, events=TRADES)
    assert found["fill_id"].to_list() == expected
    if expected:
        assert found["slippage_bps"][0] == pytest.approx(30.0)
        assert found["audit_seq"][0] == 3  # the execution record of fill O1-1


def test_completeness() -> None:
    table = cp.completeness(TRADES, ORDERS, FILLS)
    assert table.select("item", "expected", "recorded", "missing").rows() == [
        ("decisions", 2, 1, 1),
        ("orders", 2, 2, 0),
        ("executions", 2, 2, 0),
    ]
    assert table["coverage"].to_list() == [0.5, 1.0, 1.0]


def test_gaps_combines_every_check_by_severity() -> None:
    everything = pl.concat([TRADES, CHANGES, ACCESS]).with_columns(
        pl.int_range(1, pl.len() + 1).alias("seq")
    )
    gaps = cp.gaps(everything, policy=POLICY, orders=ORDERS, fills=FILLS, threshold_bps=25)
    assert gaps.schema == cp.GAP_SCHEMA
    counts = dict(gaps.group_by("check").len().rows())
    assert counts == {
        "execution_without_order_or_decision": 3,
        "config_change_incomplete": 4,
        "access_outside_role": 8,  # 3 in ACCESS + the 5 changes of svc/* (no role permits)
        "access_denied": 1,
        "best_execution_exception": 1,
    }
    assert gaps["severity"].to_list() == sorted(
        gaps["severity"].to_list(), key={"high": 0, "medium": 1, "info": 2}.get
    )


def test_empty_events_give_empty_frames() -> None:
    empty = pl.DataFrame(schema=SEARCH_SCHEMA)
    assert cp.gaps(empty, policy=POLICY).is_empty()
    assert cp.access_review(empty, POLICY).is_empty()
    assert cp.actions_by_day(empty).is_empty()
