"""The parts of a tick without its state store (issue 12, item 3): the journal, what the
files on disk say, the only-tighter rule and the merge back into a real store."""

from __future__ import annotations

import errno
import json
import logging
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from guard.adapters.journal import Journal
from guard.adapters.sinks import FileSinks, atomic_write, read_env
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.state import Records
from guard.core.fallback import FallbackState, from_env, from_state_document, state_document
from guard.core.policy import AlertState, Condition, Severity, Status
from guard.core.records import Payload
from guard.entry import wiring
from guard.errors import SinkError
from guard.shell.degraded import merge, states_from, tighter

T0 = datetime(2026, 3, 21, tzinfo=UTC)
CHAIN = ("opus", "sonnet", "haiku")
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}
INCIDENT = "2026-03:org:hard_reached:1774051200"
PAYLOAD = Payload("Hard limit reached — org", ({"type": "section"},))


def fallback(level: int, firing: tuple[str, ...] = (), source: str = "auto",
             **pin: object) -> FallbackState:
    return FallbackState.build(CHAIN, MODELS, level, source=source, updated_at=T0,
                               reason="test", firing=firing, **pin)  # type: ignore[arg-type]


def hard_state(notified: datetime | None = T0) -> AlertState:
    return AlertState(Status.FIRING, date(2026, 3, 1), T0, Severity.CRITICAL,
                      last_notified=notified, notified_severity=Severity.CRITICAL)


# --- only tighter ---------------------------------------------------------------------------

@pytest.mark.parametrize(("on_disk", "desired", "written"), [
    (0, 2, True), (1, 2, True), (2, 2, False), (2, 1, False), (2, 0, False), (None, 0, True)])
def test_only_a_more_restrictive_tier_is_written(on_disk: int | None, desired: int,
                                                 written: bool) -> None:
    """Without the store, haiku over sonnet is applied; sonnet over haiku never is; with no
    file at all, whatever is decided is (there is nothing to relax)."""
    last = None if on_disk is None else fallback(on_disk)
    result = tighter(fallback(desired), last, CHAIN)
    assert (result is not None) is written
    if written:
        assert result == fallback(desired)


def test_the_files_firing_list_stands_for_notified_alert_states() -> None:
    """Each "budget: condition" of the state file is firing and critically notified (so it
    is not announced again); an unknown condition is skipped."""
    states = states_from(fallback(2, ("org: hard_reached", "team: soft_reached",
                                      "org: no_such_condition")))
    assert set(states) == {("org", Condition.HARD_REACHED), ("team", Condition.SOFT_REACHED)}
    assert all(s.status == Status.FIRING and s.last_notified == T0
               and s.notified_severity == Severity.CRITICAL for s in states.values())
    assert states_from(None) == {}


# --- what the files say ---------------------------------------------------------------------

def test_the_state_file_and_the_env_file_read_back_what_was_written(tmp_path: Path) -> None:
    pinned = fallback(1, ("org: soft_reached",), source="override",
                      override_expires_at=T0 + timedelta(hours=4), override_by="dave",
                      override_reason="drill")
    assert from_state_document(json.loads(json.dumps(state_document(pinned)))) == pinned
    sinks = FileSinks(tmp_path / "model.env", tmp_path / "fallback.json")
    sinks.write(pinned)
    assert sinks.last() == pinned
    (tmp_path / "fallback.json").write_text("{not json")
    from_file = sinks.last()
    assert from_file is not None
    assert (from_file.tier, from_file.chain, from_file.source) == (
        "sonnet", ("claude-sonnet-5-5", "claude-haiku-5-5"), "override")
    assert from_file == from_env(read_env(tmp_path / "model.env"))
    (tmp_path / "model.env").unlink()
    assert sinks.last() is None


def test_an_unwritable_fallback_file_is_a_sink_error_naming_it(tmp_path: Path) -> None:
    """A directory replaced by a plain file: a SinkError that names the file; nothing else
    is raised and the other file is not half-written."""
    (tmp_path / "run").write_text("not a directory")
    sinks = FileSinks(tmp_path / "run" / "model.env", tmp_path / "fallback.json")
    with pytest.raises(SinkError, match=r"fallback file .*run/model.env not written, the old "
                                        r"one stays: Not a directory"):
        sinks.write(fallback(2))
    assert not (tmp_path / "fallback.json").exists()


def test_a_full_disk_rewrites_an_existing_file_in_place(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No room for the temporary copy (ENOSPC): the existing file is rewritten where it is;
    a file that does not exist yet cannot be, and the error stands."""
    target = tmp_path / "model.env"
    target.write_text("GUARD_TIER=sonnet-and-a-longer-old-line\n")

    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    assert atomic_write(target, "GUARD_TIER=haiku\n")
    assert target.read_text() == "GUARD_TIER=haiku\n"
    with pytest.raises(OSError, match="No space left"):
        atomic_write(tmp_path / "new.env", "GUARD_TIER=haiku\n")
    monkeypatch.undo()

    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(OSError, match="Permission denied"):
        atomic_write(target, "GUARD_TIER=opus\n")  # only a full disk is rewritten in place
    assert target.read_text() == "GUARD_TIER=haiku\n"


# --- the journal ----------------------------------------------------------------------------

def test_the_journal_survives_the_process(tmp_path: Path) -> None:
    """Rows, their send state, messages and alert states read back from the file."""
    journal = Journal([tmp_path / "state.db.journal"])
    assert journal.empty()
    assert journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
    assert not journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
    [owed] = journal.owed()
    assert journal.claim(owed.id, "me", T0, timedelta(minutes=1))
    assert not journal.claim(owed.id, "other", T0 + timedelta(seconds=5), timedelta(minutes=1))
    journal.remember_message(INCIDENT, "C1", "1.000100", T0)
    journal.delivered(owed.id, T0 + timedelta(seconds=1))
    journal.save_states({("org", Condition.HARD_REACHED): hard_state()})

    again = Journal([tmp_path / "state.db.journal"])
    assert again.owed() == []
    [(row, delivered_at)] = again.rows()
    assert (row.dedup, row.payload, row.sending_since, delivered_at) == (
        f"{INCIDENT}:firing", PAYLOAD, T0, T0 + timedelta(seconds=1))
    assert again.message_of(INCIDENT) == ("C1", "1.000100")
    assert again.states() == {("org", Condition.HARD_REACHED): hard_state()}
    again.clear()
    assert not (tmp_path / "state.db.journal").exists()
    assert Journal([tmp_path / "state.db.journal"]).empty()


def test_the_journal_falls_back_to_its_spare_path_and_reads_the_newest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A first path that cannot be written (its directory is a file): the spare one is;
    reading takes the newest generation, and a damaged file is skipped with a warning."""
    (tmp_path / "state").write_text("not a directory")
    first, spare = tmp_path / "state" / "state.db.journal", tmp_path / "spare.journal"
    journal = Journal([first, spare])
    journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
    journal.save_states({})  # generation 2
    assert spare.exists()
    older = tmp_path / "older.journal"
    Journal([older]).save_states({})  # generation 1, and nothing owed
    (tmp_path / "damaged.journal").write_text("{")
    with caplog.at_level(logging.WARNING):
        read = Journal([tmp_path / "damaged.journal", older, spare])
    assert [o.dedup for o in read.owed()] == [f"{INCIDENT}:firing"]
    assert "damaged.journal is damaged, skipped" in caplog.text


def test_a_journal_written_nowhere_lives_in_memory_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").write_text("not a directory")
    journal = Journal([tmp_path / "state" / "a.journal", tmp_path / "state" / "b.journal"])
    with caplog.at_level(logging.ERROR):
        journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
        journal.save_states({("org", Condition.HARD_REACHED): hard_state()})
    assert len(journal.owed()) == 1
    assert caplog.text.count("journal not written anywhere") == 1


# --- the merge ------------------------------------------------------------------------------

def test_the_merge_moves_the_journal_into_the_store_once(tmp_path: Path) -> None:
    """A delivered row lands delivered; one whose send began lands owed with that start (so
    Slack is asked before posting it again); the alert state and the message are installed;
    the journal is emptied and a second merge does nothing."""
    journal = Journal([tmp_path / "state.db.journal"])
    runaway = "2026-03:org:runaway:1774051200"
    journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
    journal.enqueue(f"{runaway}:firing", runaway, "firing", PAYLOAD, T0)
    first, second = journal.owed()
    journal.claim(first.id, "me", T0, timedelta(minutes=1))
    journal.delivered(first.id, T0 + timedelta(seconds=1))
    journal.remember_message(INCIDENT, "C1", "1.000100", T0)
    journal.claim(second.id, "me", T0 + timedelta(seconds=2), timedelta(minutes=1))
    journal.failed(second.id, "slack down")
    journal.save_states({("org", Condition.HARD_REACHED): hard_state(),
                         ("org", Condition.RUNAWAY): hard_state()})
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        records, outbox = Records(store), Outbox(store)
        assert merge(journal, records, outbox, "me", T0 + timedelta(minutes=5)) == 2
        [owed] = outbox.owed()
        assert owed.dedup == f"{runaway}:firing"
        assert owed.sending_since == T0 + timedelta(seconds=2)
        assert outbox.message_of(INCIDENT) == ("C1", "1.000100")
        assert records.alert_states()[("org", Condition.HARD_REACHED)] == hard_state()
        assert not outbox.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
        assert journal.empty() and not (tmp_path / "state.db.journal").exists()
        assert merge(journal, records, outbox, "me", T0 + timedelta(minutes=6)) == 0


def test_the_merge_keeps_an_incident_the_store_already_has_firing(tmp_path: Path) -> None:
    """The store's own firing state wins over the journal's (the store moved on)."""
    theirs = hard_state(T0 + timedelta(hours=1))
    journal = Journal([tmp_path / "state.db.journal"])
    journal.enqueue(f"{INCIDENT}:firing", INCIDENT, "firing", PAYLOAD, T0)
    journal.save_states({("org", Condition.HARD_REACHED): hard_state()})
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        records = Records(store)
        records.save_alert_states({("org", Condition.HARD_REACHED): theirs})
        merge(journal, records, Outbox(store), "me", T0 + timedelta(hours=2))
        assert records.alert_states()[("org", Condition.HARD_REACHED)] == theirs
