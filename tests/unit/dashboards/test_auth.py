from __future__ import annotations

import pytest

from obsbench.dashboards import auth
from obsbench.dashboards.pages import discover, pages_for
from obsbench.errors import ConfigError

# The role table of the issue: each role sees its pages (plus the alerts and reports pages
# that role works with); admin sees everything.
EXPECTED = {
    "trader": {"trading", "alerts"},
    "risk": {"trading", "risk", "alerts", "reports"},
    "operator": {"operations", "alerts", "reports"},
    "executive": {"executive", "reports"},
    "compliance": {"alerts", "reports", "audit"},
}


def test_hash_is_salted_and_verifies():
    a, b = auth.hash_password("pw", n=2**10), auth.hash_password("pw", n=2**10)
    assert a != b
    assert a.startswith("scrypt$1024$8$1$")
    assert auth.verify_password("pw", a)
    assert not auth.verify_password("pW", a)


@pytest.mark.parametrize(
    "bad", ["", "plain", "scrypt$x", "bcrypt$1$2$3$4$5", "scrypt$1024$8$1$!!$!!"]
)
def test_malformed_hashes_never_verify(bad):
    assert not auth.verify_password("pw", bad)


def test_users_file_round_trip(tmp_path):
    path = auth.write_users(tmp_path / "u.yaml", {"ann": ("secret", ["trader", "risk"])})
    assert path.stat().st_mode & 0o777 == 0o600
    assert "secret" not in path.read_text()
    users = auth.load_users(path)
    assert users["ann"].roles == {"trader", "risk"}
    assert auth.verify_password("secret", users["ann"].password_hash)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("users: {bob: {password: plain, roles: [trader]}}", "must be a scrypt hash"),
        ("users: {bob: {password: 'scrypt$1$1$1$a$b', roles: [king]}}", "known:"),
        ("nobody: here", "expected a mapping"),
    ],
)
def test_bad_users_files_name_the_problem(tmp_path, text, match):
    path = tmp_path / "u.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        auth.load_users(path)


def test_missing_users_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the users file"):
        auth.load_users(tmp_path / "nope.yaml")


def test_demo_users_cover_every_role():
    users = auth.demo_users()
    assert sorted(r for _, roles in users.values() for r in roles) == sorted(auth.ROLES)
    assert len({pw for pw, _ in users.values()}) == len(users)


def test_each_role_sees_its_pages():
    pages = discover()
    for role, slugs in EXPECTED.items():
        assert {p.spec.slug for p in pages_for({role}, pages)} == slugs, role
    assert {p.spec.slug for p in pages_for({"admin"}, pages)} == {p.spec.slug for p in pages}


def test_page_specs_refuse_unknown_roles():
    from obsbench.dashboards.pages import PageSpec

    with pytest.raises(ConfigError, match="unknown role"):
        PageSpec(slug="x", title="X", roles=("wizard",))


def test_adding_a_page_is_adding_a_module(tmp_path):
    (tmp_path / "logs.py").write_text(
        "from __future__ import annotations\n"
        "from obsbench.dashboards.pages import PageSpec\n"
        "PAGE = PageSpec(slug='logs', title='Logs', roles=('operator',))\n"
        "def create():\n    return 'logs page'\n"
    )
    (tmp_path / "_helper.py").write_text("X = 1\n")
    (pages,) = discover(tmp_path)
    assert pages.spec.slug == "logs"
    assert pages.create() == "logs page"
    assert pages_for({"trader"}, [pages]) == []
