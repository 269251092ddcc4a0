"""verify_rows on hand-built chains: each kind of tampering is named at the right record."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from obsbench.audit.chain import GENESIS_HASH, canonical_from_stored, chain_hash
from obsbench.audit.verify import verify_rows

Row = tuple


def fields(seq: int, actor: str = "u") -> tuple:
    return (
        seq,
        f"2026-01-05T09:30:{seq:02d}.000000Z",
        actor,
        "login",
        "r",
        "{}",
        None,
        None,
        f"e{seq}",
    )


def chain(n: int) -> list[Row]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        f = fields(seq)
        h = chain_hash(prev, canonical_from_stored(*f))
        rows.append((*f, prev, h))
        prev = h
    return rows


def rehash_from(rows: list[Row], index: int) -> list[Row]:
    """Re-link and re-hash everything from ``index`` on (a full rewrite of the tail)."""
    out = rows[:index]
    prev = out[-1][10] if out else GENESIS_HASH
    for r in rows[index:]:
        h = chain_hash(prev, canonical_from_stored(*r[:9]))
        out.append((*r[:9], prev, h))
        prev = h
    return out


def edit(rows: list[Row]) -> list[Row]:
    rows[4] = (*fields(5, "mallory"), *rows[4][9:])
    return rows


def edit_rehash(rows: list[Row]) -> list[Row]:
    f = fields(5, "mallory")
    rows[4] = (*f, rows[4][9], chain_hash(rows[4][9], canonical_from_stored(*f)))
    return rows


def delete(rows: list[Row]) -> list[Row]:
    return rows[:4] + rows[5:]


def renumber_down(rows: list[Row]) -> list[Row]:
    return rows[:4] + [(r[0] - 1, *r[1:]) for r in rows[5:]]


def insert(rows: list[Row]) -> list[Row]:
    f = (5, *fields(5, "mallory")[1:8], "forged")
    fake = (*f, rows[3][10], chain_hash(rows[3][10], canonical_from_stored(*f)))
    return [*rows[:4], fake, *((r[0] + 1, *r[1:]) for r in rows[4:])]


CASES = [
    pytest.param(edit, 5, "altered", id="edit"),
    pytest.param(edit_rehash, 5, "altered", id="edit_rehash"),
    pytest.param(delete, 5, "missing", id="delete"),
    pytest.param(renumber_down, 5, "missing", id="delete_renumber"),
    pytest.param(insert, 5, "inserted", id="insert"),
]


@pytest.mark.parametrize(("attack", "seq", "kind"), CASES)
def test_classification(attack: Callable[[list[Row]], list[Row]], seq: int, kind: str) -> None:
    result = verify_rows([attack(chain(10))])
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (seq, kind)
    assert result.head_seq == seq - 1


def test_intact_chain_in_batches() -> None:
    rows = chain(10)
    result = verify_rows([rows[:3], rows[3:7], [], rows[7:]])
    assert result.ok
    assert (result.checked, result.head_seq, result.head_hash) == (10, 10, rows[-1][10])


def test_start_from_a_checkpoint() -> None:
    rows = chain(10)
    result = verify_rows([rows[6:]], start_seq=6, start_hash=rows[5][10])
    assert result.ok
    assert result.checked == 4
    assert not verify_rows([rows[6:]]).ok  # not from genesis


def test_anchors() -> None:
    rows = chain(10)
    assert verify_rows([rows], anchors={5: rows[4][10]}).anchors_checked == 1
    rewritten = rehash_from(edit(chain(10)), 4)
    assert verify_rows([rewritten]).ok  # a full rewrite fools the chain alone
    caught = verify_rows([rewritten], anchors=[(7, rows[6][10])])
    assert caught.problem is not None
    assert (caught.problem.seq, caught.problem.kind) == (7, "altered")
    cut = verify_rows([rows[:8]], anchors={10: rows[9][10]})
    assert cut.problem is not None
    assert (cut.problem.seq, cut.problem.kind) == (9, "missing")


def test_empty_chain_is_ok() -> None:
    result = verify_rows([])
    assert result.ok
    assert (result.checked, result.head_seq, result.head_hash) == (0, 0, GENESIS_HASH)
