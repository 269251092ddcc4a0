r"""FOCUS-shaped infrastructure costs: one row per resource and hour, tagged by team and service.

Every service runs compute nodes (``Amazon Elastic Compute Cloud``) and, depending on the
service, a database (``Amazon Relational Database Service``) and object storage
(``Amazon Simple Storage Service``); see :func:`resources`. The hourly cost of a resource is

.. math::

    BilledCost = rate \times \ell \times e^{0.05 z - 0.00125} \times (1 + (M - 1) f)

with ``ell = 0.6 + 0.4 x load`` for compute (``load`` = the service's requests in that hour
over its mean hourly requests of the day) and ``ell = 1`` otherwise, ``M`` the magnitude of
a cost spike on the service and ``f`` the fraction of the hour it overlaps.
``EffectiveCost = BilledCost x (1 - discount)`` (compute: a 28 % savings plan).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from obsbench.sim.common import US, DayClock, Stream, canonical, names, rng, timestamps
from obsbench.sim.config import SimConfig
from obsbench.sim.incidents import Effects

PROVIDER = "AWS"
COMPUTE = ("Amazon Elastic Compute Cloud", "i", 0.34, 0.28)
DATABASE = ("Amazon Relational Database Service", "db", 0.95, 0.0)
STORAGE = ("Amazon Simple Storage Service", "s3", 0.12, 0.0)

TEAMS = {
    "market-data": "market-data",
    "signal": "quant",
    "risk-check": "risk",
    "order-router": "execution",
    "broker-gateway": "execution",
    "portal": "platform",
    "auth": "platform",
    "reporting": "data",
}
DEFAULT_TEAM = "platform"
NODES = {"market-data": 4, "signal": 6, "risk-check": 3, "order-router": 2,
         "broker-gateway": 3, "portal": 2, "auth": 2, "reporting": 2}  # fmt: skip
DATABASES = {"risk-check", "order-router", "auth", "reporting"}
STORAGES = {"market-data", "signal", "reporting"}


def team_of(service: str) -> str:
    """The team owning ``service``."""
    return TEAMS.get(service, DEFAULT_TEAM)


def resources(config: SimConfig) -> pl.DataFrame:
    """The resources: service, ResourceId, ServiceName, hourly rate, discount, compute flag."""
    rows = []
    for svc in config.services:
        rows.extend(
            (svc, f"i-{svc}-{k + 1:02d}", COMPUTE[0], COMPUTE[2], COMPUTE[3], True)
            for k in range(NODES.get(svc, 2))
        )
        if svc in DATABASES:
            rows.append((svc, f"db-{svc}", DATABASE[0], DATABASE[2], DATABASE[3], False))
        if svc in STORAGES:
            rows.append((svc, f"s3-{svc}", STORAGE[0], STORAGE[2], STORAGE[3], False))
    return pl.DataFrame(
        rows,
        schema=["service", "ResourceId", "ServiceName", "rate", "discount", "compute"],
        orient="row",
    )


def simulate_costs(
    config: SimConfig,
    clock: DayClock,
    effects: Effects,
    request_service: np.ndarray,
    request_ts: np.ndarray,
) -> pl.DataFrame:
    """The day's hourly ``costs`` rows (see module docstring)."""
    gen = rng(config.seed, Stream.COSTS, clock.day)
    res = resources(config)
    n_svc, n_res = len(config.services), res.height
    hour = np.clip((request_ts - clock.day0) // (3600 * US), 0, 23)
    counts = np.bincount(request_service * 24 + hour, minlength=n_svc * 24).reshape(n_svc, 24)
    mean = counts.mean(axis=1, keepdims=True)
    load = np.where(mean > 0, counts / np.where(mean > 0, mean, 1.0), 1.0)
    svc_idx = np.array([config.services.index(s) for s in res["service"]])
    r_idx = np.repeat(np.arange(n_res), 24)
    h_idx = np.tile(np.arange(24), n_res)
    starts = clock.day0 + h_idx.astype(np.int64) * 3600 * US
    compute = res["compute"].to_numpy()[r_idx]
    level = np.where(compute, 0.6 + 0.4 * load[svc_idx[r_idx], h_idx], 1.0)
    spike = np.ones(len(r_idx))
    for inc in effects.of_kind("cost_spike"):
        if inc.target not in config.services:
            continue
        overlap = np.clip(
            np.minimum(starts + 3600 * US, inc.end) - np.maximum(starts, inc.start), 0, None
        )
        hit = svc_idx[r_idx] == config.services.index(inc.target)
        spike = np.where(hit, spike * (1.0 + (inc.magnitude - 1.0) * overlap / (3600 * US)), spike)
    noise = np.exp(0.05 * gen.standard_normal(len(r_idx)) - 0.05**2 / 2)
    billed = res["rate"].to_numpy()[r_idx] * level * noise * spike
    service = names(config.services, svc_idx[r_idx])
    frame = pl.DataFrame(
        {
            "ChargePeriodStart": timestamps(starts),
            "ChargePeriodEnd": timestamps(starts + 3600 * US),
            "BilledCost": billed,
            "EffectiveCost": billed * (1.0 - res["discount"].to_numpy()[r_idx]),
            "ServiceName": res["ServiceName"].gather(r_idx),
            "ResourceId": res["ResourceId"].gather(r_idx),
            "ProviderName": pl.repeat(PROVIDER, len(r_idx), eager=True, dtype=pl.String),
            "team": service.replace_strict(TEAMS, default=DEFAULT_TEAM, return_dtype=pl.String),
            "service": service,
        }
    )
    return canonical(
        frame.with_columns(Tags=pl.struct("team", "service")).sort(
            "ChargePeriodStart", maintain_order=True
        ),
        "costs",
    )
