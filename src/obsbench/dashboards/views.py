"""Page data: canonical frames in, the frames each dashboard page shows out.

Pure functions, no Panel: every figure is computed by :mod:`obsbench.metrics` or
:mod:`obsbench.slo`; this module only selects the input window, calls them, and reshapes
the results for display (sorting, pivoting, renaming). The live model
(:mod:`obsbench.dashboards.live`) calls :func:`history_views` when the history changes
(start, day roll-over, every ``slow_period``) and :func:`live_views` every tick.

Each function returns a plain ``dict`` of named results so a page can pick what it needs
and a failing part can be reported without losing the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from obsbench import metrics, schemas
from obsbench.metrics import pnl, quotas, risk
from obsbench.metrics.anomaly import error_rate_anomalies

__all__ = [
    "DEFAULT_SLOS",
    "LIVE_GROUPS",
    "HistoryFrames",
    "LiveFrames",
    "activity_views",
    "execution_views",
    "history_views",
    "live_views",
    "pnl_views",
    "quota_views",
    "risk_views",
    "service_level_views",
    "service_views",
]

#: The SLOs the operations page reports when no SLO file is configured.
DEFAULT_SLOS = Path(__file__).with_name("slos.yaml")
#: Quantiles shown for latency.
QUANTILES = (0.5, 0.95, 0.99)
#: Span of the broker quota view.
QUOTA_WINDOW = timedelta(minutes=5)
_EMPTY = pl.DataFrame()


@dataclass
class HistoryFrames:
    """Slowly changing inputs: everything before the current (simulated) day.

    Attributes
    ----------
    returns
        Canonical daily ``returns`` of every strategy.
    attribution
        :func:`obsbench.metrics.pnl.pnl_attribution` of the days before ``today``.
    today
        The current day (UTC) of the data, i.e. the day of the newest quote.
    """

    returns: pl.DataFrame = field(default_factory=lambda: schemas.empty("returns"))
    attribution: pl.DataFrame = field(default_factory=pl.DataFrame)
    today: date | None = None

    def opening_positions(self) -> pl.DataFrame | None:
        """``strategy, symbol, qty, px``: each pair's position and mark at the last close."""
        att = self.attribution
        if att.is_empty():
            return None
        return (
            att.sort("date")
            .group_by("strategy", "symbol")
            .agg(pl.col("position").last().alias("qty"), pl.col("close").last().alias("px"))
            .filter(pl.col("qty") != 0)
            .sort("strategy", "symbol")
        )


@dataclass
class LiveFrames:
    """Fast-changing inputs held in memory by the live model.

    ``orders``/``fills`` hold the current day, ``quotes`` the current day reduced to a
    rolling window plus each symbol's last quote of earlier times (enough for close marks
    and as-of mids), ``requests``/``api_usage`` a rolling window.
    """

    orders: pl.DataFrame = field(default_factory=lambda: schemas.empty("orders"))
    fills: pl.DataFrame = field(default_factory=lambda: schemas.empty("fills"))
    quotes: pl.DataFrame = field(default_factory=lambda: schemas.empty("quotes"))
    requests: pl.DataFrame = field(default_factory=lambda: schemas.empty("requests"))
    api_usage: pl.DataFrame = field(default_factory=lambda: schemas.empty("api_usage"))
    now: datetime | None = None
    window: timedelta = timedelta(minutes=15)


def _today_of(quotes: pl.DataFrame, fallback: date | None) -> date | None:
    if quotes.is_empty():
        return fallback
    return quotes["ts"].max().date()  # type: ignore[union-attr]


def history_views(hist: HistoryFrames) -> dict[str, Any]:
    """Views over the daily history: strategy summary, correlation, drawdown, P&L by day.

    Returns
    -------
    dict
        ``strategy_summary`` (:func:`obsbench.metrics.strategy_summary`; also as
        ``top_strategies``, the five best Sharpe ratios, and ``var_by_strategy``, sorted by
        VaR, worst first), ``correlation``
        (long: ``strategy``, ``other``, ``corr`` from
        :func:`obsbench.metrics.correlation_matrix`), ``drawdown`` (``strategy``, ``ts``,
        ``drawdown``) and ``daily_pnl`` (:func:`obsbench.metrics.pnl.cumulative_pnl` of the
        whole book).
    """
    out: dict[str, Any] = {}
    rets = hist.returns
    if rets.is_empty():
        for key in ("strategy_summary", "top_strategies", "var_by_strategy"):
            out[key] = _EMPTY
        out["correlation"] = _EMPTY
        out["drawdown"] = _EMPTY
    else:
        summary = metrics.strategy_summary(rets)
        out["strategy_summary"] = summary
        by_sharpe = summary.sort("sharpe_ratio", descending=True, nulls_last=True)
        out["top_strategies"] = by_sharpe.head(5)
        out["var_by_strategy"] = summary.sort("value_at_risk", nulls_last=True)
        wide = metrics.correlation_matrix(rets)
        out["correlation"] = wide.unpivot(
            index="strategy", variable_name="other", value_name="corr"
        )
        out["drawdown"] = (
            rets.sort("strategy", "ts")
            .with_columns(metrics.drawdown("ret").over("strategy"))
            .select("strategy", "ts", "drawdown")
        )
    out["daily_pnl"] = (
        pnl.cumulative_pnl(hist.attribution, by=()) if not hist.attribution.is_empty() else _EMPTY
    )
    return out


def _today_attribution(live: LiveFrames, hist: HistoryFrames) -> pl.DataFrame:
    if live.fills.is_empty() and hist.opening_positions() is None:
        return _EMPTY
    return pnl.pnl_attribution(
        live.orders,
        live.fills,
        live.quotes,
        initial_positions=hist.opening_positions(),
    )


def _positions(live: LiveFrames, hist: HistoryFrames) -> tuple[pl.DataFrame, pl.DataFrame]:
    opening = hist.opening_positions()
    pos = risk.positions(
        live.orders,
        live.fills,
        initial_positions=None if opening is None else opening.select("strategy", "symbol", "qty"),
    )
    prices = risk.latest_marks(live.quotes)
    return pos, prices


def _window(frame: pl.DataFrame, now: datetime | None, span: timedelta) -> pl.DataFrame:
    if now is None or frame.is_empty():
        return frame
    return frame.filter(pl.col("ts") > now - span)


def pnl_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """Today's mark-to-market P&L by strategy and symbol, and the book's today/MTD/YTD.

    ``pnl_by_strategy``/``pnl_by_symbol`` are :func:`~obsbench.metrics.pnl.cumulative_pnl`
    of :func:`~obsbench.metrics.pnl.pnl_attribution` (opening positions carried from the
    history at the last close); ``pnl_book`` holds ``today``, ``mtd``, ``ytd`` (floats)
    and ``trend`` (daily and cumulative P&L of the book).
    """
    today = _today_of(live.quotes, hist.today)
    att_today = _today_attribution(live, hist)
    if not att_today.is_empty() and today is not None:
        att_today = att_today.filter(pl.col("date") == today)
    by_strategy = _pnl_by(att_today, "strategy")
    return {
        "today": today,
        "pnl_by_strategy": by_strategy,
        "top_today": by_strategy.head(5),
        "pnl_by_symbol": _pnl_by(att_today, "symbol"),
        "pnl_book": _book_pnl(hist.attribution, att_today, today),
    }


def activity_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """The day's trading activity: :func:`~obsbench.metrics.fill_rates` of the whole book."""
    return {"activity": metrics.fill_rates(live.orders, live.fills, by=())}


def execution_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """Execution quality and order flow over the rolling window.

    ``execution`` is :func:`~obsbench.metrics.execution_summary` by strategy of the orders
    sent in the window (slippage, fill rate, decision-to-fill latency percentiles);
    ``order_flow`` counts those orders per minute and side.
    """
    win_orders = _window(live.orders, live.now, live.window)
    win_fills = live.fills.join(win_orders.select("order_id"), on="order_id", how="semi")
    return {
        "execution": (
            metrics.execution_summary(win_orders, win_fills, live.quotes, by=("strategy",))
            if win_orders.height
            else _EMPTY
        ),
        "order_flow": (
            win_orders.group_by(pl.col("ts").dt.truncate("1m"), "side")
            .agg(pl.len().alias("orders"))
            .sort("ts", "side")
        ),
    }


_RISK_KEYS = (
    "positions",
    "exposure_strategy",
    "exposure_symbol",
    "exposure_sector",
    "exposure_heat",
    "limits",
    "stress",
    "stress_by_strategy",
)


def risk_views(
    live: LiveFrames, hist: HistoryFrames, *, limits: Path | str | None = None
) -> dict[str, Any]:
    """Positions, exposure (strategy, symbol, sector, strategy x sector), limits, stress.

    From :mod:`obsbench.metrics.risk`: :func:`~obsbench.metrics.risk.positions` (opening
    positions plus the day's fills), :func:`~obsbench.metrics.risk.latest_marks`,
    :func:`~obsbench.metrics.risk.exposure`,
    :func:`~obsbench.metrics.risk.limit_utilisation` (``limits``: a YAML file, default the
    example limits shipped in ``obsbench/data``) and
    :func:`~obsbench.metrics.risk.stress_test` (the shipped scenarios).
    """
    pos, prices = _positions(live, hist)
    if not prices.height:  # no marks yet; without positions (a day's start) the stress
        return dict.fromkeys(_RISK_KEYS, _EMPTY)  # scenarios and limits still show, at 0
    pos = pos.join(prices.select("symbol"), on="symbol", how="semi")
    sectors = _reference("sectors", None)
    scenarios = _reference("scenarios", None)
    return {
        "positions": pos,
        "exposure_strategy": risk.exposure(pos, prices, by=("strategy",)),
        "exposure_symbol": risk.exposure(pos, prices, by=("symbol",)),
        "exposure_sector": risk.exposure(pos, prices, by=("sector",), sectors=sectors),
        "exposure_heat": risk.exposure(pos, prices, by=("strategy", "sector"), sectors=sectors),
        "limits": risk.limit_utilisation(
            pos, prices, _reference("limits", str(limits or _default_limits())), sectors=sectors
        ),
        "stress": risk.stress_test(pos, prices, scenarios, by=(), sectors=sectors),
        "stress_by_strategy": risk.stress_test(
            pos, prices, scenarios, by=("strategy",), sectors=sectors
        ),
    }


def service_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """Service health over the rolling window of requests.

    ``services`` (:func:`~obsbench.metrics.service_summary`), ``service_buckets`` (per
    minute, :func:`~obsbench.metrics.service_buckets`), ``error_anomalies``
    (:func:`~obsbench.metrics.anomaly.error_rate_anomalies`, robust score over the window),
    ``error_matrix`` (the last 15 minutes of buckets, labelled ``minute``)
    and ``md_latency`` (market-data latency percentiles per minute,
    :func:`~obsbench.metrics.latency_percentiles`).
    """
    req = live.requests
    if not req.height:
        return dict.fromkeys(
            ("services", "service_buckets", "error_matrix", "error_anomalies", "md_latency"),
            _EMPTY,
        )
    md = req.filter(pl.col("service") == "market-data")
    buckets = metrics.service_buckets(req, every="1m", qs=QUANTILES)
    return {
        "services": metrics.service_summary(req, qs=QUANTILES),
        "service_buckets": buckets,
        "error_matrix": buckets.filter(
            pl.col("ts") >= pl.col("ts").max() - pl.duration(minutes=14)
        ).with_columns(minute=pl.col("ts").dt.strftime("%H:%M")),
        "error_anomalies": error_rate_anomalies(
            req, every="1m", min_requests=10, seasonal=False, window=30
        ),
        "md_latency": (
            metrics.latency_percentiles(md, every="1m", qs=QUANTILES) if md.height else _EMPTY
        ),
    }


def quota_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """Broker API quota use over the last five minutes.

    ``quotas``: :func:`~obsbench.metrics.quotas.quota_summary` per provider and endpoint.
    """
    usage = _window(live.api_usage, live.now, QUOTA_WINDOW)
    return {"quotas": quotas.quota_summary(usage, lookback=30) if usage.height else _EMPTY}


#: View groups computed by the live model: name -> function. Pages declare the groups they
#: read, and the model computes a group only while some open page needs it.
LIVE_GROUPS = {
    "pnl": pnl_views,
    "activity": activity_views,
    "execution": execution_views,
    "risk": risk_views,
    "services": service_views,
    "quotas": quota_views,
}


def live_views(live: LiveFrames, hist: HistoryFrames) -> dict[str, Any]:
    """Every live view group at once (notebooks, tests): the union of :data:`LIVE_GROUPS`."""
    out: dict[str, Any] = {"now": live.now}
    for fn in LIVE_GROUPS.values():
        out.update(fn(live, hist))
    return out


def _pnl_by(att: pl.DataFrame, key: str) -> pl.DataFrame:
    if att.is_empty():
        return _EMPTY
    return pnl.cumulative_pnl(att, by=(key,)).sort("total_pnl", descending=True)


def _book_pnl(history: pl.DataFrame, today_att: pl.DataFrame, today: date | None) -> dict:
    frames = [f for f in (history, today_att) if not f.is_empty()]
    if not frames or today is None:
        return {"today": None, "mtd": None, "ytd": None, "trend": _EMPTY}
    cols = ["strategy", "symbol", "date", "position_pnl", "trading_pnl", "fee_pnl", "total_pnl"]
    book = pnl.cumulative_pnl(pl.concat([f.select(cols) for f in frames]), by=())
    month = today.replace(day=1)
    year = today.replace(month=1, day=1)
    totals = book.select(
        pl.col("total_pnl").filter(pl.col("date") == today).sum().alias("today"),
        pl.col("total_pnl").filter(pl.col("date") >= month).sum().alias("mtd"),
        pl.col("total_pnl").filter(pl.col("date") >= year).sum().alias("ytd"),
    ).row(0, named=True)
    return {**totals, "trend": book.select("date", "total_pnl", "cumulative_pnl")}


@functools.lru_cache(maxsize=16)
def _reference(kind: str, source: str | None) -> pl.DataFrame:
    """Sectors, limits or scenarios, read once per process (they are small YAML files)."""
    loader = {
        "sectors": risk.load_sectors,
        "limits": risk.load_limits,
        "scenarios": risk.load_scenarios,
    }[kind]
    return loader(source)


def _default_limits() -> Path:
    return Path(risk.__file__).parents[1] / "data" / "limits.example.yaml"


def service_level_views(
    requests: pl.LazyFrame, *, slos: Path | str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """Service levels over the stored requests: SLA scores of the day, error budgets.

    Parameters
    ----------
    requests
        A lazy scan of the canonical ``requests`` (the SLO windows decide how far back).
    slos
        SLO YAML (:func:`obsbench.slo.load_slos`); default :data:`DEFAULT_SLOS`.
    at
        End of the SLO windows (default: the newest request).

    Returns
    -------
    dict
        ``sla_today`` (:func:`~obsbench.metrics.service_summary` of the current day) and
        ``budgets`` (one row per SLO: objective, attainment, remaining budget fraction,
        burn rate over the SLO window and over the last hour, from
        :func:`obsbench.slo.error_budget` and :func:`obsbench.slo.burn_rate_over`).
    """
    from obsbench import slo as slo_mod

    at = at or requests.select(pl.col("ts").max()).collect().item()
    if at is None:
        return {"sla_today": _EMPTY, "budgets": _EMPTY}
    day0 = datetime.combine(at.date(), datetime.min.time(), tzinfo=UTC)
    today = requests.filter(pl.col("ts") >= day0)
    sla_today = metrics.service_summary(today, qs=QUANTILES).collect()
    rows = []
    for s in slo_mod.load_slos(slos or DEFAULT_SLOS):
        window_start = at - s.window_timedelta
        frame = (
            requests.filter(pl.col("service") == s.service, pl.col("ts") > window_start)
            .select("ts", "service", "endpoint", "latency_ms", "status_code", "ok")
            .collect()
        )
        budget = slo_mod.error_budget(s, frame, at=at)
        rows.append(
            {
                "slo": s.name,
                "service": s.service,
                "objective": s.objective,
                "window": s.window,
                "attainment": budget.attainment,
                "budget_remaining": budget.remaining_fraction,
                "burn_rate": budget.burn_rate,
                "burn_rate_1h": slo_mod.burn_rate_over(s, frame, window="1h", at=at),
                "burn_rate_5m": slo_mod.burn_rate_over(s, frame, window="5m", at=at),
            }
        )
    return {"sla_today": sla_today, "budgets": pl.DataFrame(rows)}
