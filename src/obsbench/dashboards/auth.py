"""Login and roles: a users file with scrypt-hashed passwords, and which role sees which page.

Users file (YAML)::

    users:
      alice:
        password: "scrypt$16384$8$1$<salt b64>$<hash b64>"   # from hash_password()
        roles: [trader]
      bob: {password: "scrypt$...", roles: [risk, trader]}

Passwords are hashed with :func:`hashlib.scrypt` (n=2^14, r=8, p=1, 16-byte salt) and
compared in constant time. Roles are ``trader``, ``risk``, ``operator``, ``executive``,
``compliance`` and ``admin``; each page module in ``apps/`` declares the roles that may open
it (``admin`` opens everything). :class:`HashedPasswordAuth` plugs the file into Panel's
login form (Panel's own ``--basic-auth`` file holds clear-text passwords); OAuth through
Panel's providers is used instead when configured (``obsbench serve --oauth-provider``),
with roles then taken from the users file by the OAuth user name: :func:`oauth_provider`
records each OAuth login, and turns away (HTTP 403, recorded as ``access_denied``) a user
the provider knows but the users file does not.

Examples
--------
>>> h = hash_password("s3cret", n=2**10)
>>> verify_password("s3cret", h), verify_password("wrong", h)
(True, False)
>>> allowed({"trader"}, ("trader", "risk")), allowed({"executive"}, ("trader",))
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from obsbench.errors import ConfigError

__all__ = [
    "ROLES",
    "User",
    "allowed",
    "demo_users",
    "hash_password",
    "load_users",
    "oauth_provider",
    "verify_password",
    "write_users",
]

ROLES: tuple[str, ...] = ("trader", "risk", "operator", "executive", "compliance", "admin")
_SCHEME = "scrypt"


@dataclass(frozen=True)
class User:
    """A dashboard user: name, password hash and roles."""

    name: str
    password_hash: str
    roles: frozenset[str]


def hash_password(password: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    enc = base64.b64encode
    return f"{_SCHEME}${n}${r}${p}${enc(salt).decode()}${enc(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != _SCHEME:
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def load_users(path: Path | str) -> dict[str, User]:
    """Read a users file.

    Raises
    ------
    ConfigError
        If the file is missing or malformed, a password is not a scrypt hash, or a role is
        unknown (naming the user).
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read the users file {path}: {exc}"
        raise ConfigError(
            msg, hint="write it with obsbench.dashboards.auth.write_users or by hand."
        ) from None
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        msg = f"{path}: expected a mapping 'users: {{name: {{password, roles}}}}'"
        raise ConfigError(msg, hint="see obsbench.dashboards.auth for the format.")
    users = {}
    problems = []
    for name, entry in entries.items():
        entry = entry if isinstance(entry, dict) else {}
        pw = str(entry.get("password", ""))
        roles = entry.get("roles") or []
        roles = [roles] if isinstance(roles, str) else list(roles)
        if not pw.startswith(f"{_SCHEME}$"):
            problems.append(f"user {name!r}: password must be a scrypt hash (hash_password())")
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            problems.append(f"user {name!r}: roles {roles} (known: {list(ROLES)})")
        users[str(name)] = User(str(name), pw, frozenset(roles))
    if problems:
        msg = f"{path}: " + "; ".join(problems)
        raise ConfigError(msg, hint="fix the users listed above.")
    return users


def write_users(path: Path | str, users: dict[str, tuple[str, list[str]]]) -> Path:
    """Write a users file from ``{name: (clear password, roles)}``, hashing the passwords."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "users": {
            name: {"password": hash_password(pw), "roles": list(roles)}
            for name, (pw, roles) in users.items()
        }
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def demo_users() -> dict[str, tuple[str, list[str]]]:
    """One demo user per role, each with a fresh random password."""
    return {
        role if role != "risk" else "riskmgr": (secrets.token_urlsafe(9), [role]) for role in ROLES
    }


def allowed(roles: set[str] | frozenset[str], page_roles: tuple[str, ...] | frozenset[str]) -> bool:
    """Whether a user with ``roles`` may open a page open to ``page_roles`` (admin: all)."""
    return "admin" in roles or bool(set(roles) & set(page_roles))


def _auth_provider_class() -> Any:
    """Panel's basic-auth provider, validating against the users file (imports Panel)."""
    from panel.auth import BasicAuthProvider, BasicLoginHandler

    class HashedPasswordLogin(BasicLoginHandler):
        users: ClassVar[dict[str, User]] = {}

        def _validate(self, username: str, password: str) -> bool:
            from obsbench.dashboards import events

            user = self.users.get(username)
            ok = user is not None and verify_password(password, user.password_hash)
            events.record(
                username or "anonymous",
                "login" if ok else "login_failed",
                "/login",
                {"remote_ip": self.request.remote_ip},
            )
            return ok

    class HashedPasswordAuth(BasicAuthProvider):
        """Panel's login form, checking scrypt hashes from the users file."""

        def __init__(self, users: dict[str, User], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            HashedPasswordLogin.users = users

        @property
        def login_handler(self) -> type:
            HashedPasswordLogin._login_endpoint = self._login_endpoint
            HashedPasswordLogin._login_template = self._login_template
            return HashedPasswordLogin

    return HashedPasswordAuth


_TEMPLATES = Path(__file__).with_name("templates")


def auth_provider(users: dict[str, User], **kwargs: Any) -> Any:
    """A Panel/Bokeh ``AuthProvider`` for ``users`` (login at ``/login``, logout at ``/logout``).

    The login, logout and error pages are Panel's, without the logo Panel loads from its
    CDN and the Google Fonts (the pages must work offline).
    """
    kwargs.setdefault("login_template", str(_TEMPLATES / "login.html"))
    kwargs.setdefault("logout_template", str(_TEMPLATES / "logout.html"))
    kwargs.setdefault("error_template", str(_TEMPLATES / "error.html"))
    return _auth_provider_class()(users, **kwargs)


def oauth_provider(provider: str, users: dict[str, User], **kwargs: Any) -> Any:
    """Panel's OAuth provider ``provider`` (``github``, ``generic``...), checked against ``users``.

    Panel's own login handler runs the OAuth flow; once the provider has named the user
    (Panel's user key of that provider, e.g. ``PANEL_USER_KEY`` for ``generic``), a user in
    ``users`` is logged in and recorded (``login``), anyone else gets HTTP 403 and is recorded
    (``access_denied`` on ``/login``). The logout and error pages are the offline ones of
    :func:`auth_provider`. Panel's other OAuth code reads ``panel.config.oauth_provider``:
    :func:`obsbench.dashboards.serve.serve` sets it to ``provider``.
    """
    from panel.auth import AUTH_PROVIDERS, OAuthProvider
    from tornado.web import HTTPError

    if provider not in AUTH_PROVIDERS:
        msg = f"unknown OAuth provider {provider!r}"
        raise ConfigError(msg, hint=f"Panel's providers: {', '.join(sorted(AUTH_PROVIDERS))}.")

    class CheckedOAuth(OAuthProvider):
        """Panel's OAuth provider; only users of the users file get in."""

        _handler: type | None = None

        @property
        def login_handler(self) -> type:
            # As OAuthProvider.login_handler, for ``provider`` (read before Panel's config is)
            base = AUTH_PROVIDERS[provider]
            if self._error_template:
                base._error_template = self._error_template
            base._login_template = self._login_template
            base._login_endpoint = self._login_endpoint
            if self._handler is None:
                self._handler = _checked_login_handler(base, provider, users, HTTPError)
            return self._handler

    kwargs.setdefault("logout_template", str(_TEMPLATES / "logout.html"))
    kwargs.setdefault("error_template", str(_TEMPLATES / "error.html"))
    return CheckedOAuth(**kwargs)


def _checked_login_handler(
    base: type, provider: str, users: dict[str, User], http_error: type
) -> type:
    class CheckedLogin(base):  # type: ignore[misc, valid-type]
        async def get_authenticated_user(self, *args: Any, **kwargs: Any) -> Any:
            user = await super().get_authenticated_user(*args, **kwargs)
            if not kwargs.get("code") or user is None:
                return user  # the redirect to the provider, or a failed exchange (Panel's 403)
            from obsbench.dashboards import events

            details = {"provider": provider, "remote_ip": self.request.remote_ip}
            if user in users:
                events.record(user, "login", "/login", details)
                return user
            events.record(
                user, "access_denied", "/login", {**details, "reason": "not in the users file"}
            )
            # Panel has already set the login cookies; its error page clears only the
            # cookies the request brought, so drop these here.
            from panel.config import config

            for name in ("user", "id_token", "access_token", "refresh_token", "oauth_expiry"):
                self.clear_cookie(name, path=config.cookie_path)
            raise http_error(
                403, f"{user} is not a user of these dashboards.", reason="Access denied"
            )

    CheckedLogin.__name__ = CheckedLogin.__qualname__ = f"Checked{base.__name__}"
    return CheckedLogin
