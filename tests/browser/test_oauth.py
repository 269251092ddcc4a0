"""OAuth login end to end: a real OpenID Connect server, `obsbench serve --oauth-provider generic`.

The identity provider is `oauth2-mock-server` (npm, installed in tests/browser/oauth by
scripts/test-services.sh) behind a sign-in page (tests/browser/oauth/server.js): it issues
signed id and access tokens for the user name typed there. Panel's ``generic`` provider
talks to it through its own variables (``PANEL_OAUTH_AUTHORIZE_URL``, ``..._TOKEN_URL``,
``..._USER_URL``, ``PANEL_USER_KEY``); the roles come from the users file by that name.
"""

from __future__ import annotations

import base64
import json
import re
import select
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from obsbench.dashboards.pages import discover, pages_for

from .conftest import Server, obsbench_serve

OAUTH_DIR = Path(__file__).parent / "oauth"
# OAuth user names (none of them is a form-login user, so the audit rows are this test's own)
OAUTH_USERS = {"tina": ["trader"], "oscar": ["operator", "executive"]}
STRANGER = "mallory"  # known to the identity provider, not to the users file
PAGES = discover()


@dataclass
class IdP:
    issuer: str
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    """The OpenID Connect server, on a port it picks (printed as its first line)."""
    node = shutil.which("node")
    if not node or not (OAUTH_DIR / "node_modules" / "oauth2-mock-server").is_dir():
        pytest.fail("node or tests/browser/oauth/node_modules missing: scripts/test-services.sh")
    proc = subprocess.Popen(
        [node, str(OAUTH_DIR / "server.js"), "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line:
            pytest.fail(f"the OAuth test server did not start (exit code {proc.poll()})")
        yield IdP(json.loads(line)["issuer"], proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def oauth_server(platform, idp: IdP) -> Iterator[Server]:
    """`obsbench serve` with OAuth through the test identity provider, on the platform's store."""
    from cryptography.fernet import Fernet

    from obsbench.dashboards import auth

    # With OAuth the users file's passwords are not used; the names and roles are.
    users = auth.write_users(
        platform.home / "oauth-users.yaml",
        {u: (uuid.uuid4().hex, roles) for u, roles in OAUTH_USERS.items()},
    )
    env = {
        "PANEL_OAUTH_AUTHORIZE_URL": f"{idp.issuer}/signin",
        "PANEL_OAUTH_TOKEN_URL": f"{idp.issuer}/token",
        "PANEL_OAUTH_USER_URL": f"{idp.issuer}/userinfo",
        "PANEL_USER_KEY": "preferred_username",
    }
    args = [
        "--users", str(users), "--oauth-provider", "generic",
        "--oauth-key", "obsbench-dashboards", "--oauth-secret", uuid.uuid4().hex,
        "--oauth-encryption-key", Fernet.generate_key().decode(),
    ]  # fmt: skip
    channel = f"obsbench_alerts_{uuid.uuid4().hex[:8]}"
    with obsbench_serve(
        platform.home, platform.database, channel, args, env=env, log_name="oauth-server.log"
    ) as server:
        yield server


def oauth_login(page, server: Server, idp: IdP, user: str, path: str = "/") -> None:
    """Open ``path``, get sent to the provider's sign-in page, sign in as ``user``."""
    page.goto(f"{server.url}{path}")
    expect(page).to_have_url(re.compile(f"^{re.escape(idp.issuer)}/signin\\?"), timeout=15_000)
    assert "client_id=obsbench-dashboards" in page.url
    page.fill("input[name=username]", user)
    page.click("button[type=submit]")


def _cookie(context, name: str) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == name)


def _secure_cookie_value(raw: str) -> bytes:
    """The value inside a Tornado signed cookie (``2|1:0|10:ts|4:name|len:b64value|sig``)."""
    b64 = raw.strip('"').split("|")[4].split(":", 1)[1]
    return base64.b64decode(b64)


def test_oauth_user_sees_exactly_their_roles_pages(oauth_server, idp, browser, platform):
    from obsbench import audit

    for user, roles in OAUTH_USERS.items():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        oauth_login(page, oauth_server, idp, user)
        expect(page).to_have_url(f"{oauth_server.url}/", timeout=15_000)
        expect(page.get_by_text(f"Signed in as {user}")).to_be_visible(timeout=10_000)
        expected = {p.spec.title for p in pages_for(roles, PAGES)}
        links = page.locator(".obsbench-pages a")
        expect(links).to_have_count(len(expected), timeout=10_000)
        assert set(links.all_text_contents()) == expected, user
        # Panel keeps the tokens in cookies, encrypted with --oauth-encryption-key (Fernet)
        assert _secure_cookie_value(_cookie(context, "access_token")).startswith(b"gAAAAA")
        for other in PAGES:
            response = page.goto(f"{oauth_server.url}/{other.spec.slug}")
            assert response is not None
            if other.spec.title in expected:
                assert response.status == 200, (user, other.spec.slug)
                # rendered by a live session (the badge may say stale under load: not this test's)
                expect(page.locator(".obsbench-badge")).to_be_visible(timeout=30_000)
            else:
                assert response.status == 403, (user, other.spec.slug)
        context.close()
    logins = {(e["user"], e["provider"]) for e in oauth_server.events("login")}
    assert logins == {(u, "generic") for u in OAUTH_USERS}
    denied = {(e["user"], e["resource"]) for e in oauth_server.events("access_denied")}
    assert ("tina", "/risk") in denied
    assert ("oscar", "/trading") in denied
    trail = audit.search(actor=list(OAUTH_USERS), url=platform.database, limit=1000)
    pairs = set(zip(trail["action"], trail["actor"], trail["resource"], strict=True))
    assert {("login", u, "/login") for u in OAUTH_USERS} <= pairs
    assert {("access_denied", "tina", "/risk"), ("access", "oscar", "/operations")} <= pairs


def test_oauth_user_not_in_the_users_file_is_denied(oauth_server, idp, browser, platform):
    from obsbench import audit

    context = browser.new_context()
    page = context.new_page()
    responses = []
    requested = []
    page.on("response", lambda r: responses.append((r.status, r.url)))
    page.on("request", lambda r: requested.append(r.url))
    oauth_login(page, oauth_server, idp, STRANGER, path="/alerts")
    expect(page.get_by_text(f"{STRANGER} is not a user of these dashboards.")).to_be_visible(
        timeout=15_000
    )
    assert any(s == 403 and u.startswith(f"{oauth_server.url}/login") for s, u in responses)
    # the error page is obsbench's offline copy of Panel's: no fonts or logos from the web
    local = (oauth_server.url, idp.issuer, "data:")
    assert [u for u in requested if not u.startswith(local)] == []
    assert not [c for c in context.cookies() if c["name"] in ("user", "access_token")]
    # not logged in afterwards: every page sends the browser back to the provider
    for path in ("/", "/alerts"):
        page.goto(f"{oauth_server.url}{path}")
        expect(page).to_have_url(re.compile(f"^{re.escape(idp.issuer)}/signin"), timeout=15_000)
    context.close()
    denied = [e for e in oauth_server.events("access_denied") if e["user"] == STRANGER]
    assert [(e["resource"], e["provider"], e["reason"]) for e in denied] == [
        ("/login", "generic", "not in the users file")
    ]
    assert not [e for e in oauth_server.events("login") if e["user"] == STRANGER]
    trail = audit.search(actor=STRANGER, url=platform.database, limit=100)
    assert set(zip(trail["action"], trail["resource"], strict=True)) == {
        ("access_denied", "/login")
    }
