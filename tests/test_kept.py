"""Each budget's forecast parts of complete days kept between ticks (``guard.core.kept``)."""

from __future__ import annotations

from guard.core.kept import Kept, Value


def test_the_same_sources_give_back_the_same_parts() -> None:
    kept, day = Kept(), object()
    parts = kept.parts([Value(("2026-10-28",)), day])
    parts["org"] = "history"
    assert kept.parts([Value(("2026-10-28",)), day]) == {"org": "history"}


def test_a_day_that_is_a_new_object_empties_the_table() -> None:
    """A day read again (its version moved) is a new object, even with equal contents."""
    kept = Kept()
    kept.parts([Value(1), [1, 2]])["org"] = "history"
    assert kept.parts([Value(1), [1, 2]]) == {}


def test_a_value_that_changed_empties_the_table() -> None:
    kept, day = Kept(), object()
    kept.parts([Value(("2026-10-28", 7)), day])["org"] = "history"
    assert kept.parts([Value(("2026-10-29", 7)), day]) == {}
    assert kept.parts([Value(("2026-10-29", 7)), day, object()]) == {}
