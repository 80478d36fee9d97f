"""Reading one page ahead (guard.shell.ahead): order, errors, bounds and an early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from guard.shell.ahead import ahead


class Source:
    """Pages 0..n-1, counting reads, naming the thread that read them, closing noted."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.reads = 0
        self.threads: set[str] = set()
        self.closed = False

    def pages(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ConnectionError(f"page {i} failed")
                self.reads += 1
                self.threads.add(threading.current_thread().name)
                yield i
        finally:
            self.closed = True


def test_pages_come_in_order_each_read_by_the_reader_thread() -> None:
    source = Source(25)
    assert list(ahead(source.pages())) == list(range(25))
    assert source.threads == {"admin-api-ahead"} and source.closed


@pytest.mark.parametrize("depth", [1, 3])
def test_the_reader_is_never_more_than_depth_pages_and_one_read_ahead(depth: int) -> None:
    source = Source(40)
    with closing(ahead(source.pages(), depth)) as pages:
        for used, _ in enumerate(pages, start=1):
            assert source.reads <= used + depth + 1


def test_a_failed_read_reaches_the_consumer_after_the_pages_before_it() -> None:
    source = Source(10, fail_at=4)
    got: list[int] = []
    with pytest.raises(ConnectionError, match="page 4 failed"):
        for page in ahead(source.pages()):
            got.append(page)
    assert got == [0, 1, 2, 3]


def test_a_consumer_that_stops_early_stops_the_reader_and_closes_the_source() -> None:
    source = Source(1000)
    before = {t.name for t in threading.enumerate()}
    with closing(ahead(source.pages())) as pages:
        assert [next(pages), next(pages)] == [0, 1]
    assert source.closed and source.reads <= 2 + 1 + 1
    assert "admin-api-ahead" not in {t.name for t in threading.enumerate()} - before


def test_an_error_while_storing_a_page_stops_the_reader_too() -> None:
    source = Source(1000)
    with pytest.raises(ValueError, match="implausible"), closing(ahead(source.pages())) as pages:
        for page in pages:
            if page == 3:
                raise ValueError("implausible row")
    assert source.closed and source.reads <= 4 + 1 + 1
