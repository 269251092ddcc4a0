"""Alerting: rules, the Prometheus-compatible state machine, evaluator, notifications, backtests.

>>> import obsbench as ob
>>> ob.alerts.parse_duration("5m").total_seconds()
300.0

Public API (heavy parts, database and network, load on first use):

- :func:`parse_rules`, :func:`load_rules`, :class:`Rule` (:mod:`~obsbench.alerts.rules`)
- :func:`replay`, :func:`advance` (:mod:`~obsbench.alerts.state`)
- :func:`evaluate_signal`, :data:`SIGNALS` (:mod:`~obsbench.alerts.signals`)
- :class:`Evaluator` (:mod:`~obsbench.alerts.evaluator`)
- :class:`NotifyConfig`, :class:`Notifier` (:mod:`~obsbench.alerts.notify`)
- :func:`backtest` (:mod:`~obsbench.alerts.backtest`)
- :data:`bus` (:mod:`~obsbench.alerts.bus`); channels register in
  :mod:`~obsbench.alerts.channels`
"""

from __future__ import annotations

import importlib
from typing import Any

from obsbench.alerts.durations import format_duration, parse_duration
from obsbench.alerts.rules import Rule, RuleError, load_rule_file, load_rules, parse_rules
from obsbench.alerts.state import advance, current_severity, replay

_LAZY = {
    "SIGNALS": "obsbench.alerts.signals",
    "evaluate_signal": "obsbench.alerts.signals",
    "signal_history": "obsbench.alerts.signals",
    "Evaluator": "obsbench.alerts.evaluator",
    "NotifyConfig": "obsbench.alerts.notify",
    "Notifier": "obsbench.alerts.notify",
    "backtest": "obsbench.alerts.backtest",
    "AlertBus": "obsbench.alerts.bus",
    "bus": "obsbench.alerts.bus",
}
_MODULES = {"signals", "evaluator", "notify", "channels", "outbox", "bus", "backtest", "db"}

__all__ = [
    "SIGNALS",
    "AlertBus",
    "Evaluator",
    "Notifier",
    "NotifyConfig",
    "Rule",
    "RuleError",
    "advance",
    "backtest",
    "bus",
    "current_severity",
    "evaluate_signal",
    "format_duration",
    "load_rule_file",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "replay",
    "signal_history",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"obsbench.alerts.{name}")
    msg = f"module 'obsbench.alerts' has no attribute {name!r}"
    raise AttributeError(msg)
