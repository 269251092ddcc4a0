"""Serve every page of ``apps/`` with Panel: login, roles, health and metrics endpoints.

:func:`server_kwargs` builds the ``pn.serve`` arguments (the same options as
``panel serve``: ``--port``, ``--address``, ``--num-procs``, ``--allow-websocket-origin``,
``--admin``, ``--check-unused-sessions 2000 --unused-session-lifetime 3000``, the auth
provider, ``--cookie-secret``), and :func:`serve` starts the server. The per-process
services start on the first session of each process (:mod:`obsbench.dashboards.setup`), so
``--num-procs N`` forks before any thread exists.

:func:`panel_serve_command` gives the equivalent ``panel serve`` command line (with
``--setup``) for deployments that prefer Panel's own launcher.
"""

from __future__ import annotations

import html
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from obsbench.dashboards.setup import Options, configure, runtime

__all__ = ["authorize", "panel_serve_command", "serve", "server_kwargs"]

log = logging.getLogger("obsbench.dashboards.serve")

#: Unused sessions are checked every 2 s and dropped after 3 s (otherwise closed tabs keep
#: receiving pushes for tens of seconds: holoviz/panel#8099, bokeh/bokeh#3770).
CHECK_UNUSED_MS = 2000
UNUSED_LIFETIME_MS = 3000


def authorize(user_info: dict[str, Any] | None, path: str) -> bool:
    """Panel ``authorize_callback``: may this user open ``path``? Logs and audits the answer."""
    from obsbench.dashboards import events
    from obsbench.dashboards.auth import allowed

    rt = runtime()
    user = str((user_info or {}).get("user") or (user_info or {}).get("email") or "anonymous")
    slug = path.strip("/").split("/")[0]
    if slug in ("", "home"):
        return True
    page = next((p for p in rt.pages if p.spec.slug == slug), None)
    if page is None:
        return True  # not a page (static files, admin handled by Panel)
    ok = allowed(rt.roles_of(user), page.spec.roles)
    events.record(user, "access" if ok else "access_denied", f"/{slug}")
    return ok


def _home() -> Any:
    """Landing page: the links to the pages the user may open."""
    import panel as pn

    from obsbench.dashboards.pages import pages_for

    rt = runtime()
    user = pn.state.user or "local"
    mine = pages_for(rt.roles_of(pn.state.user), rt.pages)
    items = "".join(
        f'<li><a href="./{p.spec.slug}">{html.escape(p.spec.title)}</a></li>' for p in mine
    )
    logout = ' · <a href="./logout">log out</a>' if rt.users else ""
    body = (
        f"<h2>obsbench dashboards</h2><p>Signed in as <b>{html.escape(user)}</b>{logout}</p>"
        f'<ul class="obsbench-pages">{items or "<li>No page for your roles.</li>"}</ul>'
    )
    pn.extension()
    return pn.pane.HTML(body, sizing_mode="stretch_width")


def server_kwargs(
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    num_procs: int = 1,
    websocket_origin: list[str] | None = None,
    admin: bool = False,
    users: dict[str, Any] | None = None,
    cookie_secret: str | None = None,
    oauth: dict[str, str] | None = None,
    pages: list[Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``pn.serve`` for the dashboards.

    Parameters
    ----------
    port, address, num_procs
        As ``panel serve``.
    websocket_origin
        Extra allowed origins (``host:port``); the served address and ``localhost`` on
        the port are always allowed.
    admin
        Serve Panel's ``/admin`` page.
    users
        Loaded users file: enables the login form (:mod:`obsbench.dashboards.auth`).
    cookie_secret
        Signs the login cookie (random per start by default; give one with several
        processes behind a load balancer).
    oauth
        ``provider``, ``key``, ``secret``, ``encryption_key`` and optional
        ``redirect_uri``: log in through Panel's OAuth provider instead of the form.
    pages
        Discovered pages (default: :func:`obsbench.dashboards.pages.discover`).
    """
    from obsbench.dashboards.metrics_endpoint import HealthHandler, MetricsHandler

    if pages is None:
        from obsbench.dashboards.pages import discover

        pages = discover()
    apps: dict[str, Any] = {"/": _home}
    apps.update({p.spec.slug: p.create for p in pages})
    origins = {f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"}
    origins |= set(websocket_origin or [])
    kwargs: dict[str, Any] = {
        "panels": apps,
        "port": port,
        "address": address,
        "websocket_origin": sorted(origins),
        "num_procs": num_procs,
        "admin": admin,
        "show": False,
        "start": True,
        "threaded": False,
        "title": {"/": "obsbench", **{p.spec.slug: f"obsbench · {p.spec.title}" for p in pages}},
        "liveness": True,
        "check_unused_sessions_milliseconds": CHECK_UNUSED_MS,
        "unused_session_lifetime_milliseconds": UNUSED_LIFETIME_MS,
        "extra_patterns": [(r"/health", HealthHandler), (r"/metrics", MetricsHandler)],
        "cookie_secret": cookie_secret or secrets.token_urlsafe(32),
    }
    if oauth:
        kwargs.update(
            oauth_provider=oauth["provider"],
            oauth_key=oauth.get("key"),
            oauth_secret=oauth.get("secret"),
            oauth_encryption_key=oauth.get("encryption_key"),
            oauth_redirect_uri=oauth.get("redirect_uri"),
        )
    elif users:
        from obsbench.dashboards.auth import auth_provider

        kwargs["auth_provider"] = auth_provider(users)
    return kwargs


def serve(options: Options, **kwargs: Any) -> None:
    """Serve the dashboards until interrupted (blocks).

    Parameters
    ----------
    options
        Runtime options (store, tick, users file, apps folder...).
    **kwargs
        :func:`server_kwargs` arguments (port, address, num_procs, websocket_origin,
        admin, cookie_secret, oauth).
    """
    import panel as pn

    from obsbench.dashboards import auth, pages

    configure(options)
    users = auth.load_users(options.users) if options.users else None
    found = pages.discover(options.apps)
    if users or kwargs.get("oauth"):
        pn.config.authorize_callback = authorize
    if kwargs.get("oauth", {}) and kwargs["oauth"].get("encryption_key"):
        pn.config.oauth_encryption_key = kwargs["oauth"]["encryption_key"]
    pn.config.reconnect = True
    opts = server_kwargs(users=users, pages=found, **kwargs)
    if opts["num_procs"] == 1:
        runtime()  # start the model now, so the first page opens on computed data
    log.info(
        "serving dashboards",
        extra={"fields": {"address": opts["address"], "port": opts["port"]}},
    )
    pn.serve(**opts)


def panel_serve_command(
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    num_procs: int = 1,
    apps: Path | None = None,
) -> list[str]:
    """The equivalent ``panel serve`` command (login not included: use ``obsbench serve``)."""
    from obsbench.dashboards import setup
    from obsbench.dashboards.pages import DEFAULT_APPS

    folder = Path(apps) if apps else DEFAULT_APPS
    return [
        sys.executable,
        "-m",
        "panel",
        "serve",
        *sorted(str(p) for p in folder.glob("[!_]*.py")),
        "--port",
        str(port),
        "--address",
        address,
        "--num-procs",
        str(num_procs),
        "--allow-websocket-origin",
        f"{address}:{port}",
        "--setup",
        str(Path(setup.__file__)),
        "--liveness",
        "--check-unused-sessions",
        str(CHECK_UNUSED_MS),
        "--unused-session-lifetime",
        str(UNUSED_LIFETIME_MS),
    ]
