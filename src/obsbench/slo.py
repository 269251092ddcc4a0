"""Service level objectives as YAML, error budgets, burn rates and burn-rate alert rules.

An SLO names a service, an SLI (good and total events as filters on a canonical dataset),
an objective and a rolling window. From it obsbench computes the error budget, the budget
consumed and remaining, the burn rate over any window, and the multi-window,
multi-burn-rate alert rules of the Google SRE Workbook (:func:`burn_rate_alerts`).

YAML (one SLO, a list of SLOs, or a mapping with an ``slos:`` list)::

    slos:
      - name: order-router-latency
        service: order-router
        objective: 0.995          # or objective_percent: 99.5
        window: 30d
        sli:
          dataset: requests       # a canonical dataset with a ``ts`` column
          total: "endpoint <> '/health'"        # optional; default: every row
          good: "ok AND latency_ms <= 250"
        labels: {team: execution}

``total`` and ``good`` are SQL boolean expressions over the dataset's columns (parsed by
``polars.sql_expr``, checked against the canonical schema when the file is loaded). The
SLI's events are the dataset's rows with ``service == <service>`` (when the dataset has a
``service`` column) that satisfy ``total``; an event is good when it also satisfies
``good``.

Formulas (SRE Workbook ch. 5; the same expressions as :mod:`obsbench.metrics.sla`)
---------------------------------------------------------------------------------
- error budget (events) ``B = (1 - objective) * total`` over the SLO window;
- consumed ``= bad``; remaining ``= B - bad``; remaining fraction ``= 1 - bad / B``;
- burn rate over a window ``W``: ``(bad_W / total_W) / (1 - objective)``;
- a burn-rate alert fires when the burn rate over its long **and** its short window both
  exceed ``factor``; the factor that spends the fraction ``f`` of the budget in the long
  window ``W`` of an SLO window ``P`` is ``f * P / W`` (2% of 30 days in 1 hour: 14.4).

Examples
--------
>>> from obsbench.slo import burn_rate_alerts, load_slos
>>> (slo,) = load_slos('''
... name: api-availability
... service: order-router
... objective: 0.999
... window: 30d
... sli: {good: "ok"}
... ''')
>>> for rule in burn_rate_alerts(slo):
...     print(rule.severity, rule.long_window, rule.short_window, rule.factor)
critical 1h 5m 14.4
critical 6h 30m 6.0
warning 1d 2h 3.0
warning 3d 6h 1.0
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from obsbench import schemas
from obsbench.errors import ConfigError
from obsbench.metrics.sla import burn_rate, check_columns, duration_seconds, ensure_duration

__all__ = [
    "SLI",
    "SLO",
    "SRE_WORKBOOK_WINDOWS",
    "BurnRateEvaluation",
    "BurnRateRule",
    "BurnRateWindow",
    "ErrorBudget",
    "burn_rate_alerts",
    "burn_rate_over",
    "burn_rate_series",
    "error_budget",
    "load_slos",
    "sli_events",
]

Severity = Literal["critical", "warning"]
Frame = pl.DataFrame | pl.LazyFrame

_DURATION = re.compile(r"^(\d+(ns|us|ms|s|m|h|d|w))+$")


# --------------------------------------------------------------------------- model


class SLI(BaseModel):
    """Good and total events of an SLO, as SQL filters on a canonical dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "requests"
    good: str
    total: str | None = None

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in schemas.DATASETS:
            msg = f"unknown dataset {value!r}; use one of {list(schemas.DATASETS)}"
            raise ValueError(msg)
        if "ts" not in schemas.schema_of(value):
            msg = f"dataset {value!r} has no 'ts' column to window events by"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _filters_compile(self) -> SLI:
        empty = schemas.empty(self.dataset)
        for name in ("total", "good"):
            text = getattr(self, name)
            if text is None:
                continue
            try:
                expr = pl.sql_expr(text)
                out = empty.select(expr.alias("_f"))
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                msg = f"{name} filter {text!r} is not valid on {self.dataset!r}: {first}"
                raise ValueError(msg) from None
            if out.schema["_f"] != pl.Boolean:
                msg = f"{name} filter {text!r} gives {out.schema['_f']}, not a boolean"
                raise ValueError(msg)
        return self

    def total_filter(self) -> pl.Expr:
        """The ``total`` filter as an expression (true when absent)."""
        return pl.lit(True) if self.total is None else pl.sql_expr(self.total)

    def good_filter(self) -> pl.Expr:
        """The ``good`` filter as an expression."""
        return pl.sql_expr(self.good)


class SLO(BaseModel):
    """A service level objective (frozen; copy with ``slo.model_copy(update={...})``).

    Attributes
    ----------
    name
        Unique name (used in rule names and labels).
    service
        The service it covers.
    sli
        Good/total events (:class:`SLI`).
    objective
        Target share of good events, strictly in (0, 1). YAML may give
        ``objective_percent`` (99.9) instead.
    window
        Rolling SLO window as a duration string (``30d``, ``28d``, ``4w``).
    description, labels, annotations
        Free text and key/values copied onto the generated alert rules.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    service: str = Field(min_length=1)
    sli: SLI
    objective: float = Field(gt=0.0, lt=1.0)
    window: str = "30d"
    description: str = ""
    labels: Mapping[str, str] = Field(default_factory=dict)
    annotations: Mapping[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _percent(cls, data: Any) -> Any:
        if isinstance(data, dict) and "objective_percent" in data:
            data = dict(data)
            if "objective" in data:
                msg = "give objective or objective_percent, not both"
                raise ValueError(msg)
            pct = data.pop("objective_percent")
            data["objective"] = pct / 100 if isinstance(pct, int | float) else pct
        return data

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not _DURATION.match(value) or duration_seconds(value) <= 0:
            msg = f"window {value!r} is not a fixed duration such as '30d', '4w' or '720h'"
            raise ValueError(msg)
        return value

    @property
    def error_budget_ratio(self) -> float:
        """``1 - objective``: the share of events allowed to be bad."""
        return 1.0 - self.objective

    @property
    def window_timedelta(self) -> timedelta:
        return timedelta(seconds=duration_seconds(self.window))

    def events_filter(self, schema: Mapping[str, pl.DataType] | None = None) -> pl.Expr:
        """Rows that are SLI events: the service's rows satisfying ``total``."""
        cols = schema if schema is not None else schemas.schema_of(self.sli.dataset)
        base = pl.col("service") == self.service if "service" in cols else pl.lit(True)
        return base & self.sli.total_filter()


# --------------------------------------------------------------------------- loading


def load_slos(source: str | Path) -> list[SLO]:
    """Load SLOs from a YAML file, a directory of ``*.yaml`` files, or YAML text.

    Parameters
    ----------
    source
        A ``Path``; a string naming an existing ``.yaml``/``.yml`` file or directory; or
        YAML text (one SLO mapping, a list of them, or a mapping with an ``slos:`` list).

    Returns
    -------
    list[SLO]

    Raises
    ------
    ConfigError
        Naming the file and every invalid field (``slos[1].objective: ...``), or a YAML
        syntax error with its line, or duplicate SLO names.
    """
    if isinstance(source, Path) or (
        "\n" not in source and (source.endswith((".yaml", ".yml")) or Path(source).is_dir())
    ):
        path = Path(source)
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            slos = [slo for f in files for slo in _parse(f.read_text(), str(f))]
            return _unique(slos, str(path))
        if not path.is_file():
            msg = f"SLO file {str(path)!r} does not exist"
            raise ConfigError(msg, hint="pass an existing .yaml file, a directory, or YAML text.")
        return _unique(_parse(path.read_text(), str(path)), str(path))
    return _unique(_parse(source, "<text>"), "<text>")


def _parse(text: str, origin: str) -> list[SLO]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{origin}: invalid YAML: {exc}"
        raise ConfigError(msg, hint="check indentation and quoting at the reported line.") from None
    if isinstance(doc, dict) and "slos" in doc:
        items, prefix = doc["slos"], "slos"
    elif isinstance(doc, dict):
        items, prefix = [doc], ""
    else:
        items, prefix = doc, ""
    if not isinstance(items, list) or not items:
        msg = f"{origin}: expected an SLO mapping, a list of SLOs or an 'slos:' list"
        raise ConfigError(msg, hint="see the obsbench.slo module docstring for the format.")
    slos, problems = [], []
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]" if prefix or len(items) > 1 or isinstance(doc, list) else ""
        if not isinstance(item, dict):
            problems.append(f"{where or 'document'}: expected a mapping, got {type(item).__name__}")
            continue
        try:
            slos.append(SLO.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                field_path = ".".join(p for p in (where, loc) if p) or "document"
                problems.append(f"{field_path}: {err['msg']}")
    if problems:
        name = "SLO definition" if len(problems) == 1 else "SLO definitions"
        msg = f"{origin}: invalid {name}:\n" + "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            msg,
            hint="each SLO needs name, service, sli.good, objective in (0, 1) and a window "
            "such as '30d'; see obsbench.slo.",
        )
    return slos


def _unique(slos: list[SLO], origin: str) -> list[SLO]:
    names = [s.name for s in slos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"{origin}: duplicate SLO name(s) {dupes}"
        raise ConfigError(msg, hint="give every SLO a unique name.")
    return slos


# --------------------------------------------------------------------------- computation


def sli_events(slo: SLO, frame: Frame) -> Frame:
    """The SLI events of ``frame``: columns ``ts`` and ``good`` (bool), one row per event.

    Raises
    ------
    ColumnNotFound
        If a column the SLI refers to (or ``ts``) is absent.
    """
    expr_cols = set(slo.sli.good_filter().meta.root_names())
    if slo.sli.total is not None:
        expr_cols |= set(slo.sli.total_filter().meta.root_names())
    schema = check_columns(frame, ["ts", *sorted(expr_cols)], dataset=slo.sli.dataset)
    return frame.filter(slo.events_filter(schema)).select(
        "ts", good=slo.sli.good_filter().fill_null(False)
    )


def _end(events: Frame, at: datetime | None) -> datetime | None:
    if at is not None:
        return at
    last = events.select(pl.col("ts").max())
    last = last.collect() if isinstance(last, pl.LazyFrame) else last
    return last.item()


def _in_window(at: datetime, window: str) -> pl.Expr:
    start = at - timedelta(seconds=duration_seconds(window))
    return (pl.col("ts") > start) & (pl.col("ts") <= at)


def _collect(frame: Frame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


@dataclass(frozen=True)
class ErrorBudget:
    """Error budget of one SLO over its window ending at ``at``.

    ``budget = (1 - objective) * total`` events; ``consumed = bad``;
    ``remaining = budget - consumed``; ``remaining_fraction = remaining / budget``
    (1.0 untouched, 0.0 spent, negative overspent, NaN without events);
    ``burn_rate = (bad / total) / (1 - objective)`` over the whole SLO window.
    """

    slo: str
    at: datetime | None
    total: int
    good: int
    bad: int
    budget: float
    consumed: int
    remaining: float
    remaining_fraction: float
    burn_rate: float
    attainment: float


def error_budget(slo: SLO, frame: Frame, *, at: datetime | None = None) -> ErrorBudget:
    """Error budget, consumed and remaining, over the SLO window ``(at - window, at]``.

    Parameters
    ----------
    slo
        The SLO.
    frame
        The SLI's dataset (eager or lazy).
    at
        End of the window (inclusive); default the last event's ``ts``.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta
    >>> slo = SLO(name="x", service="a", objective=0.99, sli=SLI(good="ok"))
    >>> t0 = datetime(2024, 1, 1)
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [t0 + timedelta(minutes=i) for i in range(200)],
    ...         "service": "a",
    ...         "ok": [i != 7 for i in range(200)],
    ...     }
    ... )
    >>> b = error_budget(slo, df)
    >>> b.total, b.bad, round(b.budget, 9), round(b.remaining_fraction, 9)
    (200, 1, 2.0, 0.5)
    """
    events = sli_events(slo, frame)
    end = _end(events, at)
    if end is None:
        counts = (0, 0)
    else:
        row = _collect(
            events.filter(_in_window(end, slo.window)).select(
                pl.len().alias("total"), pl.col("good").sum().alias("good")
            )
        ).row(0)
        counts = (int(row[0]), int(row[1] or 0))
    total, good = counts
    bad = total - good
    budget = slo.error_budget_ratio * total
    nan = float("nan")
    return ErrorBudget(
        slo=slo.name,
        at=end,
        total=total,
        good=good,
        bad=bad,
        budget=budget,
        consumed=bad,
        remaining=budget - bad,
        remaining_fraction=(1.0 - bad / budget) if total else nan,
        burn_rate=(bad / total / slo.error_budget_ratio) if total else nan,
        attainment=(good / total) if total else nan,
    )


def burn_rate_over(
    slo: SLO, frame: Frame, *, window: str | timedelta, at: datetime | None = None
) -> float:
    """Burn rate of ``slo`` over ``(at - window, at]`` (NaN when there is no event).

    The value is :func:`obsbench.metrics.burn_rate` of the window's SLI events.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, timedelta
    >>> slo = SLO(name="x", service="a", objective=0.9, sli=SLI(good="ok"))
    >>> t0 = datetime(2024, 1, 1)
    >>> df = pl.DataFrame(
    ...     {
    ...         "ts": [t0 + timedelta(minutes=i) for i in range(120)],
    ...         "service": "a",
    ...         "ok": [i < 100 for i in range(120)],
    ...     }
    ... )
    >>> round(burn_rate_over(slo, df, window="1h"), 9)  # 20 bad of 60, budget 10%
    3.333333333
    >>> round(burn_rate_over(slo, df, window="2h"), 9)  # 20 bad of 120
    1.666666667
    """
    window = ensure_duration(window, param_name="window")
    events = sli_events(slo, frame)
    return _burn_rate_of_events(events, slo.objective, window, _end(events, at))


def _burn_rate_of_events(
    events: Frame, objective: float, window: str, end: datetime | None
) -> float:
    if end is None:
        return float("nan")
    selected = events.filter(_in_window(end, window))
    return float(_collect(selected.select(burn_rate("good", objective=objective))).item())


def burn_rate_series(
    slo: SLO,
    frame: Frame,
    *,
    windows: Sequence[str],
    every: str = "1m",
) -> Frame:
    """Burn rate over each of ``windows``, evaluated at the end of every ``every`` bucket.

    Parameters
    ----------
    slo
        The SLO.
    frame
        The SLI's dataset.
    windows
        Look-back windows (``["1h", "5m"]``).
    every
        Evaluation step; also the resolution of the windows.

    Returns
    -------
    pl.DataFrame | pl.LazyFrame
        ``ts`` (evaluation time ``t``, the end of a bucket with events) and one column
        ``burn_rate_<w>`` per window: the burn rate of the events in ``(t - w, t]``.

    Notes
    -----
    Events are counted in right-closed buckets ``(t - every, t]`` labelled ``t``, then
    summed over a right-closed rolling window of the labels, so each value counts exactly
    the events with ``ts`` in ``(t - w, t]`` when ``w`` is a multiple of ``every``.
    """
    every = ensure_duration(every, param_name="every")
    windows = [ensure_duration(w, param_name="windows") for w in windows]
    events = sli_events(slo, frame)
    label = pl.col("ts").dt.truncate(every)
    label = pl.when(label == pl.col("ts")).then(label).otherwise(label.dt.offset_by(every))
    buckets = (
        events.group_by(label.alias("ts"))
        .agg(pl.len().alias("_total"), (~pl.col("good")).sum().alias("_bad"))
        .sort("ts")
    )
    ratio = 1.0 - slo.objective
    cols = []
    for w in windows:
        total = pl.col("_total").rolling_sum_by("ts", w, closed="right")
        bad = pl.col("_bad").rolling_sum_by("ts", w, closed="right")
        cols.append(((bad / total) / ratio).alias(f"burn_rate_{w}"))
    return buckets.select("ts", *cols)


# --------------------------------------------------------------------------- alert rules


@dataclass(frozen=True)
class BurnRateWindow:
    """One row of the burn-rate table: severity, window pair and budget fraction spent."""

    severity: Severity
    long_window: str
    short_window: str
    budget_fraction: float

    def factor(self, slo_window: str) -> float:
        """``budget_fraction * slo_window / long_window`` (14.4 for 2% of 30d in 1h)."""
        raw = (
            self.budget_fraction * duration_seconds(slo_window) / duration_seconds(self.long_window)
        )
        return round(raw, 9)


SRE_WORKBOOK_WINDOWS: tuple[BurnRateWindow, ...] = (
    BurnRateWindow("critical", "1h", "5m", 0.02),
    BurnRateWindow("critical", "6h", "30m", 0.05),
    BurnRateWindow("warning", "1d", "2h", 0.10),
    BurnRateWindow("warning", "3d", "6h", 0.10),
)
"""The SRE Workbook's multiwindow, multi-burn-rate alerts (page = critical, ticket =
warning). For a 30-day SLO the factors are 14.4, 6, 3 and 1; other SLO windows keep the
budget fractions and windows and scale the factor (``fraction * period / long window``)."""


@dataclass(frozen=True)
class BurnRateEvaluation:
    """The outcome of one :meth:`BurnRateRule.evaluate`."""

    rule: str
    at: datetime | None
    long_burn_rate: float
    short_burn_rate: float
    threshold: float
    firing: bool


@dataclass(frozen=True)
class BurnRateRule:
    """A multi-window burn-rate alert rule, as plain data.

    It fires when the error ratio over **both** windows exceeds
    ``threshold = factor * (1 - objective)``, i.e. both burn rates exceed ``factor``.
    Fields are plain values (strings, floats, mappings) so the alert evaluator of
    ``obsbench.alerts`` can adapt it to its own ``Rule`` (signal = the two burn rates,
    comparison ``>``, the severity's threshold), serialise it, or backtest it;
    :meth:`evaluate` and :meth:`backtest` are the reference semantics.

    Attributes
    ----------
    name
        ``<slo>:burn-rate:<long>-<short>``.
    slo
        The SLO name.
    severity
        ``"critical"`` (page) or ``"warning"`` (ticket).
    long_window, short_window
        Look-back windows (``"1h"``, ``"5m"``).
    factor
        Burn-rate factor (14.4).
    threshold
        Error-ratio threshold ``factor * (1 - objective)``.
    objective, service, sli
        What is measured (the SLO's), so the rule is self-contained.
    labels, annotations
        Alert labels (``slo``, ``service``, ``severity``, windows, plus the SLO's) and
        annotations (``summary``, ``description``; ``{{ $value }}`` is the long burn rate).
    """

    name: str
    slo: str
    severity: Severity
    long_window: str
    short_window: str
    factor: float
    threshold: float
    objective: float
    service: str
    sli: SLI
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def _slo(self) -> SLO:
        return SLO(
            name=self.slo,
            service=self.service,
            sli=self.sli,
            objective=self.objective,
            window=self.long_window,
        )

    def evaluate(self, frame: Frame, *, at: datetime | None = None) -> BurnRateEvaluation:
        """Burn rates over both windows ending at ``at`` (default: last event) and the verdict.

        No event in a window gives a NaN burn rate, and NaN never fires.
        """
        slo = self._slo()
        events = _collect(sli_events(slo, frame))
        end = _end(events, at)
        long_br = _burn_rate_of_events(events, self.objective, self.long_window, end)
        short_br = _burn_rate_of_events(events, self.objective, self.short_window, end)
        firing = bool(long_br > self.factor and short_br > self.factor)
        return BurnRateEvaluation(self.name, end, long_br, short_br, self.threshold, firing)

    def backtest(self, frame: Frame, *, every: str = "1m") -> Frame:
        """Evaluate the rule at the end of every ``every`` bucket with events.

        Returns ``ts``, ``long_burn_rate``, ``short_burn_rate``, ``firing``.
        """
        series = burn_rate_series(
            self._slo(), frame, windows=[self.long_window, self.short_window], every=every
        )
        long_c = pl.col(f"burn_rate_{self.long_window}")
        short_c = pl.col(f"burn_rate_{self.short_window}")
        # polars orders NaN above every number: compare with NaN turned into null.
        above = (long_c.fill_nan(None) > self.factor) & (short_c.fill_nan(None) > self.factor)
        return series.select(
            "ts",
            long_c.alias("long_burn_rate"),
            short_c.alias("short_burn_rate"),
            above.fill_null(False).alias("firing"),
        )


def burn_rate_alerts(
    slo: SLO, *, windows: Sequence[BurnRateWindow] = SRE_WORKBOOK_WINDOWS
) -> tuple[BurnRateRule, ...]:
    """The multiwindow, multi-burn-rate alert rules of an SLO (SRE Workbook ch. 5).

    Parameters
    ----------
    slo
        The SLO.
    windows
        The burn-rate table; default :data:`SRE_WORKBOOK_WINDOWS` (page 14.4x over 1h and
        5m, 6x over 6h and 30m; ticket 3x over 1d and 2h, 1x over 3d and 6h for 30 days).

    Returns
    -------
    tuple[BurnRateRule, ...]
        One rule per table row, in table order.
    """
    rules = []
    for w in windows:
        factor = w.factor(slo.window)
        labels = {
            **slo.labels,
            "slo": slo.name,
            "service": slo.service,
            "severity": w.severity,
            "long_window": w.long_window,
            "short_window": w.short_window,
        }
        annotations = {
            "summary": f"{slo.name}: error budget burning {factor:g}x too fast "
            f"over {w.long_window} and {w.short_window}",
            "description": f"{slo.service} is spending the {slo.window} error budget of "
            f"{slo.name} (objective {slo.objective:.4%}) at {{{{ $value }}}}x; at "
            f"{factor:g}x, {w.budget_fraction:.0%} of it is gone in {w.long_window}.",
            **slo.annotations,
        }
        rules.append(
            BurnRateRule(
                name=f"{slo.name}:burn-rate:{w.long_window}-{w.short_window}",
                slo=slo.name,
                severity=w.severity,
                long_window=w.long_window,
                short_window=w.short_window,
                factor=factor,
                threshold=factor * slo.error_budget_ratio,
                objective=slo.objective,
                service=slo.service,
                sli=slo.sli,
                labels=MappingProxyType(labels),
                annotations=MappingProxyType(annotations),
            )
        )
    return tuple(rules)
