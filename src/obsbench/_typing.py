"""Type aliases shared by obsbench's public signatures (option sets as ``Literal``)."""

from __future__ import annotations

from typing import Literal, TypeAlias

import polars as pl

IntoExpr: TypeAlias = str | pl.Expr
"""A column name or a polars expression; metric functions accept either."""

VarMethod: TypeAlias = Literal["historical", "gaussian", "cornish_fisher"]
"""How :func:`obsbench.metrics.value_at_risk` estimates the return quantile."""

VAR_METHODS: tuple[VarMethod, ...] = ("historical", "gaussian", "cornish_fisher")
