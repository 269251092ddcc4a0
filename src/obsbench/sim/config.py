"""Configuration of the simulated platform: :class:`SimConfig`, :class:`Incident` and more.

Everything the simulator does is a pure function of a :class:`SimConfig`; two equal configs
give identical frames. Variants are made with :func:`dataclasses.replace` or the ``with_*``
helpers, e.g. ``SimConfig().with_incidents(Incident(...))``.

Examples
--------
>>> from obsbench.sim import SimConfig
>>> cfg = SimConfig.small(days=2)
>>> cfg.days, cfg.strategies[:2], cfg.symbols[:2]
(2, ('momentum-01', 'meanrev-02'), ('AAPL', 'MSFT'))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from obsbench.errors import ConfigError

IncidentKind = Literal[
    "latency_spike", "error_burst", "broker_throttling", "strategy_drawdown", "cost_spike"
]
INCIDENT_KINDS: tuple[str, ...] = get_args(IncidentKind)

#: The order flow: every order's trace visits these services in this order, each span the
#: child of the previous one.
FLOW: tuple[str, ...] = ("market-data", "signal", "risk-check", "order-router", "broker-gateway")
#: Services with background (non-order) traffic only.
EXTRA_SERVICES: tuple[str, ...] = ("portal", "auth", "reporting")

#: Default magnitude per incident kind (its meaning is documented on :class:`Incident`).
DEFAULT_MAGNITUDE: dict[str, float] = {
    "latency_spike": 8.0,
    "error_burst": 60.0,
    "broker_throttling": 6.0,
    "strategy_drawdown": 4.0,
    "cost_spike": 5.0,
}

_TICKERS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "UNH",
    "XOM", "JNJ", "PG", "MA", "HD", "COST", "ABBV", "MRK", "PEP", "KO",
    "AVGO", "ADBE", "CRM", "NFLX", "AMD", "INTC", "CSCO", "ORCL", "QCOM", "TXN",
)  # fmt: skip
_STYLES = ("momentum", "meanrev", "statarb", "trend", "pairs")


@dataclass(frozen=True)
class Incident:
    """An injected incident, active on ``[start, end)``; recorded in the ``incidents`` dataset.

    ``target`` and ``magnitude`` per ``kind``:

    =====================  ==========  ====================================================
    kind                   target      effect of magnitude ``M`` inside the window
    =====================  ==========  ====================================================
    ``latency_spike``      service     the service's own latency x M
    ``error_burst``        service     5xx probability p -> min(0.95, p x M)
    ``broker_throttling``  broker      our request rate to the broker's API x M (retry
                                       storm): windows over the limit answer 429
    ``strategy_drawdown``  strategy    order rate and size x M, and the signal turns
                                       adverse (hit rate (1 - edge) / M): returns fall
    ``cost_spike``         service     hourly infrastructure cost x M
    =====================  ==========  ====================================================
    """

    kind: IncidentKind
    target: str
    start: datetime
    end: datetime
    magnitude: float | None = None
    incident_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            msg = f"unknown incident kind {self.kind!r}"
            raise ConfigError(msg, hint=f"use one of {list(INCIDENT_KINDS)}.")
        object.__setattr__(self, "start", _as_utc(self.start))
        object.__setattr__(self, "end", _as_utc(self.end))
        if self.end <= self.start:
            msg = f"incident {self.kind} on {self.target}: end {self.end} is not after start"
            raise ConfigError(msg, hint="give end > start.")
        if self.magnitude is not None and self.magnitude <= 0:
            msg = f"incident magnitude must be > 0, got {self.magnitude}"
            raise ConfigError(msg, hint="use a multiplier such as 5.0.")

    @property
    def effective_magnitude(self) -> float:
        """The magnitude, or the kind's default from :data:`DEFAULT_MAGNITUDE`."""
        return self.magnitude if self.magnitude is not None else DEFAULT_MAGNITUDE[self.kind]


@dataclass(frozen=True)
class ExecutionModel:
    r"""Parameters of the execution (slippage and fee) model, recorded for verification.

    A fill of ``q`` shares of an order with side ``s`` (+1 buy, -1 sell), arrival mid
    ``m_a`` and latency ``l`` (fill ts - order ts, in ms) is priced at

    .. math::

        px = m_a \left(1 + s \cdot \frac{h + Y \sigma_d \sqrt{q / V} + \kappa \sqrt{l}
             + \varepsilon}{10^4}\right), \qquad \varepsilon \sim N(0, \sigma_\varepsilon^2)

    with ``h`` the half spread of the arrival quote in bps, ``sigma_d`` the symbol's daily
    volatility in bps and ``V`` its daily volume (shares). The fee is
    ``fee_bps * q * px / 1e4``. Limit orders only take fills whose slippage does not exceed
    their limit offset, so measure slippage on market orders (``limit_px`` null).

    Attributes
    ----------
    impact_y
        ``Y``, the square-root impact coefficient.
    latency_kappa
        ``kappa``, adverse drift in bps per sqrt(ms) of latency.
    noise_bps
        ``sigma_epsilon``, the per-fill price noise in bps.
    fee_bps
        Fee in bps of the fill notional.
    limit_share
        Fraction of (non close-out) orders sent as limit orders.
    limit_offset_bps
        Range of the limit offset from the arrival mid, in bps (uniform).
    max_fills
        Maximum number of fills per order (geometric with mean ~1.7 below this cap).
    fill_gap_s
        Mean gap between successive fills of one order, in seconds (exponential).
    """

    impact_y: float = 0.8
    latency_kappa: float = 0.05
    noise_bps: float = 0.5
    fee_bps: float = 0.3
    limit_share: float = 0.3
    limit_offset_bps: tuple[float, float] = (2.0, 10.0)
    max_fills: int = 5
    fill_gap_s: float = 2.0


@dataclass(frozen=True)
class SimConfig:
    """The simulated platform.

    Defaults give the demo volumes (per day: ~8,000 orders, ~470,000 quotes, ~550,000
    requests; ``days=30`` gives > 10 million request rows). See ``docs/simulator.md``.

    Attributes
    ----------
    seed
        Root of every random stream (``SeedSequence([seed, day, stream])``).
    start
        First simulated UTC day.
    days
        Number of simulated days (every day is a trading day).
    n_strategies, n_symbols
        Sizes of the strategy and symbol universes (names are derived, see
        :attr:`strategies`, :attr:`symbols`).
    venues, brokers
        Execution venues and brokers (brokers are also the ``api_usage`` providers).
    services
        Services; must contain the five :data:`FLOW` services.
    session_open, session_close
        Trading session in UTC (default 13:30-20:00, the US equity session).
    quote_interval_s
        One quote per symbol every this many seconds during the session.
    orders_per_strategy_day
        Mean orders per strategy per day (Poisson), U-shaped over the session.
    alpha_horizon_s
        Horizon of the strategies' signal: a strategy with edge ``p`` buys when the mid
        ``alpha_horizon_s`` later is higher with probability ``p``.
    edge_range
        Range of the per-strategy hit rate ``p`` (uniform).
    order_size
        Median order size in shares (log-normal, sigma 0.6, rounded, >= 1).
    background_rps
        Mean rate of web traffic (portal, auth, reporting), diurnal, all day.
    broker_poll_rps, status_poll_rps
        Per broker, market-data quote polling and broker-gateway order-status polling rates
        during the session.
    health_interval_s
        Every service is health-checked this often, all day.
    broker_quote_limit, broker_order_limit, broker_window_s
        Broker API limits: requests per window on the ``quotes`` and ``orders`` endpoints.
    capital
        Capital of each strategy; returns are P&L / capital.
    return_bar_s
        Bar length of the intraday returns.
    incidents
        Explicit incidents (ground truth).
    incident_rate
        Mean number of random incidents per day (Poisson; 0 disables them).
    execution
        The slippage/fee model (:class:`ExecutionModel`).
    """

    seed: int = 42
    start: date = date(2024, 1, 1)
    days: int = 30
    n_strategies: int = 20
    n_symbols: int = 20
    venues: tuple[str, ...] = ("XNAS", "XNYS", "BATS", "IEXG")
    brokers: tuple[str, ...] = ("ibkr", "alpaca", "tradier")
    services: tuple[str, ...] = FLOW + EXTRA_SERVICES
    session_open: time = time(13, 30)
    session_close: time = time(20, 0)
    quote_interval_s: int = 1
    orders_per_strategy_day: float = 400.0
    alpha_horizon_s: int = 300
    edge_range: tuple[float, float] = (0.53, 0.62)
    order_size: float = 800.0
    background_rps: float = 1.0
    broker_poll_rps: float = 4.0
    status_poll_rps: float = 1.0
    health_interval_s: int = 10
    broker_quote_limit: int = 10
    broker_order_limit: int = 5
    broker_window_s: int = 1
    capital: float = 10_000_000.0
    return_bar_s: int = 60
    incidents: tuple[Incident, ...] = ()
    incident_rate: float = 0.5
    execution: ExecutionModel = field(default_factory=ExecutionModel)

    def __post_init__(self) -> None:
        object.__setattr__(self, "incidents", tuple(self.incidents))
        problems = []
        if self.days < 1:
            problems.append(f"days must be >= 1, got {self.days}")
        if self.n_strategies < 1 or self.n_symbols < 1:
            problems.append("n_strategies and n_symbols must be >= 1")
        if not self.venues or not self.brokers:
            problems.append("venues and brokers must not be empty")
        missing = [s for s in FLOW if s not in self.services]
        if missing:
            problems.append(f"services lack the order-flow service(s) {missing}")
        if len(set(self.services)) != len(self.services):
            problems.append("services must be unique")
        if self.session_close <= self.session_open:
            problems.append("session_close must be after session_open")
        session_s = self.session_seconds
        if session_s % self.quote_interval_s or session_s % self.return_bar_s:
            problems.append(
                "the session length must be a multiple of quote_interval_s and return_bar_s"
            )
        if self.return_bar_s % self.quote_interval_s:
            problems.append("return_bar_s must be a multiple of quote_interval_s")
        if session_s < 30 * 60:
            problems.append("the session must last at least 30 minutes")
        if 86_400 % self.health_interval_s or 86_400 % self.broker_window_s:
            problems.append("health_interval_s and broker_window_s must divide a day")
        if min(self.broker_quote_limit, self.broker_order_limit) < 1:
            problems.append("broker limits must be >= 1")
        if self.capital <= 0:
            problems.append("capital must be > 0")
        rates = (
            self.orders_per_strategy_day,
            self.background_rps,
            self.broker_poll_rps,
            self.status_poll_rps,
            self.incident_rate,
        )
        if min(rates) < 0:
            problems.append("rates must be >= 0")
        if not 0 < self.edge_range[0] <= self.edge_range[1] < 1:
            problems.append("edge_range must satisfy 0 < low <= high < 1")
        populations = {
            "service": set(self.services),
            "broker": set(self.brokers),
            "strategy": set(self.strategies),
        }
        for inc in self.incidents:
            kind = _TARGET_KIND[inc.kind]
            if inc.target not in populations[kind]:
                problems.append(f"incident {inc.kind} targets unknown {kind} {inc.target!r}")
        if problems:
            msg = "invalid SimConfig: " + "; ".join(problems)
            raise ConfigError(msg, hint="see obsbench.sim.SimConfig for each field's meaning.")

    # ----------------------------------------------------------------- derived names
    @property
    def strategies(self) -> tuple[str, ...]:
        """Strategy names ``<style>-<nn>``."""
        return tuple(f"{_STYLES[i % len(_STYLES)]}-{i + 1:02d}" for i in range(self.n_strategies))

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbol names: real tickers first, then ``SYM031``..."""
        return tuple(
            _TICKERS[i] if i < len(_TICKERS) else f"SYM{i + 1:03d}" for i in range(self.n_symbols)
        )

    @property
    def session_seconds(self) -> int:
        """Length of the trading session in seconds."""
        return _seconds(self.session_close) - _seconds(self.session_open)

    @property
    def end(self) -> datetime:
        """End (exclusive) of the simulated history, midnight UTC after the last day."""
        return self.day_start(self.days)

    def day_start(self, day: int) -> datetime:
        """Midnight UTC of day index ``day`` (0 = :attr:`start`)."""
        return datetime.combine(self.start + timedelta(days=day), time(0), tzinfo=UTC)

    # ----------------------------------------------------------------- variants
    def with_incidents(self, *incidents: Incident, random_rate: float | None = None) -> SimConfig:
        """A copy with ``incidents`` added (and the random rate changed if given)."""
        rate = self.incident_rate if random_rate is None else random_rate
        return dataclasses.replace(
            self, incidents=self.incidents + tuple(incidents), incident_rate=rate
        )

    def with_seed(self, seed: int) -> SimConfig:
        """A copy with another seed."""
        return dataclasses.replace(self, seed=seed)

    def with_days(self, days: int, start: date | None = None) -> SimConfig:
        """A copy covering ``days`` days (from ``start`` if given)."""
        return dataclasses.replace(self, days=days, start=start or self.start)

    @classmethod
    def small(cls, **overrides: Any) -> SimConfig:
        """A small platform for tests and examples (~1/20 of the default volumes).

        3 strategies, 4 symbols, 2 brokers, 1 day, a 1-hour session, no random incidents.
        """
        base: dict[str, Any] = {
            "days": 1,
            "n_strategies": 3,
            "n_symbols": 4,
            "brokers": ("ibkr", "alpaca"),
            "session_open": time(14, 0),
            "session_close": time(15, 0),
            "orders_per_strategy_day": 120.0,
            "background_rps": 0.05,
            "broker_poll_rps": 2.0,
            "status_poll_rps": 0.5,
            "health_interval_s": 60,
            "incident_rate": 0.0,
        }
        base.update(overrides)
        return cls(**base)


_TARGET_KIND = {
    "latency_spike": "service",
    "error_burst": "service",
    "broker_throttling": "broker",
    "strategy_drawdown": "strategy",
    "cost_spike": "service",
}


def target_population(config: SimConfig, kind: str) -> tuple[str, ...]:
    """The names an incident of ``kind`` may target in ``config``."""
    return {
        "service": config.services,
        "broker": config.brokers,
        "strategy": config.strategies,
    }[_TARGET_KIND[kind]]


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
