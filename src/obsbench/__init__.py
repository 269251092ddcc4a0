"""obsbench: observability workbench for an algorithmic-trading platform.

>>> import obsbench as ob
>>> ob.schemas.DATASETS[:2]
('returns', 'returns_intraday')

Submodules load on first use, so ``import obsbench`` stays cheap (no Panel, papermill,
weasyprint or SQLAlchemy until they are needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from obsbench.errors import (
    ColumnNotFound,
    ConfigError,
    ObsbenchError,
    SchemaError,
    SourceUnavailable,
    StoreError,
    UnknownName,
)

if TYPE_CHECKING:
    from obsbench import alerts, audit, config, log, metrics, reports, schemas, sim, store

__version__ = "0.1.0"

_SUBMODULES = frozenset(
    {"alerts", "audit", "config", "log", "metrics", "reports", "schemas", "sim", "store"}
)

__all__ = [
    "ColumnNotFound",
    "ConfigError",
    "ObsbenchError",
    "SchemaError",
    "SourceUnavailable",
    "StoreError",
    "UnknownName",
    "__version__",
    "alerts",
    "audit",
    "config",
    "log",
    "metrics",
    "reports",
    "schemas",
    "sim",
    "store",
]


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f"obsbench.{name}")
    msg = f"module 'obsbench' has no attribute {name!r}"
    raise AttributeError(msg)
