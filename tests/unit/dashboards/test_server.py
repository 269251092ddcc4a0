from __future__ import annotations

import re

import pytest

from obsbench.dashboards import auth, events, metrics_endpoint, serve, setup


@pytest.fixture
def runtime(live_store, tmp_path, monkeypatch):
    """A started runtime (model thread, users) for this test's store; stopped afterwards."""
    store, _ = live_store
    users = auth.write_users(
        tmp_path / "users.yaml", {"tess": ("pw", ["trader"]), "ada": ("pw", ["admin"])}
    )
    monkeypatch.setattr(setup, "_runtime", None)
    setup.configure(setup.Options(home=store.home, users=users, bridge=False))
    rt = setup.runtime()
    yield rt
    rt.stop()
    monkeypatch.setattr(setup, "_runtime", None)
    setup.configure(setup.Options())


def test_server_kwargs_carry_the_panel_serve_options():
    from obsbench.dashboards.pages import discover

    kw = serve.server_kwargs(
        port=5123, address="0.0.0.0", num_procs=3, websocket_origin=["dash.example:443"],
        admin=True, users={"x": None}, pages=discover(),
    )  # fmt: skip
    assert kw["port"] == 5123
    assert kw["num_procs"] == 3
    assert kw["admin"] is True
    assert "dash.example:443" in kw["websocket_origin"]
    assert "localhost:5123" in kw["websocket_origin"]
    assert kw["check_unused_sessions_milliseconds"] == 2000
    assert kw["unused_session_lifetime_milliseconds"] == 3000
    assert {p for p, _ in kw["extra_patterns"]} == {"/health", "/metrics"}
    assert {"/", "trading", "executive", "risk", "operations", "alerts", "reports"} <= set(
        kw["panels"]
    )
    assert kw["auth_provider"] is not None
    assert len(kw["cookie_secret"]) >= 32


def test_oauth_replaces_the_login_form():
    from panel.auth import GithubLoginHandler, OAuthProvider

    from obsbench.dashboards.pages import discover

    kw = serve.server_kwargs(
        pages=discover(), oauth={"provider": "github", "key": "k", "secret": "s"}
    )
    assert isinstance(kw["auth_provider"], OAuthProvider)
    assert (kw["oauth_key"], kw["oauth_secret"], kw["oauth_redirect_uri"]) == ("k", "s", None)
    handler = kw["auth_provider"].login_handler
    # Panel's GitHub flow, with the users-file check on top
    assert issubclass(handler, GithubLoginHandler)
    assert handler is not GithubLoginHandler


def test_oauth_options_are_checked():
    from obsbench.errors import ConfigError

    users = {"tess": auth.User("tess", "scrypt$x", frozenset({"trader"}))}
    with pytest.raises(ConfigError, match="unknown OAuth provider"):
        auth.oauth_provider("nope", users)
    with pytest.raises(ConfigError, match="needs --users"):
        serve._configure_oauth({"provider": "github"}, None)
    with pytest.raises(ConfigError, match="32 url-safe base64"):
        serve._configure_oauth({"provider": "github", "encryption_key": "short"}, users)


def test_panel_serve_command_uses_setup_and_session_cleanup():
    cmd = serve.panel_serve_command(port=5999)
    assert cmd[1:4] == ["-m", "panel", "serve"]
    assert cmd[cmd.index("--setup") + 1].endswith("dashboards/setup.py")
    assert cmd[cmd.index("--check-unused-sessions") + 1] == "2000"
    assert any(a.endswith("apps/trading.py") for a in cmd)


def test_authorize_checks_roles_and_records_denials(runtime, caplog):
    caplog.set_level("INFO", logger="obsbench.dashboards.events")
    before = dict(events.COUNTS)
    assert serve.authorize({"user": "tess"}, "/trading")
    assert not serve.authorize({"user": "tess"}, "/risk")
    assert serve.authorize({"user": "ada"}, "/risk")
    assert not serve.authorize({"user": "mallory"}, "/trading")
    assert serve.authorize({"user": "tess"}, "/")
    assert events.COUNTS["access_denied"] - before.get("access_denied", 0) == 2
    denied = [
        r
        for r in caplog.records
        if r.name == "obsbench.dashboards.events" and r.fields.get("event") == "access_denied"
    ]
    assert [(r.fields["user"], r.fields["resource"]) for r in denied] == [
        ("tess", "/risk"),
        ("mallory", "/trading"),
    ]


def test_metrics_are_prometheus_text(runtime):
    runtime.model.tick()
    text = metrics_endpoint.render_metrics(runtime)
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? (-?[0-9.e+]+|nan|NaN)$')
    names = set()
    for line in text.strip().splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert sample.match(line), line
        names.add(line.split("{")[0].split(" ")[0])
    assert {
        "obsbench_dashboard_sessions",
        "obsbench_dashboard_ticks_total",
        "obsbench_dashboard_tick_seconds",
        "obsbench_dashboard_source_stale",
        "obsbench_dashboard_live_data_bytes",
        "process_resident_memory_bytes",
    } <= names
    assert 'obsbench_dashboard_heap_bytes{allocator="glibc",state="in_use"}' in text
    held = re.search(r"^obsbench_dashboard_live_data_bytes (\S+)$", text, re.M)
    assert held is not None
    assert float(held.group(1)) == runtime.model.data_bytes() > 0  # the day's data is loaded


def test_runtime_is_one_per_process(runtime):
    assert setup.runtime() is runtime
    assert runtime.roles_of("tess") == {"trader"}
    assert runtime.roles_of("nobody") == frozenset()


def test_options_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("OBSBENCH_DASHBOARD_INTERVAL", "2.5")
    monkeypatch.setenv("OBSBENCH_DASHBOARD_STALE_AFTER", "9")
    opts = setup.Options.from_env()
    assert (opts.home, opts.interval, opts.stale_after) == (tmp_path, 2.5, 9.0)
