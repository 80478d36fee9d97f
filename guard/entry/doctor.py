"""``guard doctor``: one line per check of everything the daemon depends on.

Each check returns a ``Check``; a failed one makes ``guard doctor`` exit 1. Checks never print
a secret: errors come from the adapters, which already keep tokens out of their messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.caches import Caches
from guard.adapters.store.engine import Store
from guard.adapters.store.outbox import Outbox
from guard.config import Settings
from guard.config.sections import secret_files, target_path
from guard.core.billed import ANALYTICS, AUTO, LEGACY
from guard.core.limits import ProviderLimit
from guard.core.model import DEFAULT_WORKSPACE
from guard.core.period import HOUR, floor_hour
from guard.core.pricing import PriceTable
from guard.core.reconcile import price_drift
from guard.core.summary import unpriced_warning
from guard.errors import GuardError, SpendLimitsUnavailable, UpstreamError
from guard.shell.billed import FALLBACK_STATUSES
from guard.shell.limits import LimitsRead
from guard.shell.sync import WATERMARK, Fetcher

if TYPE_CHECKING:
    from guard.adapters.slack import SlackWebApi, SlackWebhook

OpenStore = Callable[[str], AbstractContextManager[Store]]



@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    warn: bool = False

    def line(self) -> str:
        """``ok   admin key: …``, ``WARN fallback model sonnet: …`` or ``FAIL state store: …``."""
        mark = "FAIL" if not self.ok else "WARN" if self.warn else "ok  "
        return f"{mark} {self.name}: {self.detail}"


def checks(settings: Settings, client: AdminClient | None, open_store: OpenStore,
           slack: SlackWebApi | SlackWebhook | None,
           now: datetime | None = None) -> Iterator[Check]:
    """Every check, in order; ``client`` is None when no admin key is configured, ``slack``
    when Slack is not. ``now`` (default: the clock) dates the analytics probe."""
    url = settings.state.url
    moment = now or datetime.now(UTC)
    yield _admin_key(client)
    yield _billing_source(settings.anthropic.source, client, moment)
    yield _spend_limits(client, lambda: open_store(url))
    yield _store(lambda: open_store(url))
    yield from _prices(settings, client, lambda: open_store(url), moment)
    yield from _matches(settings, client)
    yield from _slack(settings, slack, lambda: open_store(url))
    yield from _paths(settings)
    yield from _secret_files(settings)
    yield from _chain_models(settings)


def config_warnings(settings: Settings) -> list[str]:
    """What is valid but will not do what it should: unknown chain models, open secrets."""
    prices = PriceTable.load(settings.pricing)
    out = [f"fallback.models.{tier}: {model} is not in the price table (a typo?): "
           "applications would be told to use it"
           for tier, model in settings.fallback.models.items()
           if tier in settings.fallback.chain and not prices.known(model)]
    sections = (settings.anthropic, settings.slack, settings.http)
    for field, file in secret_files(sections, ("anthropic", "slack", "http")):
        try:
            mode = file.stat().st_mode
        except OSError:
            continue
        if mode & 0o077:
            out.append(f"{field}: {file} is readable by group or others "
                       f"(mode {mode & 0o777:o}); chmod 600 it")
    return out


def _secret_files(settings: Settings) -> Iterator[Check]:
    """A warning for each secret file others can read."""
    for warning in config_warnings(settings):
        if "readable by group or others" in warning:
            yield Check("secret file", True, warning, warn=True)


def _chain_models(settings: Settings) -> Iterator[Check]:
    """A warning for each tier of the chain whose model is legacy, retired or unknown."""
    prices = PriceTable.load(settings.pricing)
    for tier in settings.fallback.chain:
        model = settings.fallback.models[tier]
        name = f"fallback model {tier}"
        if not prices.known(model):
            yield Check(name, True, f"{model} is not in the price table: it is estimated at "
                                    "the dearest card; name it under [pricing]", warn=True)
            continue
        lifecycle = prices.card(model).lifecycle
        if lifecycle == "current":
            yield Check(name, True, f"{model} (current)")
        else:
            yield Check(name, True, f"{model} is {lifecycle}: move [fallback.models] to a "
                                    "current model (claude-opus-5-5, claude-sonnet-5-5, "
                                    "claude-haiku-5-5)", warn=True)


def _guard(name: str, action: Callable[[], str]) -> Check:
    try:
        return Check(name, True, action())
    except (GuardError, OSError) as exc:
        return Check(name, False, str(exc))


def _admin_key(client: AdminClient | None) -> Check:
    if client is None:
        return Check("admin key", False, "not configured (anthropic.admin_api_key)")
    return _guard("admin key",
                  lambda: f"accepted; {len(client.workspaces())} workspaces visible")


def online_checks(settings: Settings, client: AdminClient) -> Iterator[Check]:
    """What ``config validate --online`` checks: the key, the matches, the chain models."""
    yield _admin_key(client)
    yield from _matches(settings, client)
    for check in _chain_models(settings):
        unknown = check.warn and "not in the price table" in check.detail
        yield replace(check, ok=False, warn=False) if unknown else check


def _billing_source(configured: str, client: AdminClient | None, now: datetime) -> Check:
    """Whether the analytics API serves this organization, and what ``source`` makes of it."""
    name = "billing source"
    if configured == LEGACY:
        return Check(name, True, "legacy usage and cost reports (configured)")
    if client is None:
        return Check(name, True, "skipped (no admin key)")
    end = floor_hour(now)
    try:
        page = client.analytics_cost(end - HOUR, end, "1h")
    except UpstreamError as exc:
        if configured == AUTO and exc.status in FALLBACK_STATUSES:
            return Check(name, True, f"the analytics API answered HTTP {exc.status} ({exc}); "
                                     "source = auto uses the legacy usage and cost reports: "
                                     "per-key budgets are estimated, not billed", warn=True)
        if configured == ANALYTICS:
            return Check(name, False, f"source = analytics but the analytics API fails: {exc}")
        return Check(name, True, f"analytics API not checked: {exc}", warn=True)
    through = page.refreshed_at.isoformat() if page.refreshed_at else "nothing yet"
    return Check(name, True, f"analytics API (billed per key and model); billed through "
                             f"{through}")


def _prices(settings: Settings, client: AdminClient | None,
            opened: Callable[[], AbstractContextManager[Store]],
            now: datetime) -> Iterator[Check]:
    """What the stored data says about the price table: unpriced models and price drift."""
    if client is None:
        return
    try:
        with opened() as store:
            fetcher = Fetcher(client, Caches(store), PriceTable.load(settings.pricing),
                              source=settings.anthropic.source)
            snapshot = fetcher.cached(now)
    except (GuardError, OSError) as exc:
        yield Check("price table", False, f"cannot read the stored data: {exc}")
        return
    drift = price_drift(snapshot)
    for model in snapshot.unpriced_models:
        yield Check("price table", True, unpriced_warning(model), warn=True)
    for item in drift:
        yield Check("price table", True, item.describe(), warn=True)
    if not snapshot.unpriced_models and not drift:
        yield Check("price table", True, "every model of the month is priced; no drift on "
                                         "the newest billed day")


def _matches(settings: Settings, client: AdminClient | None) -> Iterator[Check]:
    """Every budget's ``match`` against the organization: a mistyped id never alerts."""
    scoped = [b for b in settings.budgets if b.scope != "organization"]
    if client is None or not scoped:
        return
    try:
        workspaces = {w.id for w in client.workspaces(include_archived=True)}
        keys = {k.id for k in client.api_keys()}
    except UpstreamError as exc:
        yield Check("budget matches", True, f"not checked: {exc}", warn=True)
        return
    models = PriceTable.load(settings.pricing).cards
    for b in scoped:
        name = f"budget {b.name}"
        match = b.match or ""
        if b.scope == "workspace" and match != DEFAULT_WORKSPACE and match not in workspaces:
            yield Check(name, False, f"workspace {match} is not in this organization "
                                     f"({len(workspaces)} workspaces listed): it can never "
                                     "spend, so it can never alert")
        elif b.scope == "api_key" and match not in keys:
            yield Check(name, False, f"API key {match} is not in this organization "
                                     f"({len(keys)} keys listed): it can never alert")
        elif b.scope == "model" and not any(m.startswith(match) for m in models):
            yield Check(name, True, f"no model in the price table starts with {match!r}: "
                                    "check the prefix", warn=True)
        else:
            yield Check(name, True, f"{b.scope} {match} exists")


def _spend_limits(client: AdminClient | None,
                  opened: Callable[[], AbstractContextManager[Store]]) -> Check:
    """Anthropic's spend limits: what the daemon remembers of its last read (an organization
    without access is not asked again every tick), else one read now."""
    name = "spend limits API"
    try:
        with opened() as store:
            caches = Caches(store)
            read = LimitsRead.decode(caches.provider_limits_read())
            stored = caches.provider_limits() if read is not None and read.available else []
    except (GuardError, OSError):
        read, stored = None, []
    if read is not None:
        return _limits_check(name, read, stored)
    if client is None:
        return Check(name, True, "skipped (no admin key)")
    try:
        limits = client.spend_limits()
    except SpendLimitsUnavailable as exc:
        return _limits_check(name, LimitsRead(datetime.now(UTC), False, exc.status, str(exc)),
                             [])
    except UpstreamError as exc:
        return Check(name, True, f"not checked: {exc}", warn=True)
    return _limits_check(name, LimitsRead(datetime.now(UTC), True), limits)


def _limits_check(name: str, read: LimitsRead, limits: list[ProviderLimit]) -> Check:
    when = read.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not read.available:
        return Check(name, True, f"not available to this organization (HTTP {read.status}, "
                                 f"as of {when}; asked again daily): provider_cap_near "
                                 "cannot fire; budget-guard needs it for nothing else")
    counted = [limit for limit in limits if limit.counts]
    shown = ", ".join(limit.describe() for limit in counted[:5]) or "none with an amount"
    return Check(name, True, f"{len(limits)} limits read at {when}: {shown}")


def _store(opened: Callable[[], AbstractContextManager[Store]]) -> Check:
    def probe() -> str:
        with opened() as store:
            watermark = Caches(store).get_meta(WATERMARK)
        return f"reachable, schema in place; usage read through {watermark or 'never'}"
    return _guard("state store", probe)


def _slack(settings: Settings, transport: SlackWebApi | SlackWebhook | None,
           opened: Callable[[], AbstractContextManager[Store]]) -> Iterator[Check]:
    from guard.adapters.slack import SlackWebApi  # noqa: PLC0415  (slack-sdk only when used)

    if transport is None:
        yield Check("slack", True, "not configured: notifications go to the log")
        return
    if isinstance(transport, SlackWebApi):
        yield _guard("slack auth", transport.auth_check)
        channel = settings.slack.channel or ""

        def reach() -> str:
            transport.channel_check(channel)
            return f"{channel} reachable"

        yield _guard("slack channel", reach)
    yield _owed(opened)


def _owed(opened: Callable[[], AbstractContextManager[Store]]) -> Check:
    def probe() -> str:
        with opened() as store:
            outbox = Outbox(store)
            owed, last = outbox.owed(), outbox.last_error()
        failing = [o for o in owed if o.attempts > 0]
        if failing:
            raise GuardError(f"{len(failing)} notifications failing to send; last error: {last}")
        return f"{len(owed)} notifications owed, none failing"
    return _guard("slack deliveries", probe)


def _paths(settings: Settings) -> Iterator[Check]:
    fallback = settings.fallback
    if not fallback.targets:
        for name, path in (("env file", fallback.env_file),
                           ("state file", fallback.state_file)):
            yield _guard(f"fallback {name}", _writable_check(Path(path)))
        return
    for target in fallback.targets:
        for name, key in (("env file", "env_file"), ("state file", "state_file")):
            found = target_path(fallback, target, key)
            if found is not None:
                yield _guard(f"fallback {name} of target {target.name}",
                             _writable_check(found))


def _writable_check(path: Path) -> Callable[[], str]:
    return lambda: _writable(path)


def _writable(path: Path) -> str:
    directory = path.parent
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise OSError(f"{directory} is not writable by this user")
    return f"{path} writable"
