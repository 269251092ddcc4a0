"""Alert rules: frozen pydantic models and the YAML rule-file parser.

A rule file looks like this (Prometheus-like; obsbench adds per-severity thresholds)::

    interval: 1m                # evaluation interval of every rule in the file
    rules:
      - name: ApiLatencyHigh
        signal: {metric: p99_latency, dataset: requests, by: [service], window: 5m}
        op: ">"
        thresholds: {warning: 500, critical: 1000, emergency: 2000}
        for: 5m
        keep_firing_for: 0s
        labels: {team: trading-ops}
        annotations: {summary: "p99 latency high on {{ labels.service }}: {{ value }}"}
        runbook_url: https://runbooks.example/api-latency
    slos: [slos/api.yaml]       # optional: SLO files, expanded into burn-rate rules

``signal`` is either ``{promql: '<expr>'}`` (evaluated by the Prometheus at
``OBSBENCH_PROMETHEUS_URL``) or a named obsbench signal (:mod:`obsbench.alerts.signals`)
with its parameters.

Severity model
--------------
Each severity is evaluated as Prometheus evaluates a separate alerting rule
``signal <op> threshold`` with the rule's ``for`` and ``keep_firing_for``: thresholds are
*inclusive* (a value over the critical threshold also satisfies warning), exactly the
"critical also fires warning" layout of Alertmanager's docs. Escalation is a higher severity
of the same series going pending then firing while the lower one keeps firing; de-escalation
is the higher one resolving while the lower one keeps firing. The notifier's default
inhibition mutes the lower severities of a series while a higher one fires, so a person sees
one alert per series at its current severity.

Errors name the file, the line and the field (``rules.yaml:7: rules[0].thresholds.warning:
...``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from obsbench.alerts import templates
from obsbench.alerts.durations import parse_duration
from obsbench.errors import ConfigError

Severity = Literal["warning", "critical", "emergency"]
SEVERITIES: tuple[Severity, ...] = ("warning", "critical", "emergency")
"""Severities from lowest to highest."""

Op = Literal[">", ">=", "<", "<=", "==", "!="]
NoDataPolicy = Literal["ok", "nodata", "alerting", "keep_last"]
ErrorPolicy = Literal["error", "alerting", "ok", "keep_last"]

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class RuleError(ConfigError):
    """A rule file is invalid; ``source``, ``line`` and ``field`` locate the problem."""

    def __init__(
        self,
        message: str,
        *,
        source: str = "<rules>",
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source, self.line, self.field = source, line, field
        where = f"{source}:{line}" if line is not None else source
        prefix = f"{where}: {field}: " if field else f"{where}: "
        super().__init__(prefix + message, hint=hint or "fix the rule file at the line shown.")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PromQLSignal(_Frozen):
    """A PromQL expression; each series of its result is one alert series."""

    promql: str = Field(min_length=1)

    def key(self) -> tuple[object, ...]:
        return ("promql", self.promql)


class MetricSignal(_Frozen):
    """A named obsbench signal over a canonical dataset (see :mod:`obsbench.alerts.signals`).

    ``where`` keeps only rows whose label equals the value (or is one of the values).
    ``params`` are passed to the signal (e.g. ``{q: 0.99}`` for latency percentiles).
    """

    metric: str = Field(min_length=1)
    dataset: str | None = None
    by: tuple[str, ...] = ()
    window: Duration = timedelta(minutes=5)
    where: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        from obsbench.alerts.signals import SIGNALS

        if value not in SIGNALS:
            msg = f"unknown signal {value!r}; known: {sorted(SIGNALS)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _dataset(self) -> MetricSignal:
        from obsbench.alerts.signals import SIGNALS

        spec = SIGNALS[self.metric]
        if self.dataset is not None and self.dataset != spec.dataset:
            msg = f"signal {self.metric!r} reads dataset {spec.dataset!r}, not {self.dataset!r}"
            raise ValueError(msg)
        return self

    def key(self) -> tuple[object, ...]:
        where = tuple(sorted((k, str(v)) for k, v in self.where.items()))
        params = tuple(sorted((k, repr(v)) for k, v in self.params.items()))
        return ("metric", self.metric, self.by, self.window, where, params)


def _signal_kind(value: Any) -> str:
    if isinstance(value, PromQLSignal) or (isinstance(value, dict) and "promql" in value):
        return "PromQL"
    return "Metric"


Signal = Annotated[
    Annotated[PromQLSignal, Tag("PromQL")] | Annotated[MetricSignal, Tag("Metric")],
    Discriminator(_signal_kind),
]
"""A rule's signal: ``{promql: ...}`` or a named obsbench signal ``{metric: ..., ...}``."""


class Thresholds(_Frozen):
    """Per-severity thresholds; at least one. Unset severities never fire."""

    warning: float | None = None
    critical: float | None = None
    emergency: float | None = None

    @model_validator(mode="after")
    def _some(self) -> Thresholds:
        if all(getattr(self, s) is None for s in SEVERITIES):
            msg = "give at least one of warning, critical, emergency"
            raise ValueError(msg)
        return self

    def items(self) -> list[tuple[Severity, float]]:
        """``(severity, threshold)`` of the set severities, lowest severity first."""
        return [(s, float(v)) for s in SEVERITIES if (v := getattr(self, s)) is not None]


class Rule(_Frozen):
    """One alerting rule (see the module docstring for the file format and severity model).

    ``no_data`` says what an evaluation with no series at all means: ``ok`` (Prometheus: the
    alerts resolve), ``nodata`` (they resolve and the rule shows a ``nodata`` state),
    ``alerting`` (a rule-level alert of ``no_data_severity`` goes pending/firing) or
    ``keep_last`` (every series keeps its last condition). ``on_error`` says the same for a
    failed evaluation (source down): ``error`` (series keep their state, as in Prometheus, and
    the rule shows an ``error`` state), ``alerting``, ``ok`` (series resolve) or
    ``keep_last``. ``detects`` lists the simulator incident kinds the rule is meant to catch
    (for the backtest's detection rate).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
    signal: Signal
    op: Op = ">"
    thresholds: Thresholds
    for_: Duration = Field(default=timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    interval: Duration | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    runbook_url: str | None = None
    no_data: NoDataPolicy = "nodata"
    on_error: ErrorPolicy = "error"
    no_data_severity: Severity = "warning"
    detects: tuple[str, ...] = ()

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"alertname", "severity"} & set(value)
        if reserved:
            msg = f"labels {sorted(reserved)} are set by obsbench"
            raise ValueError(msg)
        return value

    @field_validator("annotations")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            templates.check(text)
        return value

    @field_validator("thresholds")
    @classmethod
    def _ordered(cls, value: Thresholds, info: ValidationInfo) -> Thresholds:
        op = info.data.get("op", ">")
        values = [v for _, v in value.items()]
        if any(math.isnan(v) for v in values):
            msg = "thresholds must be numbers, not NaN"
            raise ValueError(msg)
        if op in (">", ">=") and values != sorted(values):
            msg = f"with op {op!r} thresholds must not decrease from warning to emergency"
            raise ValueError(msg)
        if op in ("<", "<=") and values != sorted(values, reverse=True):
            msg = f"with op {op!r} thresholds must not increase from warning to emergency"
            raise ValueError(msg)
        return value

    @property
    def for_seconds(self) -> float:
        return self.for_.total_seconds()

    @property
    def keep_firing_seconds(self) -> float:
        return self.keep_firing_for.total_seconds()

    def with_(self, **changes: Any) -> Rule:
        """A validated copy with ``changes`` (the original is unchanged)."""
        data = self.model_dump(by_alias=True)
        data.update({("for" if k == "for_" else k): v for k, v in changes.items()})
        return Rule.model_validate(data)


@dataclass(frozen=True)
class RuleFile:
    """The parsed content of a rule file: rules and the evaluation interval."""

    rules: tuple[Rule, ...]
    interval: timedelta
    source: str


def parse_rules(text_or_path: str | Path) -> list[Rule]:
    """Parse a rule file (path, or YAML text) into validated :class:`Rule` objects.

    SLO files listed under ``slos:`` are expanded into burn-rate rules.

    Raises
    ------
    RuleError
        Naming the file, line and field of the first problem, e.g.
        ``rules.yaml:5: rules[0].op: Input should be '>', '>=', ...``.

    Examples
    --------
    >>> rules = parse_rules('''
    ... rules:
    ...   - name: ErrorsHigh
    ...     signal: {metric: error_rate, dataset: requests, by: [service], window: 5m}
    ...     thresholds: {warning: 0.01, critical: 0.05}
    ...     for: 2m
    ... ''')
    >>> rules[0].name, rules[0].for_seconds, rules[0].thresholds.items()
    ('ErrorsHigh', 120.0, [('warning', 0.01), ('critical', 0.05)])
    """
    return list(load_rule_file(text_or_path).rules)


def load_rule_file(text_or_path: str | Path) -> RuleFile:
    """Parse a rule file into a :class:`RuleFile` (rules plus the file's ``interval``)."""
    import yaml

    text, source, base = _read(text_or_path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"invalid YAML: {problem}"
        raise RuleError(msg, source=source, line=line) from None
    lines = dict(_node_lines(node, ())) if node is not None else {}
    if not isinstance(doc, dict) or ("rules" not in doc and "slos" not in doc):
        msg = "a rule file is a mapping with a 'rules' list"
        raise RuleError(msg, source=source, line=1, hint="start the file with `rules:`.")
    unknown = set(doc) - {"rules", "slos", "interval"}
    if unknown:
        key = sorted(unknown)[0]
        msg_0 = "unknown top-level key"
        raise RuleError(
            msg_0,
            source=source,
            line=lines.get((key,)),
            field=key,
            hint="top-level keys are rules, slos and interval.",
        )
    try:
        interval = parse_duration(doc.get("interval", "1m"))
    except ConfigError as exc:
        raise RuleError(
            exc.message, source=source, line=lines.get(("interval",)), field="interval"
        ) from None
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        msg_0 = "must be a list"
        raise RuleError(msg_0, source=source, line=lines.get(("rules",)), field="rules")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        try:
            rules.append(Rule.model_validate(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            path = ("rules", i, *err["loc"])
            known = _known_prefix(path, lines)
            raise RuleError(
                _clean_msg(err["msg"]),
                source=source,
                line=lines.get(known, lines.get(("rules", i))),
                field=_field_name(path),
            ) from None
    for j, slo_ref in enumerate(doc.get("slos") or []):
        slo_path = Path(slo_ref) if Path(slo_ref).is_absolute() else base / slo_ref
        try:
            rules.extend(rules_from_slo(slo_path))
        except (ConfigError, OSError) as exc:
            exc = exc if isinstance(exc, ConfigError) else ConfigError(str(exc))
            raise RuleError(
                exc.message, source=source, line=lines.get(("slos", j)), field=f"slos[{j}]"
            ) from None
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        idx = names.index(dupes[0], names.index(dupes[0]) + 1)
        msg_0 = f"duplicate rule name {dupes[0]!r}"
        raise RuleError(
            msg_0,
            source=source,
            line=lines.get(("rules", idx, "name")),
            field=f"rules[{idx}].name",
            hint="rule names identify alerts; make them unique.",
        )
    return RuleFile(rules=tuple(rules), interval=interval, source=source)


def load_rules(paths: list[str | Path] | str | Path) -> list[Rule]:
    """Parse several rule files, or every ``*.yaml``/``*.yml`` of a folder."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Rule] = []
    for p in paths:
        path = Path(p)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for f in files:
            out.extend(parse_rules(f))
    return out


def rules_from_slo(path_or_slo: object) -> list[Rule]:
    """Burn-rate rules of SLOs, through :func:`obsbench.slo.burn_rate_alerts`.

    ``path_or_slo`` is an SLO YAML file (or folder, see :func:`obsbench.slo.load_slos`) or
    an :class:`obsbench.slo.SLO`. Each multiwindow burn-rate rule becomes a :class:`Rule`
    on the ``burn_rate`` signal: its value is the smaller burn rate of the long and short
    windows, so ``> factor`` holds exactly when both windows burn faster than ``factor``
    (the SRE Workbook's condition). The severity is the burn-rate rule's (page =
    critical, ticket = warning), with no ``for``, as Sloth generates them.
    """
    from obsbench import slo as slo_mod

    slos = slo_mod.load_slos(path_or_slo) if isinstance(path_or_slo, str | Path) else [path_or_slo]
    return [burn_rate_rule(br) for s in slos for br in slo_mod.burn_rate_alerts(s)]


def burn_rate_rule(br: Any) -> Rule:
    """A :class:`Rule` from one :class:`obsbench.slo.BurnRateRule`."""
    from obsbench import slo as slo_mod

    slo = slo_mod.SLO(
        name=br.slo,
        service=br.service,
        sli=br.sli,
        objective=br.objective,
        window=br.long_window,
    )
    annotations = dict(br.annotations)
    runbook = annotations.pop("runbook_url", None)
    return Rule.model_validate(
        {
            "name": br.name,
            "signal": {
                "metric": "burn_rate",
                "dataset": br.sli.dataset,
                "window": br.long_window,
                "params": {"slo": slo.model_dump(mode="json"), "and_window": br.short_window},
            },
            "op": ">",
            "thresholds": {br.severity: br.factor},
            "labels": {k: v for k, v in br.labels.items() if k not in ("severity", "alertname")},
            "annotations": annotations,
            "runbook_url": runbook,
            "no_data": "ok",
        }
    )


def _read(text_or_path: str | Path) -> tuple[str, str, Path]:
    if isinstance(text_or_path, Path) or (
        "\n" not in text_or_path and text_or_path.endswith((".yaml", ".yml"))
    ):
        path = Path(text_or_path)
        try:
            return path.read_text(), str(path), path.parent
        except OSError as exc:
            msg = f"cannot read rule file {path}: {exc.strerror}"
            raise RuleError(msg, source=str(path), hint="check the path.") from None
    return str(text_or_path), "<rules>", Path.cwd()


def _node_lines(node: Any, path: tuple[object, ...]) -> Iterator[tuple[tuple[object, ...], int]]:
    import yaml

    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            yield sub, key.start_mark.line + 1
            for p, line in _node_lines(value, sub):
                if p != sub:
                    yield p, line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _node_lines(item, (*path, i))


def _known_prefix(path: tuple[object, ...], lines: dict[tuple[object, ...], int]) -> tuple:
    # pydantic adds union-member names (e.g. 'MetricSignal') to the location: skip them.
    best: tuple[object, ...] = ()
    cur: tuple[object, ...] = ()
    for part in path:
        key = "for" if part == "for_" else part
        if (*cur, key) in lines:
            cur = (*cur, key)
            best = cur
    return best


def _field_name(path: tuple[object, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part[:1].isupper():  # union member name
            continue
        else:
            out += ("." if out else "") + ("for" if part == "for_" else str(part))
    return out


def _clean_msg(msg: str) -> str:
    return msg.removeprefix("Value error, ").split("\nHint:")[0]
