"""Live Panel dashboards: the shared live model, login and roles, the server and its endpoints.

The library side of ``apps/``. Nothing here imports Panel at module level except
:mod:`obsbench.dashboards.session` and :mod:`obsbench.dashboards.serve`, so the models
(:mod:`~obsbench.dashboards.live`, :mod:`~obsbench.dashboards.views`,
:mod:`~obsbench.dashboards.auth`) are testable without a browser or a server.

- :mod:`~obsbench.dashboards.views`: pure functions, canonical frames -> page data, every
  number computed by :mod:`obsbench.metrics` / :mod:`obsbench.slo`.
- :mod:`~obsbench.dashboards.live`: :class:`~obsbench.dashboards.live.LiveModel`, one per
  server process: tails the store every tick, computes the page data once and pushes it to
  every open session; tracks staleness per source.
- :mod:`~obsbench.dashboards.alerts_feed`: alerts from the evaluator to every session.
- :mod:`~obsbench.dashboards.auth`: users file (scrypt hashes), roles -> pages.
- :mod:`~obsbench.dashboards.serve`: the ``pn.serve`` invocation, ``/health`` and ``/metrics``.
- :mod:`~obsbench.dashboards.memory`: the server process's memory (resident size, native
  heaps, returning free pages, bounding polars' I/O threads).
"""

from __future__ import annotations
