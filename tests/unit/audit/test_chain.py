from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obsbench.audit.chain import (
    GENESIS_HASH,
    canonical_from_stored,
    canonical_json,
    chain_hash,
    event_hash,
    format_ts,
    parse_ts,
)

EVENT = {
    "seq": 7,
    "ts": "2026-01-05T09:30:00.000123Z",
    "actor": "user:alice",
    "action": "config_change",
    "resource": "strategy/momentum-01/risk_limits",
    "details": {"before": {"max_position": 100}, "after": {"max_position": 150}},
    "correlation_id": None,
    "source": "portal",
    "event_id": "e-1",
}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param(
            datetime(2026, 1, 5, 9, 30, tzinfo=UTC), "2026-01-05T09:30:00.000000Z", id="utc"
        ),
        pytest.param(
            datetime(2026, 1, 5, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-05T09:30:00.000005Z",
            id="offset_converted",
        ),
        pytest.param(datetime(2026, 1, 5, 9, 30), "2026-01-05T09:30:00.000000Z", id="naive_is_utc"),
    ],
)
def test_format_ts(ts: datetime, expected: str) -> None:
    assert format_ts(ts) == expected
    assert parse_ts(expected) == ts.replace(tzinfo=ts.tzinfo or UTC)


def test_canonical_json_is_sorted_compact_and_keeps_unicode() -> None:
    assert (
        canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == '{"a":{"c":[1,2],"d":"é"},"b":1}'
    )


def test_canonical_json_rejects_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"x": float("nan")})


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    canonical = canonical_json(EVENT)
    expected = hashlib.sha256((GENESIS_HASH + canonical).encode()).hexdigest()
    assert chain_hash(GENESIS_HASH, canonical) == expected
    assert event_hash(GENESIS_HASH, EVENT) == expected
    assert event_hash(GENESIS_HASH, {**EVENT, "details": json.dumps(EVENT["details"])}) == expected


@pytest.mark.parametrize(
    "field",
    ["seq", "ts", "actor", "action", "resource", "details", "correlation_id", "source", "event_id"],
)
def test_every_field_changes_the_hash(field: str) -> None:
    changed = dict(EVENT)
    changed[field] = {"x": 1} if field == "details" else (8 if field == "seq" else "other")
    assert event_hash(GENESIS_HASH, changed) != event_hash(GENESIS_HASH, EVENT)


def test_prev_hash_changes_the_hash() -> None:
    assert event_hash("1" * 64, EVENT) != event_hash(GENESIS_HASH, EVENT)


text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=10,
)


@given(
    seq=st.integers(1, 2**62),
    actor=text,
    action=text,
    resource=text,
    details=st.dictionaries(text, json_values, max_size=4),
    cid=st.none() | text,
    source=st.none() | text,
    event_id=text,
)
def test_fast_canonical_equals_json_dumps(
    seq: int, actor: str, action: str, resource: str, details: dict, cid: str | None,
    source: str | None, event_id: str,
) -> None:  # fmt: skip
    doc = {
        "seq": seq,
        "ts": "2026-01-05T09:30:00.000000Z",
        "actor": actor,
        "action": action,
        "resource": resource,
        "details": details,
        "correlation_id": cid,
        "source": source,
        "event_id": event_id,
    }
    fast = canonical_from_stored(
        seq, doc["ts"], actor, action, resource, canonical_json(details), cid, source, event_id
    )
    assert fast == canonical_json(doc)
