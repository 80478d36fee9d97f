"""The parts the shell works with, as ``Protocol``s: what each side of a boundary promises.

The real parts live in ``guard.adapters`` and are built once in ``guard.entry.wiring``; the
recording fakes in ``tests/fakes.py`` satisfy the same protocols, so the order of effects can
be tested in milliseconds. Nothing here imports a library: the tick, the outbox and the demo
load no Slack client unless Slack is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from guard.core.billed import BilledHour
from guard.core.fallback import FallbackState
from guard.core.limits import ProviderLimit
from guard.core.model import (
    ApiKey,
    BilledPage,
    CostBucket,
    CostDay,
    PricedUsage,
    Snapshot,
    UsageBucket,
    Workspace,
)
from guard.core.policy import AlertState, Condition, Override
from guard.core.records import (
    AuditEntry,
    Blocks,
    KeyAction,
    Owed,
    Payload,
    Posted,
    ReloadResult,
    Silence,
)
from guard.core.usage import PeriodIndex


class AdminReports(Protocol):
    """The usage and cost reports of the Admin API; ``requests`` counts HTTP attempts."""

    requests: int

    def within(self, seconds: float | None) -> AbstractContextManager[None]:
        """A block whose Admin API use is bounded to ``seconds`` in all."""
        ...

    def usage_pages(self, start: datetime, end: datetime, width: str,
                    group_by: Sequence[str] = ...,
                    page_buckets: int | None = None, *,
                    again_from: datetime | None = None) -> Iterator[list[UsageBucket]]:
        """Usage buckets in ``[start, end)``, one page at a time (minute buckets from
        ``again_from`` on may be handed back as parsed when the next read finds them
        unchanged)."""
        ...

    def cost_pages(self, start: datetime, end: datetime, group_by: Sequence[str] = (),
                   page_buckets: int | None = None) -> Iterator[list[CostBucket]]:
        """Daily cost buckets in ``[start, end)``, one page at a time."""
        ...

    def analytics_cost(self, start: datetime, end: datetime, width: str,
                       group_by: Sequence[str] = ...) -> BilledPage:
        """Every billed row of ``[start, end)`` (the analytics API), all pages followed."""
        ...

    def workspaces(self, include_archived: bool = False) -> list[Workspace]:
        """Every listed workspace (the default workspace is not among them)."""
        ...

    def api_keys(self, status: str | None = None,
                 workspace_id: str | None = None) -> list[ApiKey]:
        """Every API key (to check the ids budgets name)."""
        ...

    def spend_limits(self) -> list[ProviderLimit]:
        """The organization's Anthropic spend limits; ``SpendLimitsUnavailable`` without
        access."""
        ...


class KeyAdmin(Protocol):
    """The organization's workspaces and API keys, and setting a key's status."""

    def workspaces(self, include_archived: bool = False) -> list[Workspace]:
        """Every workspace (the default workspace has no id and is not listed)."""
        ...

    def api_keys(self, status: str | None = None,
                 workspace_id: str | None = None) -> list[ApiKey]:
        """API keys, optionally only those with ``status``."""
        ...

    def set_api_key_status(self, key_id: str, status: str) -> ApiKey:
        """Set a key ``active`` or ``inactive``."""
        ...

    def spend_limits(self) -> list[ProviderLimit]:
        """The organization's Anthropic spend limits."""
        ...

    def set_spend_limit(self, workspace_id: str, cents: int) -> ProviderLimit:
        """Set a workspace's monthly Anthropic spend limit."""
        ...

    def delete_spend_limit(self, limit_id: str) -> None:
        """Remove one Anthropic spend limit."""
        ...


class CachePort(Protocol):
    """The usage and cost caches and the named values (watermarks) of the state store."""

    def usage_fetched(self, start: datetime, end: datetime) -> dict[datetime, datetime]:
        """When each stored hour in ``[start, end)`` was last read."""
        ...

    def replace_usage_hours(self, hours: Iterable[datetime], rows: Sequence[PricedUsage],
                            fetched_at: datetime,
                            known: Callable[[str], bool] | None = None) -> dict[datetime, str]:
        """Make ``rows`` the whole content of ``hours`` (and rebuild their days' sums;
        ``known``: the models the price table has a card for); each hour's stored digest."""
        ...

    def touch_usage_hours(self, digests: Mapping[datetime, str],
                          fetched_at: datetime) -> list[datetime]:
        """Move the read time of hours still stored with these digests; the others."""
        ...

    def ensure_sums(self, known: Callable[[str], bool] | None) -> None:
        """Build the running sums once for rows stored before they existed."""
        ...

    def versions(self, kind: str, first: date, last: date) -> dict[date, int]:
        """The version of each day in ``[first, last]`` whose ``kind`` of data was written."""
        ...

    def usage_days(self, days: Collection[date], workspaces: Collection[str] | None = None,
                   api_keys: Collection[str] | None = None) -> dict[date, PeriodIndex]:
        """The stored usage of ``days`` per budget dimension (the running sums)."""
        ...

    def billed_sums(self, days: Collection[date], workspaces: Collection[str] | None = None,
                    api_keys: Collection[str] | None = None) -> dict[date, PeriodIndex]:
        """The stored billed cost of ``days`` per budget dimension (the running sums)."""
        ...

    def usage_rows(self, start: datetime, end: datetime, seconds: int,
                   api_keys: Collection[str] | None = None,
                   workspaces: Collection[str] | None = None) -> list[PricedUsage]:
        """Stored usage in ``[start, end)`` summed per period of ``seconds``."""
        ...

    def hourly_totals(self, start: datetime, end: datetime) -> dict[datetime, Decimal]:
        """Organization-wide spend per stored hour."""
        ...

    def cost_fetched(self, first: date, last: date) -> dict[date, datetime]:
        """When each stored cost day in ``[first, last]`` was last read."""
        ...

    def replace_cost_days(self, days: Sequence[CostDay], fetched_at: datetime) -> None:
        """Make ``days`` the stored cost of those days."""
        ...

    def cost_days(self, days: Iterable[date]) -> dict[date, CostDay]:
        """The stored cost of each of ``days`` that has been read."""
        ...

    def replace_billed_hours(self, start: datetime, end: datetime,
                             hours: Sequence[BilledHour]) -> None:
        """Make ``hours`` the whole billed content of ``[start, end)``."""
        ...

    def billed_by_day(self, start: datetime, end: datetime,
                      api_keys: Collection[str] | None = None,
                      workspaces: Collection[str] | None = None) -> list[PricedUsage]:
        """Billed hours summed per UTC day, as priced rows."""
        ...

    def billed_days(self, start: datetime, end: datetime) -> dict[date, CostDay]:
        """Billed hours of whole days summed into cost days."""
        ...

    def billed_totals(self, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
        """Billed and list totals of the billed hours in ``[start, end)``."""
        ...

    def provider_limits(self) -> list[ProviderLimit]:
        """Anthropic's spend limits as last read."""
        ...

    def provider_limits_read(self) -> str | None:
        """How the last read of the spend limits went, or ``None`` before the first."""
        ...

    def replace_provider_limits(self, limits: Sequence[ProviderLimit], read: str) -> None:
        """Keep ``limits`` and how the read went (the named value ``provider_limits``)."""
        ...

    def get_meta(self, name: str) -> str | None:
        """A named value, or ``None``."""
        ...

    def set_meta(self, name: str, value: str) -> None:
        """Set a named value."""
        ...


class Fetch(Protocol):
    """Where a tick's data comes from: a refresh from the Admin API, or the caches alone."""

    def refresh(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """Fetch what is due as of ``at`` and return the month's data."""
        ...

    def watermark(self) -> datetime | None:
        """How far usage has been read (an ``at`` before it is a what-if)."""
        ...

    def cached(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """The month's data as the store has it, without a request."""
        ...


class StatePort(Protocol):
    """What the tick remembers: alert states, the fallback, the pin, key actions, the audit."""

    def alert_states(self) -> dict[tuple[str, Condition], AlertState]:
        """Every remembered (budget, condition) state."""
        ...

    def save_alert_states(self, states: dict[tuple[str, Condition], AlertState]) -> None:
        """Replace the remembered states."""
        ...

    def together(self) -> AbstractContextManager[object]:
        """One transaction that every write to the same store inside it joins (a decision's
        alert states and its outbox rows commit together or not at all)."""
        ...

    def fallback(self, target: str = ...) -> FallbackState | None:
        """The fallback last put in force."""
        ...

    def save_fallback(self, state: FallbackState, target: str = ...) -> None:
        """Remember the fallback in force."""
        ...

    def clear_fallback(self, target: str = ...) -> None:
        """Forget the fallback of a target no longer configured."""
        ...

    def override(self, target: str = ...) -> Override | None:
        """The pin, expired or not."""
        ...

    def save_override(self, pin: Override, now: datetime, target: str = ...) -> None:
        """Pin the fallback; replaces any earlier pin."""
        ...

    def clear_override(self, target: str = ...) -> None:
        """Remove the pin."""
        ...

    def key_actions(self) -> list[KeyAction]:
        """Keys the hard stop deactivated and has not restored yet."""
        ...

    def add_key_action(self, action: KeyAction) -> None:
        """Remember a deactivation."""
        ...

    def remove_key_action(self, key_id: str) -> None:
        """Forget a deactivation once the key is restored."""
        ...

    def audit(self, entry: AuditEntry) -> None:
        """Append one entry to the audit log."""
        ...

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest entries, oldest first."""
        ...


class OutboxPort(Protocol):
    """Owed notifications and the messages incidents live in."""

    def enqueue(self, dedup: str, incident: str, kind: str, payload: Payload,
                now: datetime) -> bool:
        """Record a notification as owed; False if the same decision was already recorded."""
        ...

    def owed(self) -> list[Owed]:
        """Every owed notification, oldest first."""
        ...

    def supersede(self, ids: list[int]) -> None:
        """Mark rows a later notification of the same incident overtook."""
        ...

    def claim(self, row_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take the row for sending; False if delivered or claimed by a live sender."""
        ...

    def delivered(self, row_id: int, now: datetime) -> None:
        """Slack accepted the row."""
        ...

    def failed(self, row_id: int, error: str) -> None:
        """Sending failed: release the claim so the next tick retries it."""
        ...

    def message_of(self, incident: str) -> tuple[str, str] | None:
        """(channel, ts) of the message an incident lives in, once posted."""
        ...

    def remember_message(self, incident: str, channel: str, ts: str, now: datetime) -> None:
        """Remember where an incident's message is."""
        ...


class JournalPort(OutboxPort, Protocol):
    """An outbox that also keeps alert states, in a local file (``guard.adapters.journal``)."""

    def empty(self) -> bool:
        """Whether there is nothing to merge."""
        ...

    def states(self) -> dict[tuple[str, Condition], AlertState]:
        """The alert states the last tick without the store decided."""
        ...

    def save_states(self, states: dict[tuple[str, Condition], AlertState]) -> None:
        """Remember the alert states for the next tick without the store."""
        ...

    def rows(self) -> list[tuple[Owed, datetime | None]]:
        """Every journaled notification not overtaken, with when Slack accepted it."""
        ...

    def messages(self) -> dict[str, tuple[str, str]]:
        """Where each incident posted from the journal lives in Slack."""
        ...

    def clear(self) -> None:
        """Forget everything (merged)."""
        ...


class SilencePort(Protocol):
    """Silences of a budget's notifications."""

    def add_silence(self, budget: str, condition: str | None, ends_at: datetime, *,
                    reason: str, who: str, now: datetime) -> int:
        """Mute until ``ends_at``; returns the silence id."""
        ...

    def silences(self, now: datetime | None = None) -> list[Silence]:
        """All silences, or only those active at ``now``."""
        ...

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        """End a silence now; False if there is no such active silence."""
        ...


class LeasePort(Protocol):
    """The leader lease: only its holder acts."""

    def hold(self, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
        """Hold (or renew) the lease: its epoch, or ``None`` while another holder has it."""
        ...

    def current(self, name: str, holder: str, token: int, now: datetime) -> bool:
        """Whether ``holder`` still holds the lease at epoch ``token`` (the fence)."""
        ...

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up if ``holder`` has it."""
        ...


class SinkPort(Protocol):
    """Where the fallback goes: the env and state files, and the reload hook."""

    def write(self, state: FallbackState) -> list[Path]:
        """Bring the outputs to ``state``; return what was actually rewritten. Raises
        ``SinkError`` when a file cannot be written (the old one stays)."""
        ...

    def last(self) -> FallbackState | None:
        """The fallback the outputs show now, if they can be read."""
        ...

    def reload(self) -> ReloadResult:
        """Tell the applications to re-read the outputs."""
        ...


class SlackTransport(Protocol):
    """What the tick needs from Slack: post, and update or thread where ``supports_updates``."""

    @property
    def supports_updates(self) -> bool:
        """Whether ``update`` and ``thread_ts`` work (a bot token) or not (a webhook)."""
        ...

    @property
    def supports_lookup(self) -> bool:
        """Whether ``find`` can read the channel's history (a bot token) or not."""
        ...

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Post a message, or a reply in the thread of ``thread_ts``, tagged with ``dedup``."""
        ...

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """The message posted with ``dedup`` since ``oldest``, if Slack has it."""
        ...

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Replace the text and blocks of the message ``ts``."""
        ...
