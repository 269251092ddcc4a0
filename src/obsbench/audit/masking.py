"""Masking of sensitive values: one function, configurable patterns.

:func:`mask` is applied to every event before it is stored (and before it is spooled), and
again to every value the search API returns for display, so a pattern added later also hides
values stored before it existed. It is idempotent: masking masked text changes nothing.

Two kinds of rule:

- **Patterns** (:class:`MaskRule`): a regular expression and a replacement, applied to every
  string (API keys and tokens, bearer and JWT tokens, e-mail addresses, account numbers and
  IBANs, passwords in URLs, ``password=...`` pairs).
- **Sensitive keys**: in a JSON object, the value under a key such as ``password``,
  ``api_key``, ``secret`` or ``token`` is replaced whole, whatever it looks like.

Replacements keep enough to work with (an e-mail's first letter and domain, the last four
characters of an account or key) and never the secret itself.

Examples
--------
>>> mask("login by jane.doe@example.com with key sk_live_51HxQ2abcdEFGHijkl9876")
'login by j***@example.com with key sk_live_****9876'
>>> mask({"account_number": "DE89370400440532013000", "password": "hunter2"})
{'account_number': '****3000', 'password': '****'}
>>> mask("postgresql://trader:s3cr3t@db.internal:5432/prod")
'postgresql://trader:****@db.internal:5432/prod'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MASK = "****"


def _last4(match: re.Match[str]) -> str:
    return MASK + match.group(0)[-4:]


def _prefixed_last4(match: re.Match[str]) -> str:
    return match.group("prefix") + MASK + match.group("body")[-4:]


def _email(match: re.Match[str]) -> str:
    return match.group("local")[0] + "***@" + match.group("domain")


@dataclass(frozen=True)
class MaskRule:
    """A named pattern and its replacement (a string with group references, or a function)."""

    name: str
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]

    @classmethod
    def of(
        cls, name: str, pattern: str, replacement: str | Callable[[re.Match[str]], str] = MASK
    ) -> MaskRule:
        """Build a rule from a pattern string."""
        return cls(name, re.compile(pattern), replacement)

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)


DEFAULT_RULES: tuple[MaskRule, ...] = (
    # user:password@ in any URL (keep the user and host).
    MaskRule.of(
        "url_password", r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]+:)[^@\s/]+@", r"\g<pre>****@"
    ),
    # Bearer / Basic authorisation headers.
    MaskRule.of("bearer", r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*", r"\1 ****"),
    # JSON web tokens.
    MaskRule.of("jwt", r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", "****jwt"),
    # Provider API keys with a recognisable prefix (Stripe-like, GitHub, Slack, AWS, generic).
    MaskRule.of(
        "prefixed_key",
        r"\b(?P<prefix>(?:sk|pk|rk)_(?:live|test)_|gh[pousr]_|github_pat_|xox[abposr]-|"
        r"AKIA|ASIA)(?P<body>[A-Za-z0-9_\-]{12,})",
        _prefixed_last4,
    ),
    # key=value / key: value pairs naming a secret (in free text, logs and query strings).
    MaskRule.of(
        "secret_pair",
        r"(?i)\b(?P<key>password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token|"
        r"auth[_-]?token|token|private[_-]?key)(?P<sep>\s*[=:]\s*)(?!\*{4})[^\s&,;\"']+",
        r"\g<key>\g<sep>****",
    ),
    # E-mail addresses.
    MaskRule.of(
        "email",
        r"(?P<local>[A-Za-z0-9._%+\-]+)@(?P<domain>[A-Za-z0-9.\-]+\.[A-Za-z]{2,})",
        _email,
    ),
    # IBANs (two letters, two check digits, 11-30 alphanumerics).
    MaskRule.of(
        "iban", r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", _last4
    ),
    # Account and card numbers: a run of 8-19 digits, or 4-digit groups split by - or space.
    MaskRule.of(
        "account_number",
        r"(?<![\w.\-/:])(?:\d{8,19}|\d{4}(?:[ \-]\d{4}){2,3})(?![\w.\-/:])",
        _last4,
    ),
)
"""The rules :func:`mask` applies when none are given, in this order."""

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "api_secret",
        "access_token",
        "refresh_token",
        "auth_token",
        "token",
        "private_key",
        "account",
        "account_number",
        "account_no",
        "iban",
        "card_number",
    }
)
"""Keys whose value is masked whole in a JSON object (compared lower-case, ``-`` as ``_``)."""


@dataclass(frozen=True)
class Masker:
    """A set of masking rules and sensitive keys; :meth:`__call__` masks one value.

    Frozen: :meth:`with_rules` and :meth:`with_keys` return a new masker.
    """

    rules: tuple[MaskRule, ...] = DEFAULT_RULES
    sensitive_keys: frozenset[str] = field(default=DEFAULT_SENSITIVE_KEYS)
    _any: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One combined search first: most strings hold nothing sensitive and skip the rules.
        object.__setattr__(self, "_any", _combined(self.rules))

    def with_rules(self, *rules: MaskRule, replace: bool = False) -> Masker:
        """A copy with ``rules`` added (applied after the current ones) or instead of them."""
        return Masker(rules if replace else (*self.rules, *rules), self.sensitive_keys)

    def with_keys(self, keys: Iterable[str], *, replace: bool = False) -> Masker:
        """A copy with more (or other) sensitive keys."""
        normalised = frozenset(_norm_key(k) for k in keys)
        return Masker(self.rules, normalised if replace else self.sensitive_keys | normalised)

    def text(self, text: str) -> str:
        if not self._any.search(text):
            return text
        for rule in self.rules:
            text = rule.apply(text)
        return text

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: (self._whole(v) if _norm_key(str(k)) in self.sensitive_keys else self(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value

    def _whole(self, value: Any) -> Any:
        """A sensitive key's value: every leaf keeps at most its last 4 characters."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, dict):
            return {k: self._whole(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._whole(v) for v in value]
        text = str(value)
        if text.startswith(MASK):
            return text
        return MASK + text[-4:] if len(text) >= 12 else MASK


def _combined(rules: tuple[MaskRule, ...]) -> re.Pattern[str]:
    """A pattern matching wherever any rule could match (group names dropped)."""
    parts = []
    for rule in rules:
        pattern = re.sub(r"\(\?P<\w+>", "(?:", rule.pattern.pattern)
        flags = ""
        if pattern.startswith("(?i)"):
            pattern, flags = pattern[4:], "i"
        if rule.pattern.flags & re.IGNORECASE:
            flags = "i"
        parts.append(f"(?{flags}:{pattern})" if flags else f"(?:{pattern})")
    return re.compile("|".join(parts)) if parts else re.compile(r"(?!x)x")


def _norm_key(key: str) -> str:
    return key.lower().replace("-", "_")


DEFAULT_MASKER = Masker()


def mask(value: Any, masker: Masker | None = None) -> Any:
    """Mask the sensitive values in ``value`` (a string, or JSON-like dicts and lists).

    Parameters
    ----------
    value
        A string, number, ``None``, or nested ``dict``/``list`` of those.
    masker
        The rules to apply; :data:`DEFAULT_MASKER` if not given.

    Returns
    -------
    A masked copy; ``value`` itself is not modified.
    """
    return (masker or DEFAULT_MASKER)(value)
