"""Compliance checks over the audit trail, each a polars frame the compliance report prints.

- :func:`trace_gaps`: every execution must trace back to an order and a decision event with
  the same correlation id.
- :func:`config_change_gaps`: every configuration change must name an actor and carry
  ``before`` and ``after``.
- :func:`access_violations`: access outside the actor's permitted roles, and denied access.
- :func:`best_execution_exceptions`: fills whose slippage (``obsbench.metrics.execution``)
  exceeds a threshold, with the evidence and the audit record of the execution.
- :func:`completeness`: the audit trail against the trading data (every order has its
  decision and order events, every fill its execution event).
- :func:`gaps`: all of the above as one frame of open compliance gaps.

The functions take an ``events`` frame as returned by :func:`obsbench.audit.search` /
:func:`load_events` (columns of :data:`~obsbench.audit.search.SEARCH_SCHEMA`) and never
query the database themselves, so they test on hand-made frames and run unchanged in a
notebook.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

TIMESTAMP = pl.Datetime("us", "UTC")  # as obsbench.schemas (not imported: it loads dataframely)

GAP_SCHEMA = pl.Schema(
    {
        "check": pl.String,
        "severity": pl.String,
        "seq": pl.Int64,
        "ts": TIMESTAMP,
        "actor": pl.String,
        "resource": pl.String,
        "correlation_id": pl.String,
        "evidence": pl.String,
    }
)
"""Columns of every gap frame (one row per open compliance gap)."""

ANONYMOUS_ACTORS: frozenset[str] = frozenset(
    {"", "unknown", "anonymous", "n/a", "-", "none", "null", "user:unknown", "user:"}
)
"""Actors that do not name anyone (a config change by one of them is a gap)."""

ACCESS_ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "access",
    "access_denied",
    "alert_ack",
    "config_change",
)
"""Actions the access review counts."""
CHECKED_ACTIONS = ("access", "config_change", "alert_ack")
"""Granted actions on a resource that the actor's roles must permit."""


@dataclass(frozen=True)
class AccessPolicy:
    """Who holds which roles and which resources each role may access.

    Parameters
    ----------
    roles
        Actor -> roles (``{"user:alice": ["compliance"]}``). An access event's
        ``details.role`` is used for actors not listed.
    permissions
        Role -> resource patterns (``fnmatch`` globs, ``{"trader": ["page/trading*"]}``).
    """

    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> AccessPolicy:
        return cls(
            roles={str(k): tuple(v) for k, v in (doc.get("roles") or {}).items()},
            permissions={str(k): tuple(v) for k, v in (doc.get("permissions") or {}).items()},
        )

    @classmethod
    def from_yaml(cls, path: Path | str) -> AccessPolicy:
        """Read ``roles:`` and ``permissions:`` from a YAML file."""
        import yaml

        from obsbench.errors import ConfigError

        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            msg = f"cannot read the access policy {path}: {exc}"
            raise ConfigError(msg, hint="give a YAML file with roles: and permissions:.") from exc
        return cls.from_mapping(doc)

    def roles_of(self, actor: str, fallback: str | None = None) -> tuple[str, ...]:
        if actor in self.roles:
            return self.roles[actor]
        return (fallback,) if fallback else ()

    def allows(self, roles: Sequence[str], resource: str) -> bool:
        return any(
            fnmatch.fnmatchcase(resource, pattern)
            for role in roles
            for pattern in self.permissions.get(role, ())
        )


def load_events(
    start: datetime | None = None, end: datetime | None = None, *, url: str | None = None
) -> pl.DataFrame:
    """All audit events with ``start <= ts < end`` (every page), for the checks below."""
    from obsbench.audit import iter_search

    return iter_search(start=start, end=end, url=url)


def _details(events: pl.DataFrame, *fields: str) -> list[pl.Expr]:
    return [pl.col("details").str.json_path_match(f"$.{name}").alias(f"_{name}") for name in fields]


def _gaps(frame: pl.DataFrame, check: str, severity: str, evidence: pl.Expr) -> pl.DataFrame:
    if frame.is_empty():
        return pl.DataFrame(schema=GAP_SCHEMA)
    return frame.select(
        pl.lit(check).alias("check"),
        pl.lit(severity).alias("severity"),
        pl.col("seq").cast(pl.Int64),
        pl.col("ts").cast(TIMESTAMP),
        pl.col("actor"),
        pl.col("resource"),
        pl.col("correlation_id"),
        evidence.alias("evidence"),
    )


def trace_gaps(events: pl.DataFrame) -> pl.DataFrame:
    """Executions without an order or a decision event of the same correlation id.

    An execution with no correlation id at all is a gap too.
    """
    executions = events.filter(pl.col("action") == "execution")
    present = (
        events.filter(
            pl.col("action").is_in(["decision", "order"]) & pl.col("correlation_id").is_not_null()
        )
        .group_by("correlation_id")
        .agg(
            (pl.col("action") == "decision").any().alias("_has_decision"),
            (pl.col("action") == "order").any().alias("_has_order"),
        )
    )
    joined = executions.join(present, on="correlation_id", how="left").with_columns(
        pl.col("_has_decision").fill_null(value=False),
        pl.col("_has_order").fill_null(value=False),
    )
    bad = joined.filter(~pl.col("_has_decision") | ~pl.col("_has_order")).sort("seq")
    missing = (
        pl.when(pl.col("correlation_id").is_null())
        .then(pl.lit("execution has no correlation id"))
        .otherwise(
            pl.lit("no ")
            + pl.concat_str(
                pl.when(~pl.col("_has_order")).then(pl.lit("order")),
                pl.when(~pl.col("_has_decision")).then(pl.lit("decision")),
                separator=" or ",
                ignore_nulls=True,
            )
            + pl.lit(" event for correlation id ")
            + pl.col("correlation_id")
        )
    )
    return _gaps(bad, "execution_without_order_or_decision", "high", missing)


def config_change_gaps(
    events: pl.DataFrame, *, anonymous: frozenset[str] = ANONYMOUS_ACTORS
) -> pl.DataFrame:
    """Config changes whose actor names no one, or that lack ``before`` or ``after``."""
    changes = events.filter(pl.col("action") == "config_change").with_columns(
        pl.col("details").str.json_path_match("$.before").is_not_null().alias("_before"),
        pl.col("details").str.json_path_match("$.after").is_not_null().alias("_after"),
        pl.col("actor").str.strip_chars().str.to_lowercase().is_in(list(anonymous)).alias("_anon"),
    )
    bad = changes.filter(pl.col("_anon") | ~pl.col("_before") | ~pl.col("_after")).sort("seq")
    evidence = pl.concat_str(
        pl.when(pl.col("_anon")).then(pl.lit("no named actor")),
        pl.when(~pl.col("_before")).then(pl.lit("no 'before' value")),
        pl.when(~pl.col("_after")).then(pl.lit("no 'after' value")),
        separator="; ",
        ignore_nulls=True,
    )
    return _gaps(bad, "config_change_incomplete", "high", evidence)


def _with_roles(events: pl.DataFrame, policy: AccessPolicy) -> pl.DataFrame:
    access = events.filter(pl.col("action").is_in(ACCESS_ACTIONS)).with_columns(
        pl.col("details").str.json_path_match("$.role").alias("_role")
    )
    roles = [
        ", ".join(policy.roles_of(actor, role))
        for actor, role in access.select("actor", "_role").iter_rows()
    ]
    allowed = [
        policy.allows(policy.roles_of(actor, role), resource)
        for actor, role, resource in access.select("actor", "_role", "resource").iter_rows()
    ]
    return access.with_columns(
        pl.Series("roles", roles, dtype=pl.String), pl.Series("_allowed", allowed, dtype=pl.Boolean)
    )


def access_review(events: pl.DataFrame, policy: AccessPolicy) -> pl.DataFrame:
    """Per actor: roles and counts of logins, failures, accesses, denials, changes, acks.

    ``outside_role`` counts the actor's actions that their roles do not permit.
    """
    access = _with_roles(events, policy)
    if access.is_empty():
        return pl.DataFrame(
            schema={"actor": pl.String, "roles": pl.String}
            | dict.fromkeys(
                (
                    "logins",
                    "failed_logins",
                    "accesses",
                    "denied",
                    "config_changes",
                    "alert_acks",
                    "outside_role",
                ),
                pl.UInt32,
            )
        )
    return (
        access.group_by("actor")
        .agg(
            pl.col("roles").drop_nulls().filter(pl.col("roles") != "").first().alias("roles"),
            (pl.col("action") == "login").sum().alias("logins"),
            (pl.col("action") == "login_failed").sum().alias("failed_logins"),
            (pl.col("action") == "access").sum().alias("accesses"),
            (pl.col("action") == "access_denied").sum().alias("denied"),
            (pl.col("action") == "config_change").sum().alias("config_changes"),
            (pl.col("action") == "alert_ack").sum().alias("alert_acks"),
            (pl.col("action").is_in(CHECKED_ACTIONS) & ~pl.col("_allowed"))
            .sum()
            .alias("outside_role"),
        )
        .with_columns(pl.col("roles").fill_null("(none)"))
        .sort("actor")
    )


def access_violations(events: pl.DataFrame, policy: AccessPolicy) -> pl.DataFrame:
    """Granted actions outside the actor's permitted roles (high) and denied access (info).

    Checked are ``access``, ``config_change`` and ``alert_ack`` events: the actor's roles
    (from the policy, else the event's ``details.role``) must permit the resource.
    """
    access = _with_roles(events, policy)
    outside = access.filter(pl.col("action").is_in(CHECKED_ACTIONS) & ~pl.col("_allowed")).sort(
        "seq"
    )
    denied = access.filter(pl.col("action") == "access_denied").sort("seq")
    roles_text = pl.when(pl.col("roles") == "").then(pl.lit("no role")).otherwise(pl.col("roles"))
    return pl.concat(
        [
            _gaps(
                outside,
                "access_outside_role",
                "high",
                pl.col("action")
                + pl.lit(" by roles [")
                + roles_text
                + pl.lit("] not permitted on ")
                + pl.col("resource"),
            ),
            _gaps(
                denied,
                "access_denied",
                "info",
                pl.lit("denied to roles [") + roles_text + pl.lit("]"),
            ),
        ]
    )


def best_execution_exceptions(
    orders: pl.DataFrame | pl.LazyFrame,
    fills: pl.DataFrame | pl.LazyFrame,
    *,
    threshold_bps: float = 25.0,
    events: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Fills whose slippage against the arrival mid exceeds ``threshold_bps``, worst first.

    Slippage is :func:`obsbench.metrics.execution.fill_slippage` (positive is a cost).
    With ``events``, each exception carries the ``seq`` and ``hash`` of its execution audit
    record (``resource = "fill/<fill_id>"``) as evidence.
    """
    from obsbench.metrics.execution import fill_slippage

    per_fill = fill_slippage(orders, fills)
    if isinstance(per_fill, pl.LazyFrame):
        per_fill = per_fill.collect()
    out = (
        per_fill.filter(pl.col("slippage_bps") > threshold_bps)
        .select(
            "fill_id",
            "order_id",
            "ts",
            "strategy",
            "symbol",
            "side",
            "qty",
            "px",
            "arrival_px",
            "broker",
            "venue",
            pl.col("slippage_bps"),
        )
        .sort("slippage_bps", descending=True)
    )
    if events is not None:
        records = events.filter(pl.col("action") == "execution").select(
            pl.col("resource").str.strip_prefix("fill/").alias("fill_id"),
            pl.col("seq").alias("audit_seq"),
            pl.col("hash").alias("audit_hash"),
            "correlation_id",
        )
        out = out.join(records, on="fill_id", how="left")
    return out


def best_execution_gaps(exceptions: pl.DataFrame, *, threshold_bps: float) -> pl.DataFrame:
    """The exceptions of :func:`best_execution_exceptions` as gap rows."""
    if exceptions.is_empty():
        return pl.DataFrame(schema=GAP_SCHEMA)
    cols = exceptions.columns
    return exceptions.select(
        pl.lit("best_execution_exception").alias("check"),
        pl.lit("medium").alias("severity"),
        (pl.col("audit_seq") if "audit_seq" in cols else pl.lit(None)).cast(pl.Int64).alias("seq"),
        pl.col("ts").cast(TIMESTAMP),
        (pl.lit("strategy:") + pl.col("strategy")).alias("actor"),
        (pl.lit("fill/") + pl.col("fill_id")).alias("resource"),
        (pl.col("correlation_id") if "correlation_id" in cols else pl.lit(None))
        .cast(pl.String)
        .alias("correlation_id"),
        pl.format(
            "slippage {} bps > {} bps ({} {} {} @ {}, arrival {})",
            pl.col("slippage_bps").round(2),
            pl.lit(threshold_bps),
            pl.col("side"),
            pl.col("qty"),
            pl.col("symbol"),
            pl.col("px").round(4),
            pl.col("arrival_px").round(4),
        ).alias("evidence"),
    )


def completeness(
    events: pl.DataFrame,
    orders: pl.DataFrame | pl.LazyFrame | None = None,
    fills: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Audit coverage of the trading data: expected vs recorded events per kind.

    Rows: ``decisions`` and ``orders`` (one each per order, ``resource = "order/<id>"``),
    ``executions`` (one per fill, ``resource = "fill/<id>"``). Columns ``item``,
    ``expected``, ``recorded``, ``missing``, ``coverage`` (recorded / expected).
    """
    rows: list[dict[str, Any]] = []

    def add(item: str, ids: pl.Series, action: str, prefix: str) -> None:
        recorded = (
            events.filter(pl.col("action") == action)
            .select(pl.col("resource").str.strip_prefix(prefix))
            .to_series()
        )
        found = ids.is_in(recorded.implode()).sum() if ids.len() else 0
        rows.append(
            {
                "item": item,
                "expected": ids.len(),
                "recorded": int(found),
                "missing": ids.len() - int(found),
                "coverage": (int(found) / ids.len()) if ids.len() else None,
            }
        )

    if orders is not None:
        ids = (orders.collect() if isinstance(orders, pl.LazyFrame) else orders)["order_id"]
        add("decisions", ids, "decision", "order/")
        add("orders", ids, "order", "order/")
    if fills is not None:
        ids = (fills.collect() if isinstance(fills, pl.LazyFrame) else fills)["fill_id"]
        add("executions", ids, "execution", "fill/")
    return pl.DataFrame(
        rows,
        schema={
            "item": pl.String,
            "expected": pl.Int64,
            "recorded": pl.Int64,
            "missing": pl.Int64,
            "coverage": pl.Float64,
        },
    )


def actions_by_day(events: pl.DataFrame) -> pl.DataFrame:
    """Events per UTC day and action (a wide frame: one column per action)."""
    if events.is_empty():
        return pl.DataFrame(schema={"day": pl.Date})
    return (
        events.group_by(pl.col("ts").dt.date().alias("day"), "action")
        .len()
        .pivot(on="action", index="day", values="len")
        .fill_null(0)
        .sort("day")
    )


def config_changes(events: pl.DataFrame) -> pl.DataFrame:
    """Configuration changes with ``before`` and ``after`` as JSON text, oldest first."""
    return (
        events.filter(pl.col("action") == "config_change")
        .select(
            "seq",
            "ts",
            "actor",
            "resource",
            pl.col("details").str.json_path_match("$.before").alias("before"),
            pl.col("details").str.json_path_match("$.after").alias("after"),
            pl.col("details").str.json_path_match("$.ticket").alias("ticket"),
        )
        .sort("seq")
    )


def gaps(
    events: pl.DataFrame,
    *,
    policy: AccessPolicy | None = None,
    orders: pl.DataFrame | pl.LazyFrame | None = None,
    fills: pl.DataFrame | pl.LazyFrame | None = None,
    threshold_bps: float = 25.0,
) -> pl.DataFrame:
    """Every open compliance gap, one row each (:data:`GAP_SCHEMA`), by severity then time."""
    parts = [trace_gaps(events), config_change_gaps(events)]
    if policy is not None:
        parts.append(access_violations(events, policy))
    if orders is not None and fills is not None:
        exceptions = best_execution_exceptions(
            orders, fills, threshold_bps=threshold_bps, events=events
        )
        parts.append(best_execution_gaps(exceptions, threshold_bps=threshold_bps))
    rank = {"high": 0, "medium": 1, "info": 2}
    out = pl.concat([p.select(list(GAP_SCHEMA)) for p in parts])
    return out.sort(
        pl.col("severity").replace_strict(rank, default=9, return_dtype=pl.Int8),
        "ts",
        "seq",
        nulls_last=True,
    )


def write_anchor(manifest: Path | str, anchor: Mapping[str, Any]) -> None:
    """Add ``audit_anchor`` (the verified chain head) to a report's ``manifest.json``.

    The file is rewritten atomically. An auditor later runs
    ``obsbench audit verify --manifest manifest.json`` to prove the report was built on a log
    that has not been altered since.
    """
    import json
    import os

    path = Path(manifest)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["audit_anchor"] = dict(anchor)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def failed_login_bursts(events: pl.DataFrame, *, threshold: int = 3) -> pl.DataFrame:
    """Actors with more than ``threshold`` failed logins on one UTC day."""
    return (
        events.filter(pl.col("action") == "login_failed")
        .group_by("actor", pl.col("ts").dt.date().alias("day"))
        .agg(pl.len().alias("failed_logins"), pl.col("seq").min().alias("first_seq"))
        .filter(pl.col("failed_logins") > threshold)
        .sort("day", "actor")
    )
