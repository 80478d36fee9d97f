"""The daemon's heap between ticks (``guard.entry.heap``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from guard.entry.heap import Heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_what_lives_on_after_a_tick_is_frozen() -> None:
    kept = [Node() for _ in range(100)]
    Heap().settle()
    assert gc.get_freeze_count() >= len(kept)


def test_a_cycle_let_go_while_frozen_is_collected_at_the_next_full_collection() -> None:
    heap = Heap(full_every=3)
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    heap.settle()  # frozen with the cycle alive
    del a, b
    heap.settle()
    assert gone() is not None  # frozen: the collector does not walk it
    heap.settle()  # the third: everything unfrozen and collected
    assert gone() is None


def test_garbage_a_tick_leaves_is_collected_at_once() -> None:
    heap = Heap()
    heap.settle()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    heap.settle()
    assert gone() is None
