"""The live evaluator: every interval, evaluate every due rule, persist, notify, deliver.

One cycle at time ``now``:

1. compute each distinct signal once (rules that share a signal share its computation; each
   dataset is read once per cycle over the longest window that needs it);
2. advance every alert with :func:`obsbench.alerts.state.advance`, the one-evaluation form of
   :func:`~obsbench.alerts.replay` (same semantics, tested equal), applying each rule's
   no-data and error policies;
3. in **one transaction**: write the changed alert rows (``alert_state``), the transitions
   (``alert_history``), rule health, and the notifications the :class:`Notifier` queues
   in the outbox;
4. deliver due notifications (:class:`~obsbench.alerts.outbox.Outbox`).

State lives in the database, so a new evaluator (a restart, a new deploy) resumes every
pending and firing alert where it was: ``for`` clocks keep their ``active_at``, firing alerts
stay firing, and the group digests stop a repeat notification. Run it with
``obsbench alerts run RULES``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from obsbench.alerts import templates
from obsbench.alerts.durations import parse_duration
from obsbench.alerts.rules import MetricSignal, PromQLSignal, Rule
from obsbench.alerts.state import STATE_SCHEMA, advance, empty_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obsbench.alerts.notify import AlertView, NotifyConfig
    from obsbench.store import Store

log = logging.getLogger("obsbench.alerts.evaluator")
_US = pl.Datetime("us", "UTC")

Source = pl.DataFrame | pl.LazyFrame | Callable[[datetime], pl.DataFrame | pl.LazyFrame]


@dataclass
class CycleReport:
    """What one evaluation cycle did."""

    at: datetime
    evaluated: int
    transitions: pl.DataFrame
    firing: int
    pending: int
    health: dict[str, str] = field(default_factory=dict)
    queued: int = 0
    delivered: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class Evaluator:
    """Evaluate rules on a schedule, with state, history and notifications in a database.

    Parameters
    ----------
    rules
        The rules.
    database
        SQLAlchemy URL (default ``OBSBENCH_DATABASE_URL``, else SQLite in the home).
    engine
        An engine to use instead of ``database``.
    store
        The store named signals read (default: the one under ``OBSBENCH_HOME``).
    sources
        Dataset name -> frame (or ``f(now) -> frame``) to read instead of the store.
    prometheus_url
        For PromQL signals (default ``OBSBENCH_PROMETHEUS_URL``).
    notify
        The notification config (default :class:`~obsbench.alerts.notify.NotifyConfig`).
    interval
        The evaluation interval of rules that do not set their own.
    deliver
        Deliver the outbox at the end of each cycle (``False`` to leave it to another
        process, or to a test).
    bridge, pg_channel
        On PostgreSQL, also push dashboard notifications to other processes with NOTIFY on
        ``pg_channel`` (default ``obsbench_alerts``).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        database: str | None = None,
        engine: Engine | None = None,
        store: Store | None = None,
        sources: Mapping[str, Source] | None = None,
        prometheus_url: str | None = None,
        notify: NotifyConfig | None = None,
        interval: timedelta = timedelta(minutes=1),
        deliver: bool = True,
        bridge: bool = True,
        pg_channel: str | None = None,
    ) -> None:
        from obsbench.alerts import channels as channel_mod
        from obsbench.alerts.db import create_tables, is_postgres
        from obsbench.alerts.notify import Notifier, NotifyConfig
        from obsbench.alerts.outbox import Outbox
        from obsbench.store import engine as make_engine

        self.rules = {r.name: r for r in rules}
        if len(self.rules) != len(rules):
            msg = "rule names must be unique"
            raise ValueError(msg)
        self.engine = engine or make_engine(database)
        if self.engine.dialect.name == "sqlite":
            _tune_sqlite(self.engine)
        create_tables(self.engine)
        self.store = store
        self.sources = dict(sources or {})
        self.prometheus_url = prometheus_url
        self.interval = interval
        self.deliver_each_cycle = deliver
        self.notify_config = notify or NotifyConfig()
        self.channels = {
            name: channel_mod.build(name, cfg) for name, cfg in self.notify_config.channels.items()
        }
        self.bridge = None
        if bridge and is_postgres(self.engine):
            from obsbench.alerts.bus import PG_CHANNEL, PostgresBridge

            self.bridge = PostgresBridge(
                self.engine.url.render_as_string(hide_password=False),
                channel=pg_channel or PG_CHANNEL,
            )
            for ch in self.channels.values():
                if isinstance(ch, channel_mod.BusChannel):
                    ch.bridge = self.bridge
        self.outbox = Outbox(self.engine, self.channels)
        self.notifier = Notifier(self.notify_config)
        self._params = pl.DataFrame(
            {
                "rule": list(self.rules),
                "for_us": [round(r.for_seconds * 1e6) for r in self.rules.values()],
                "kff_us": [round(r.keep_firing_seconds * 1e6) for r in self.rules.values()],
            },
            schema={"rule": pl.String, "for_us": pl.Int64, "kff_us": pl.Int64},
        )
        self._thresholds = pl.DataFrame(
            [
                {"rule": r.name, "severity": sev, "threshold": thr, "op": r.op}
                for r in self.rules.values()
                for sev, thr in r.thresholds.items()
            ],
            schema={
                "rule": pl.String,
                "severity": pl.String,
                "threshold": pl.Float64,
                "op": pl.String,
            },
        )
        self.state, self.level, self.last_eval = self._load()

    # -- persistence -------------------------------------------------------------------

    def _load(self) -> tuple[pl.DataFrame, dict[tuple[str, str], dict], dict[str, datetime]]:
        from sqlalchemy import select

        from obsbench.alerts.db import alert_rule_health, alert_state, utc

        with self.engine.connect() as conn:
            rows = conn.execute(select(alert_state)).all()
            health = conn.execute(select(alert_rule_health)).all()
        series_rows, level = [], {}
        for r in rows:
            if r.rule not in self.rules:
                continue
            if r.state in ("nodata", "error"):
                level[(r.rule, r.state)] = {"severity": r.severity, "active_at": utc(r.active_at)}
                continue
            series_rows.append(
                {
                    "rule": r.rule,
                    "series": r.series,
                    "severity": r.severity,
                    "state": r.state,
                    "active_at": utc(r.active_at),
                    "fired_at": utc(r.fired_at),
                    "keep_since": utc(r.keep_since),
                    "value": r.value,
                }
            )
        state = pl.DataFrame(series_rows, schema=STATE_SCHEMA) if series_rows else empty_state()
        last = {h.rule: utc(h.last_eval) for h in health if h.rule in self.rules}
        return state, level, last

    # -- signals -----------------------------------------------------------------------

    def _due(self, now: datetime) -> list[Rule]:
        due = []
        for rule in self.rules.values():
            every = rule.interval or self.interval
            last = self.last_eval.get(rule.name)
            if last is None or now - last >= every - timedelta(milliseconds=1):
                due.append(rule)
        return due

    def _dataset_frame(self, dataset: str, now: datetime, window: timedelta) -> pl.DataFrame:
        from obsbench.store import Store, time_column

        src = self.sources.get(dataset)
        if src is not None:
            frame = src(now) if callable(src) else src
        else:
            store = self.store or Store()
            frame = store.scan(dataset, start=now - window, end=now + timedelta(microseconds=1))
        tcol = time_column(dataset)
        lf = frame.lazy().filter((pl.col(tcol) > now - window) & (pl.col(tcol) <= now))
        return lf.collect()

    def _signals(
        self, rules: list[Rule], now: datetime
    ) -> tuple[dict[tuple, pl.DataFrame], dict[tuple, str]]:
        from obsbench.alerts import signals as sig

        distinct: dict[tuple, MetricSignal | PromQLSignal] = {}
        for r in rules:
            distinct.setdefault(r.signal.key(), r.signal)
        windows: dict[str, timedelta] = {}
        for s in distinct.values():
            if isinstance(s, MetricSignal):
                spec = sig.get(s.metric)
                extra = s.params.get("and_window")
                w = max(s.window, parse_duration(extra)) if extra else s.window
                windows[spec.dataset] = max(windows.get(spec.dataset, timedelta(0)), w)
        frames: dict[str, pl.DataFrame] = {}
        errors: dict[tuple, str] = {}
        values: dict[tuple, pl.DataFrame] = {}
        for ds, w in windows.items():
            try:
                frames[ds] = self._dataset_frame(ds, now, w)
            except Exception as exc:  # the source is down: every rule on it is in error
                frames[ds] = exc  # type: ignore[assignment]
        # Signals that differ only in ``where`` on their ``by`` columns share one
        # computation: group once over every series, then keep each rule's rows.
        shared: dict[tuple, pl.DataFrame | str] = {}
        for key, s in distinct.items():
            try:
                if isinstance(s, PromQLSignal):
                    out = sig.evaluate_signal(s, now, prometheus_url=self.prometheus_url)
                    values[key] = sig.with_series_key(out.drop("ts"))
                    continue
                frame = frames[sig.get(s.metric).dataset]
                if isinstance(frame, Exception):
                    raise frame
                if s.where and set(s.where) <= set(s.by):
                    base = s.model_copy(update={"where": {}})
                    if base.key() not in shared:
                        try:
                            got = sig.evaluate_metric(base, now, store=self.store, frame=frame)
                            shared[base.key()] = sig.with_series_key(got.drop("ts"))
                        except Exception as exc:
                            shared[base.key()] = f"{type(exc).__name__}: {exc}"
                    got = shared[base.key()]
                    if isinstance(got, str):
                        errors[key] = got
                        continue
                    if len(s.where) == 1:  # joined with every rule at once in evaluate()
                        ((col, want),) = s.where.items()
                        allowed = (want,) if isinstance(want, str) else tuple(want)
                        values[key] = _Shared(base.key(), col, allowed, got)  # type: ignore[assignment]
                    else:
                        values[key] = sig.filter_where(got, s.where)
                    continue
                out = sig.evaluate_metric(s, now, store=self.store, frame=frame)
                values[key] = sig.with_series_key(out.drop("ts"))
            except Exception as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
        return values, errors

    # -- one cycle -----------------------------------------------------------------------

    def evaluate(self, now: datetime | None = None) -> CycleReport:
        """Run one evaluation cycle at ``now`` (default: the current time)."""
        now = _utc(now or datetime.now(UTC))
        clock = {"start": time.perf_counter()}
        due = self._due(now)
        values, errors = self._signals(due, now)
        clock["signals"] = time.perf_counter()

        obs_parts: list[pl.DataFrame] = []
        forced: list[Rule] = []  # rule-level "alerting" alerts (no data / error)
        carry: list[str] = []
        health: dict[str, str] = {}
        error_text: dict[str, str] = {}
        level_now: dict[tuple[str, str], str] = {}
        # rules on a shared signal: one join of (rule, label value) with the signal's rows
        shared_rows: dict[tuple, list[tuple[str, str]]] = {}
        for r in due:
            v = values.get(r.signal.key())
            if isinstance(v, _Shared):
                shared_rows.setdefault(v.base_key, []).extend((r.name, a) for a in v.allowed)
        with_data: set[str] = set()
        for r in due:
            v = values.get(r.signal.key())
            if isinstance(v, _Shared) and v.base_key in shared_rows:
                pairs = shared_rows.pop(v.base_key)
                mapping = pl.DataFrame(
                    pairs, schema={"rule": pl.String, v.col: pl.String}, orient="row"
                )
                joined = v.frame.select(v.col, "series", "value").join(mapping, on=v.col)
                obs_parts.append(joined.select("series", "value", "rule"))
                with_data |= set(joined.get_column("rule").unique().to_list())
        for r in due:
            key = r.signal.key()
            if key in errors:
                health[r.name] = "error"
                error_text[r.name] = errors[key]
                if r.on_error in ("error", "keep_last", "alerting"):
                    carry.append(r.name)  # as Prometheus: a failed evaluation changes nothing
                if r.on_error == "error":
                    level_now[(r.name, "error")] = r.no_data_severity
                elif r.on_error == "alerting":
                    forced.append(r)
                continue
            frame = values[key]
            if isinstance(frame, _Shared):
                if r.name in with_data:
                    health[r.name] = "ok"
                    continue
                frame = frame.frame.clear()
            if frame.height == 0:
                health[r.name] = "nodata"
                if r.no_data == "keep_last":
                    carry.append(r.name)
                elif r.no_data == "nodata":
                    level_now[(r.name, "nodata")] = r.no_data_severity
                elif r.no_data == "alerting":
                    forced.append(r)
                continue
            health[r.name] = "ok"
            obs_parts.append(frame.select("series", "value").with_columns(rule=pl.lit(r.name)))
        obs = self._conditions(obs_parts, forced)
        skip = [name for name in self.rules if name not in health]
        new_state, transitions = advance(
            self.state, obs, now, params=self._params, carry_rules=carry, skip_rules=skip
        )
        clock["advance"] = time.perf_counter()

        level_trans = self._level_transitions(level_now, [r.name for r in due], now)
        report = self._persist(
            now, new_state, transitions, level_now, level_trans, health, error_text
        )
        clock["persist"] = time.perf_counter()
        self.state = new_state
        for r in due:
            self.last_eval[r.name] = now
        if self.deliver_each_cycle:
            report.delivered = self.outbox.deliver(now).total_delivered
        clock["deliver"] = time.perf_counter()
        report.evaluated = len(due)
        report.health = health
        names = ["signals", "advance", "persist", "deliver"]
        prev = clock["start"]
        for n in names:
            report.seconds[n] = clock[n] - prev
            prev = clock[n]
        return report

    def _conditions(self, parts: list[pl.DataFrame], forced: list[Rule]) -> pl.DataFrame:
        """Observations: each series' value against each severity threshold of its rule."""
        schema = {
            "rule": pl.String,
            "series": pl.String,
            "severity": pl.String,
            "cond": pl.Boolean,
            "value": pl.Float64,
        }
        level = pl.DataFrame(
            [
                {"rule": r.name, "series": "{}", "severity": r.no_data_severity, "cond": True}
                for r in forced
            ],
            schema=schema,
        )
        if not parts:
            return level
        obs = pl.concat(
            [p.select("rule", "series", pl.col("value").cast(pl.Float64)) for p in parts]
        ).join(self._thresholds, on="rule", how="inner")
        v, t, op = pl.col("value"), pl.col("threshold"), pl.col("op")
        cond = (
            pl.when(op == ">")
            .then(v > t)
            .when(op == ">=")
            .then(v >= t)
            .when(op == "<")
            .then(v < t)
            .when(op == "<=")
            .then(v <= t)
            .when(op == "==")
            .then(v == t)
            .otherwise(v != t)
        )
        # IEEE: NaN compares false, except != (as numpy and Prometheus)
        cond = pl.when(v.is_nan()).then(op == "!=").otherwise(cond).fill_null(False)
        return pl.concat(
            [obs.select("rule", "series", "severity", cond.alias("cond"), "value"), level]
        )

    def _level_transitions(
        self, level_now: dict[tuple[str, str], str], due: list[str], now: datetime
    ) -> list[dict[str, Any]]:
        out = []
        for key, sev in level_now.items():
            if key not in self.level:
                self.level[key] = {"severity": sev, "active_at": now}
                out.append(
                    {"rule": key[0], "severity": sev, "from_state": "inactive", "to_state": key[1]}
                )
        for key in list(self.level):
            if key[0] in due and key not in level_now:
                sev = self.level.pop(key)["severity"]
                out.append(
                    {"rule": key[0], "severity": sev, "from_state": key[1], "to_state": "inactive"}
                )
        return out

    def _views(self, state: pl.DataFrame, error_text: dict[str, str]) -> list[AlertView]:
        from obsbench.alerts.db import fingerprint
        from obsbench.alerts.notify import AlertView

        views = []
        for row in state.filter(pl.col("state") == "firing").iter_rows(named=True):
            rule = self.rules[row["rule"]]
            series = json.loads(row["series"])
            labels = {**series, **rule.labels, "alertname": rule.name, "severity": row["severity"]}
            views.append(
                AlertView(
                    fingerprint=fingerprint(rule.name, row["series"], row["severity"]),
                    rule=rule.name,
                    severity=row["severity"],
                    labels=labels,
                    annotations=_render(rule, labels, row["value"], row["severity"]),
                    value=row["value"],
                    active_at=row["active_at"],
                    fired_at=row["fired_at"],
                    runbook_url=rule.runbook_url,
                )
            )
        for (rule_name, kind), info in self.level.items():
            rule = self.rules[rule_name]
            series = json.dumps({"alertstate": kind})
            labels = {
                **rule.labels,
                "alertname": rule.name,
                "severity": info["severity"],
                "alertstate": kind,
            }
            reason = error_text.get(rule_name, "source error")
            text = (
                f"rule {rule.name}: its signal returned no data"
                if kind == "nodata"
                else f"rule {rule.name}: evaluation failed: {reason}"
            )
            views.append(
                AlertView(
                    fingerprint=fingerprint(rule.name, series, info["severity"]),
                    rule=rule.name,
                    severity=info["severity"],
                    labels=labels,
                    annotations={"summary": text},
                    value=None,
                    active_at=info["active_at"],
                    fired_at=info["active_at"],
                    runbook_url=rule.runbook_url,
                )
            )
        return views

    def _persist(
        self,
        now: datetime,
        new_state: pl.DataFrame,
        transitions: pl.DataFrame,
        level_now: dict[tuple[str, str], str],
        level_trans: list[dict[str, Any]],
        health: dict[str, str],
        error_text: dict[str, str],
    ) -> CycleReport:
        from sqlalchemy import and_, bindparam, delete, update

        from obsbench.alerts.db import (
            alert_history,
            alert_rule_health,
            alert_state,
            fingerprint,
        )
        from obsbench.alerts.outbox import Outbox

        keys = ["rule", "series", "severity"]
        old, new = self.state, new_state
        removed = old.join(new, on=keys, how="anti")
        added = new.join(old, on=keys, how="anti")
        both = new.join(old, on=keys, how="inner", suffix="_old")
        changed = both.filter(
            pl.any_horizontal(
                *[
                    pl.col(c).ne_missing(pl.col(f"{c}_old"))
                    for c in ("state", "active_at", "fired_at", "keep_since", "value")
                ]
            )
        ).select(new.columns)

        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            out = frame.to_dicts()
            for r in out:
                r["fingerprint"] = fingerprint(r["rule"], r["series"], r["severity"])
                r["updated_at"] = now
            return out

        views = self._views(new_state, error_text)
        level_rows = [
            {
                "rule": rule,
                "series": json.dumps({"alertstate": kind}),
                "severity": sev,
                "fingerprint": fingerprint(rule, json.dumps({"alertstate": kind}), sev),
                "state": kind,
                "active_at": self.level[(rule, kind)]["active_at"],
                "fired_at": self.level[(rule, kind)]["active_at"],
                "keep_since": None,
                "value": None,
                "updated_at": now,
            }
            for (rule, kind), sev in level_now.items()
            if (rule, kind) in self.level
        ]
        with self.engine.begin() as conn:
            if removed.height:
                conn.execute(
                    delete(alert_state).where(
                        and_(
                            alert_state.c.rule == bindparam("b_rule"),
                            alert_state.c.series == bindparam("b_series"),
                            alert_state.c.severity == bindparam("b_severity"),
                        )
                    ),
                    [{f"b_{k}": v for k, v in r.items()} for r in removed.select(keys).to_dicts()],
                )
            for t in level_trans:
                if t["to_state"] == "inactive":
                    conn.execute(
                        delete(alert_state).where(
                            alert_state.c.rule == t["rule"],
                            alert_state.c.series == json.dumps({"alertstate": t["from_state"]}),
                        )
                    )
            inserts = rows(added) + [
                r
                for r in level_rows
                if any(t["rule"] == r["rule"] and t["to_state"] == r["state"] for t in level_trans)
            ]
            if inserts:
                conn.execute(alert_state.insert(), inserts)
            if changed.height:
                conn.execute(
                    update(alert_state)
                    .where(
                        and_(
                            alert_state.c.rule == bindparam("b_rule"),
                            alert_state.c.series == bindparam("b_series"),
                            alert_state.c.severity == bindparam("b_severity"),
                        )
                    )
                    .values(
                        state=bindparam("state"),
                        active_at=bindparam("active_at"),
                        fired_at=bindparam("fired_at"),
                        keep_since=bindparam("keep_since"),
                        value=bindparam("value"),
                        updated_at=bindparam("updated_at"),
                    ),
                    [
                        {**{f"b_{k}": r[k] for k in keys}, **{k: r[k] for k in r if k not in keys}}
                        for r in rows(changed)
                    ],
                )
            hist = [
                {
                    "ts": now,
                    "rule": t["rule"],
                    "series": t["series"],
                    "severity": t["severity"],
                    "fingerprint": fingerprint(t["rule"], t["series"], t["severity"]),
                    "from_state": t["from_state"],
                    "to_state": t["to_state"],
                    "value": t["value"],
                    "active_at": t["active_at"],
                }
                for t in transitions.to_dicts()
            ]
            for t in level_trans:
                series = json.dumps(
                    {
                        "alertstate": t["to_state"]
                        if t["to_state"] != "inactive"
                        else t["from_state"]
                    }
                )
                hist.append(
                    {
                        "ts": now,
                        "rule": t["rule"],
                        "series": series,
                        "severity": t["severity"],
                        "fingerprint": fingerprint(t["rule"], series, t["severity"]),
                        "from_state": t["from_state"],
                        "to_state": t["to_state"],
                        "value": None,
                        "active_at": None,
                    }
                )
            if hist:
                conn.execute(alert_history.insert(), hist)
            if health:
                counts = (
                    dict(new_state.group_by("rule").len().iter_rows()) if new_state.height else {}
                )
                conn.execute(
                    delete(alert_rule_health).where(alert_rule_health.c.rule.in_(list(health)))
                )
                conn.execute(
                    alert_rule_health.insert(),
                    [
                        {
                            "rule": name,
                            "last_eval": now,
                            "health": h,
                            "error": error_text.get(name),
                            "series": int(counts.get(name, 0)),
                        }
                        for name, h in health.items()
                    ],
                )
            decision = self.notifier.process(conn, now, views, Outbox)
        n_firing = int((new_state["state"] == "firing").sum())
        return CycleReport(
            at=now,
            evaluated=0,
            transitions=transitions,
            firing=n_firing,
            pending=new_state.height - n_firing,
            queued=decision.queued,
        )

    # -- the loop ----------------------------------------------------------------------

    def run(
        self,
        *,
        cycles: int | None = None,
        stop: threading.Event | None = None,
        on_cycle: Callable[[CycleReport], object] | None = None,
    ) -> None:
        """Evaluate at every multiple of the interval until ``stop`` is set (or ``cycles``)."""
        stop = stop or threading.Event()
        step = min([r.interval or self.interval for r in self.rules.values()] or [self.interval])
        done = 0
        if self.bridge is not None:
            self.bridge.start()
        try:
            while not stop.is_set() and (cycles is None or done < cycles):
                now = datetime.now(UTC)
                tick = _floor(now, step)
                if self.last_eval and max(self.last_eval.values()) >= tick:
                    tick += step
                if stop.wait(max(0.0, (tick - datetime.now(UTC)).total_seconds())):
                    break
                try:
                    report = self.evaluate(tick)
                except Exception:  # keep evaluating; the next cycle may succeed
                    log.exception("evaluation cycle failed")
                else:
                    if on_cycle is not None:
                        on_cycle(report)
                done += 1
        finally:
            if self.bridge is not None:
                self.bridge.stop()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


@dataclass(frozen=True)
class _Shared:
    """A rule's share of a signal computed once for many rules (``where`` on one label)."""

    base_key: tuple
    col: str
    allowed: tuple[str, ...]
    frame: pl.DataFrame


def _render(
    rule: Rule, labels: dict[str, str], value: float | None, severity: str
) -> dict[str, str]:
    thr = dict(rule.thresholds.items()).get(severity)  # type: ignore[call-overload]
    return {
        k: templates.render(t, labels, value, alertname=rule.name, severity=severity, threshold=thr)
        for k, t in rule.annotations.items()
    }


def _tune_sqlite(engine: Engine) -> None:
    """Use the WAL journal and ``synchronous=NORMAL`` on SQLite.

    Many small commits (the outbox marks each delivery) then cost no fsync each, and the
    database stays consistent across process crashes, as WAL guarantees.
    """
    from sqlalchemy import event, text

    def on_connect(dbapi_conn: Any, _record: object) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener get replaced
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _floor(ts: datetime, step: timedelta) -> datetime:
    us = int(ts.timestamp() * 1e6)
    size = int(step.total_seconds() * 1e6)
    return datetime.fromtimestamp((us - us % size) / 1e6, UTC)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
