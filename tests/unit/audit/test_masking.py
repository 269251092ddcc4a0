from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obsbench.audit.masking import MASK, Masker, MaskRule, mask

TEXT_CASES = [
    pytest.param("mail jane.doe@example.com now", "mail j***@example.com now", id="email"),
    pytest.param("sk_live_51HxQ2abcdEFGHijkl9876", "sk_live_****9876", id="stripe_key"),
    pytest.param("ghp_abcdefghijklmnopqrstuvwx1234", "ghp_****1234", id="github_token"),
    pytest.param("AKIAIOSFODNN7EXAMPLE", "AKIA****MPLE", id="aws_key"),
    pytest.param("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ****", id="bearer"),
    pytest.param("jwt eyJhbGciOi.eyJzdWIiOi.SflKxwRJSM", "jwt ****jwt", id="jwt"),
    pytest.param(
        "postgresql://svc:s3cr3t@db:5432/x", "postgresql://svc:****@db:5432/x", id="url_pw"
    ),
    pytest.param("https://u:p@h/x?y=1", "https://u:****@h/x?y=1", id="url_pw_short"),
    pytest.param("password=hunter2&user=bob", "password=****&user=bob", id="password_pair"),
    pytest.param("api_key: abc123def", "api_key: ****", id="api_key_pair"),
    pytest.param("iban GB29NWBK60161331926819", "iban ****6819", id="iban"),
    pytest.param("card 4111 1111 1111 1111", "card ****1111", id="card"),
    pytest.param("acct 12345678901", "acct ****8901", id="account_digits"),
]
UNCHANGED = [
    pytest.param("order O20240101-000001 filled", id="order_id"),
    pytest.param("2024-01-05T09:30:00.000123Z", id="timestamp"),
    pytest.param("service/order-router/config", id="resource"),
    pytest.param("db57f82d389567302b0f19e94a289314", id="hex_correlation_id"),
    pytest.param("qty 1000 at 101.25", id="numbers"),
    pytest.param("CHG-4905", id="ticket"),
    pytest.param("10.76.64.185", id="ip"),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_mask_text(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert mask(text) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"password": "x"}, {"password": MASK}, id="short_secret"),
        pytest.param({"api_key": "0123456789abcdef"}, {"api_key": "****cdef"}, id="long_secret"),
        pytest.param({"Account-Number": 12345678}, {"Account-Number": MASK}, id="key_normalised"),
        pytest.param({"account": "U1234567"}, {"account": MASK}, id="broker_account"),
        pytest.param(
            {"before": {"api_key": "sk_live_aaaaaaaaaaaa1111"}},
            {"before": {"api_key": "****1111"}},
            id="nested",
        ),
        pytest.param(
            {"token": None, "qty": 10, "ok": True},
            {"token": None, "qty": 10, "ok": True},
            id="non_strings",
        ),
        pytest.param(
            {"iban": ["GB29NWBK60161331926819"]}, {"iban": ["****6819"]}, id="list_under_key"
        ),
        pytest.param(["a@b.io", 1], ["a***@b.io", 1], id="list"),
    ],
)
def test_mask_structures(value: object, expected: object) -> None:
    assert mask(value) == expected


def test_mask_does_not_modify_its_input() -> None:
    value = {"password": "x", "nested": {"email": "a@b.io"}}
    mask(value)
    assert value == {"password": "x", "nested": {"email": "a@b.io"}}


def test_masker_is_configurable_and_immutable() -> None:
    base = Masker()
    phone = base.with_rules(MaskRule.of("phone", r"\+\d{2} \d{4} \d{6}", "[phone]"))
    assert phone("call +44 2079 460958") == "call [phone]"
    assert base("call +44 2079 460958") == "call +44 2079 460958"
    only_keys = base.with_rules(replace=True).with_keys(["pin"])
    assert only_keys({"pin": "1234", "note": "a@b.io"}) == {"pin": MASK, "note": "a@b.io"}


@given(st.text(max_size=60))
def test_mask_is_idempotent(text: str) -> None:
    once = mask(text)
    assert mask(once) == once
