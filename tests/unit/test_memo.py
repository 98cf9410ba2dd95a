"""The bounded memories left on the response path (``memo``): bounded, and keyed
by what they say (the request path's repetitions are ``proxy.fastpath``'s, see
tests/unit/test_fastpath.py)."""

from __future__ import annotations

from dockgate.memo import IdentityMemo, Memo


def test_memo_is_bounded() -> None:
    """A Memo never holds more than its size and keeps the newest entries."""
    memo: Memo[int, int] = Memo(3)
    for i in range(10):
        memo.put(i, i * i)
    assert len(memo) <= 3 and memo.get(9) == 81 and memo.get(0) is None


def test_identity_memo_needs_the_same_object() -> None:
    """An IdentityMemo answers only for the very object stored (an equal one misses) and forgets
    everything when full."""
    memo: IdentityMemo[list[int], str] = IdentityMemo(2)
    a, b = [1], [1]
    memo.put(a, "a")
    assert memo.get(a) == "a" and memo.get(b) is None
    memo.put(b, "b")
    memo.put([2], "c")  # full: forgets everything before
    assert len(memo) == 1 and memo.get(a) is None
