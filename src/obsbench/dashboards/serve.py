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

import ctypes
import html
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from obsbench.dashboards.setup import Options, configure, runtime

__all__ = [
    "authorize",
    "die_with_parent",
    "panel_serve_command",
    "serve",
    "serve_resources_locally",
    "server_kwargs",
]

log = logging.getLogger("obsbench.dashboards.serve")

#: Unused sessions are checked every 2 s and dropped after 3 s (otherwise closed tabs keep
#: receiving pushes for tens of seconds: holoviz/panel#8099, bokeh/bokeh#3770).
CHECK_UNUSED_MS = 2000
UNUSED_LIFETIME_MS = 3000


def authorize(user_info: dict[str, Any] | None, path: str) -> bool:
    """Panel ``authorize_callback``: may this user open ``path``? Logs and audits the answer."""
    import panel as pn

    from obsbench.dashboards import events
    from obsbench.dashboards.auth import allowed

    rt = runtime()
    # Panel's user name (the login form's, or the OAuth provider's user key) comes first: an
    # OAuth id token has no "user" field and its e-mail is not the users-file name.
    info = user_info or {}
    user = str(pn.state.user or info.get("user") or info.get("email") or "anonymous")
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
        ``provider``, ``key``, ``secret`` and optional ``redirect_uri``: log in through
        Panel's OAuth provider instead of the form, letting in only the users of ``users``
        (:func:`obsbench.dashboards.auth.oauth_provider`; the encryption key is applied by
        :func:`serve`).
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
        from obsbench.dashboards.auth import oauth_provider

        kwargs.update(
            auth_provider=oauth_provider(oauth["provider"], users or {}),
            oauth_key=oauth.get("key") or None,
            oauth_secret=oauth.get("secret") or None,
            oauth_redirect_uri=oauth.get("redirect_uri") or None,
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
    oauth = kwargs.get("oauth")
    if oauth:
        _configure_oauth(oauth, users)
    if users or oauth:
        pn.config.authorize_callback = authorize
    pn.config.reconnect = True
    pn.state.on_session_created(serve_resources_locally)
    opts = server_kwargs(users=users, pages=found, **kwargs)
    if opts["num_procs"] == 1:
        runtime()  # start the model now, so the first page opens on computed data
    else:
        os.register_at_fork(after_in_child=die_with_parent)
    log.info(
        "serving dashboards",
        extra={"fields": {"address": opts["address"], "port": opts["port"]}},
    )
    pn.serve(**opts)


def _configure_oauth(oauth: dict[str, str], users: dict[str, Any] | None) -> None:
    """Panel's global OAuth settings: the provider and the token-cookie encryption key."""
    import panel as pn

    from obsbench.errors import ConfigError

    if not users:
        msg = "--oauth-provider needs --users: the roles come from the users file"
        raise ConfigError(
            msg, hint="list the OAuth user names with their roles (docs/dashboards.md)."
        )
    key = oauth.get("encryption_key")
    fernet = None
    if key:  # what `panel serve --oauth-encryption-key` does (pn.serve ignores the option)
        from cryptography.fernet import Fernet

        try:
            fernet = Fernet(key.encode("ascii"))
        except ValueError:
            msg = "--oauth-encryption-key must be 32 url-safe base64-encoded bytes"
            raise ConfigError(msg, hint="generate one with `panel oauth-secret`.") from None
    pn.config.oauth_provider = oauth["provider"]
    if fernet is not None:
        pn.config.oauth_encryption_key = key.encode("ascii")
        pn.state.encryption = fernet


def die_with_parent() -> None:
    """In a forked server process: receive SIGTERM when the parent process dies.

    With ``--num-procs N`` tornado forks N servers and the parent only waits for them; a
    SIGTERM to the parent (a service manager stopping ``obsbench serve``) would otherwise
    leave the children serving, orphaned. Linux ``prctl(PR_SET_PDEATHSIG)``; a no-op where
    it is not available.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_resources_locally(session_context: Any) -> None:
    """Panel ``on_session_created`` hook: the session loads Panel's CSS from this server.

    Panel rewrites its stylesheet URLs from its CDN to the server's ``static/`` route only
    for sessions created by the page request (``server_html_page_for_session`` sets the
    document's ``dist_url``). With ``--num-procs N`` the page's websocket often reaches
    another process, which creates the session from the token without that step, and the
    theme, notification and markdown CSS then came from ``cdn.holoviz.org``.
    """
    from panel.io.resources import LOCAL_DIST
    from panel.io.state import state

    rel = state.rel_path
    doc = session_context._document
    doc._template_variables.setdefault("dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST)


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
