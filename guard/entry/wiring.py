"""The one composition root: every real part (engine, HTTP and Slack clients, sinks) is built here.

``Guard`` is everything a tick needs, built once per settings generation: the daemon keeps one
until a SIGHUP brings new settings, ``guard check`` builds one for its single tick. The state
store can outlive a generation (``Stores``), so a reload that keeps ``state.url`` keeps its
connection pool. Nothing else in ``guard/`` constructs an engine or a client, but
``stores``, the store's part, which commands that need only the store (``guard fallback
status``) import without the clients' libraries.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import sqlalchemy as sa

from guard import __version__
from guard.adapters.admin.client import API_VERSION, AdminClient, RetryPolicy
from guard.adapters.chat import Labelled, LogTransport, PacedTransport
from guard.adapters.journal import Journal
from guard.adapters.sinks import FileSinks
from guard.adapters.store.caches import Caches
from guard.adapters.store.engine import Store
from guard.adapters.store.lease import Lease
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.silences import Silences
from guard.adapters.store.state import Records
from guard.config import Settings
from guard.config.sections import FallbackSettings, SlackSettings, target_path
from guard.core.decide import TickConfig
from guard.core.keys import EnforcementConfig
from guard.core.ledger import budget_workspaces
from guard.core.plausible import bounds_of
from guard.core.pricing import PriceTable
from guard.core.summary import TickReport
from guard.core.targets import DEFAULT_TARGET
from guard.entry import stores
from guard.errors import ConfigError, StoreError
from guard.shell.degraded import Degraded, run_degraded
from guard.shell.enforce import Enforcer
from guard.shell.limits import wants_limits
from guard.shell.ops import Ops
from guard.shell.ports import Fetch, LeasePort, SinkPort, SlackTransport
from guard.shell.sync import Fetcher
from guard.shell.tick import Tick

if TYPE_CHECKING:
    from slack_sdk.socket_mode import SocketModeClient

    from guard.adapters.slack import SlackWebApi, SlackWebhook
    from guard.config.organizations import Organization

SLACK_TIMEOUT_S = 10
SLACK_RETRIES = 2


# --- the state store (built in guard.entry.stores) -------------------------------------------

connect_store = stores.connect_store
opened_store = stores.opened_store
memory_store = stores.memory_store
Stores = stores.Stores
ops = stores.ops


def journal_paths(settings: Settings, organization: str | None = None) -> tuple[Path, ...]:
    """Where the journal of ticks without the store goes: ``state.journal_file``, else next
    to a SQLite file; then, in case that directory is the one failing, the temporary one
    (one per organization of several)."""
    named = f"|{organization}" if organization else ""
    key = hashlib.sha256(f"{settings.state.url}|{settings.state.instance}{named}".encode())
    spare = Path(tempfile.gettempdir()) / f"budget-guard-{key.hexdigest()[:10]}.journal"
    first = settings.state.journal_file
    if first is None:
        url = sa.engine.make_url(settings.state.url)
        database = url.database or ""
        if url.get_backend_name() == "sqlite" and database and database != ":memory:" \
                and not database.startswith("file:"):
            first = Path(f"{database}.journal")
    return (first, spare) if first is not None and first != spare else (spare,)


# --- the Admin API ---------------------------------------------------------------------------


def admin_http(base_url: str, key: str, timeout_s: float = 30) -> httpx.Client:
    """The HTTP client every Admin API request goes through."""
    return httpx.Client(base_url=base_url, timeout=timeout_s, headers={
        "x-api-key": key, "anthropic-version": API_VERSION,
        "user-agent": f"budget-guard/{__version__}"})


def admin_client(settings: Settings, http: httpx.Client | None = None) -> AdminClient:
    """The Admin API client of ``settings`` (close it with ``client.http.close()``)."""
    cfg = settings.anthropic
    http = http or admin_http(str(cfg.base_url), admin_key(settings), cfg.timeout_s)
    return AdminClient(http, retry=RetryPolicy(attempts=cfg.max_retries + 1,
                                               max_wait_s=cfg.max_retry_wait_s),
                       wall=wall_clock)


def admin_at(base_url: str, key: str) -> AdminClient:
    """An Admin API client for ``base_url`` with the default retries (the demo's simulator)."""
    return AdminClient(admin_http(base_url, key), wall=wall_clock)



def admin_key(settings: Settings) -> str:
    """The admin key, or the config error that says it is missing."""
    key = settings.admin_api_key_value()
    if not key:
        raise ConfigError([("anthropic.admin_api_key",
                            "required: set admin_api_key or admin_api_key_file")])
    return key


# --- Slack -----------------------------------------------------------------------------------


def slack_web_api(token: str, *, base_url: str = "https://slack.com/api/",
                  timeout: int = SLACK_TIMEOUT_S, retries: int = SLACK_RETRIES,
                  max_retry_after: float = 30.0) -> SlackWebApi:
    """Bot-token Slack over slack-sdk's urllib client, with the guard's retry handlers."""
    from slack_sdk import WebClient  # noqa: PLC0415  (slack-sdk loads only when used)

    from guard.adapters.slack import SDK_LOG, SlackWebApi, retry_handlers  # noqa: PLC0415

    return SlackWebApi(token, WebClient(token=token, base_url=base_url, timeout=timeout,
                                        logger=SDK_LOG,
                                        retry_handlers=retry_handlers(retries, max_retry_after)))


def slack_webhook(url: str, *, timeout: int = SLACK_TIMEOUT_S, retries: int = SLACK_RETRIES,
                  max_retry_after: float = 30.0) -> SlackWebhook:
    """Post-only Slack through an incoming webhook."""
    from slack_sdk.webhook import WebhookClient  # noqa: PLC0415

    from guard.adapters.slack import SDK_LOG, SlackWebhook, retry_handlers  # noqa: PLC0415

    return SlackWebhook(url, WebhookClient(url, timeout=timeout, logger=SDK_LOG,
                                           retry_handlers=retry_handlers(retries,
                                                                         max_retry_after)))


def slack(settings: SlackSettings) -> SlackWebApi | SlackWebhook | None:
    """The transport ``[slack]`` configures: the bot token if set, else the webhook, else None."""
    if (token := settings.secret_value("bot_token")) is not None:
        return slack_web_api(token, base_url=settings.base_url)
    if (url := settings.secret_value("webhook_url")) is not None:
        return slack_webhook(url)
    return None


def transport_for(settings: Settings) -> SlackTransport:
    """Slack's Web API with a bot token, else a webhook (both paced), else the log."""
    configured = slack(settings.slack)
    return PacedTransport(configured) if configured is not None else LogTransport()


def socket_mode_client(app_token: str,
                       base_url: str = "https://slack.com/api/") -> SocketModeClient:
    """A Socket Mode client for an app-level token (``xapp-…``); not yet connected."""
    from slack_sdk import WebClient  # noqa: PLC0415
    from slack_sdk.socket_mode import SocketModeClient  # noqa: PLC0415

    from guard.entry.oncall import SDK_LOG  # noqa: PLC0415

    if not app_token.startswith("xapp-"):
        raise ConfigError([("slack.app_token",
                            "not an app-level token (xapp-…) with connections:write")])
    return SocketModeClient(app_token=app_token, logger=SDK_LOG,
                            web_client=WebClient(base_url=base_url, logger=SDK_LOG))


# --- the fallback sinks and the tick ---------------------------------------------------------


def file_sinks(fallback: FallbackSettings) -> FileSinks:
    """The sinks of a ``[fallback]`` section's first target (its own files without
    ``[[fallback.targets]]``)."""
    return target_sinks(fallback)[DEFAULT_TARGET if not fallback.targets
                                  else fallback.targets[0].name]


def target_sinks(fallback: FallbackSettings) -> dict[str, FileSinks]:
    """Every target's sinks, in order: ``default`` of ``[fallback]``'s own files without
    ``[[fallback.targets]]``."""
    if not fallback.targets:
        return {DEFAULT_TARGET: FileSinks(
            fallback.env_file, fallback.state_file, fallback.model_var,
            fallback.reload_command, env_mode=fallback.file_mode,
            claude_code=fallback.claude_code,
            claude_code_settings=fallback.claude_code_settings)}
    return {t.name: FileSinks(
        target_path(fallback, t, "env_file"), target_path(fallback, t, "state_file"),
        fallback.model_var,
        fallback.reload_command if t.reload_command is None else t.reload_command,
        env_mode=fallback.file_mode, claude_code=fallback.claude_code,
        claude_code_settings=t.claude_code_settings) for t in fallback.targets}


def tick_config(settings: Settings) -> TickConfig:
    """What a tick needs from ``settings``."""
    e = settings.enforcement
    return TickConfig(settings.budget_models(), settings.policy_config(),
                      timedelta(minutes=settings.policy.usage_lag_minutes),
                      dict(settings.fallback.models), digest_hour=settings.slack.digest_hour_utc,
                      lease_ttl=timedelta(seconds=settings.state.lease_ttl_s),
                      enforcement=EnforcementConfig(e.enabled, e.dry_run,
                                                    e.deactivate_keys_at_pct,
                                                    frozenset(e.never_deactivate),
                                                    e.method, e.fallback_to_keys),
                      targets=settings.fallback.core_targets())


def holder() -> str:
    """Who this process is, for the leader lease and outbox claims: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def daemon_holder(settings: Settings) -> str:
    """The daemon's identity: ``host:daemon:<state>``, the same after a restart.

    A daemon restarted on the same host over the same state store (a crash, a deploy) is the
    holder its predecessor was, so it acts on its first tick instead of standing by until
    the dead process's lease expires. ``state.instance`` tells replicas on one host apart
    (``host:daemon:<state>:<instance>``).
    """
    state = hashlib.sha256(settings.state.url.encode()).hexdigest()[:10]
    instance = f":{settings.state.instance}" if settings.state.instance else ""
    return f"{socket.gethostname()}:daemon:{state}{instance}"


def tick_for(admin: AdminClient, store: Store, config: TickConfig, *, prices: PriceTable,
             sinks: SinkPort, transport: SlackTransport, channel: str = "",
             source: str = "auto", deadline_s: float | None = None,
             lease: LeasePort | None = None) -> Tick:
    """A tick on real parts: the Admin API, the store's parts, the sinks and Slack; the
    leader lease is ``store``'s unless another is given (an organization's of several)."""
    records = Records(store)
    fetcher = Fetcher(admin, Caches(store), prices, source=source,
                      workspaces=budget_workspaces(config.budgets),
                      bounds=bounds_of(config.budgets), deadline_s=deadline_s,
                      limits=wants_limits(config.budgets))
    return Tick(fetcher, records, Outbox(store), Silences(store), lease or Lease(store), sinks,
                transport, config,
                Enforcer(admin, records, config.enforcement), channel=channel, holder=holder())


@dataclass
class Guard:
    """Every part of one settings generation; ``close`` releases what it opened."""

    settings: Settings
    store: Store
    admin: AdminClient
    tick: Tick
    owns_store: bool = False
    organization: str | None = None
    """The organization's name when it is one of several (``[[organizations]]``)."""
    leases: Lease | None = None
    """Every organization's leases (the shared store's table), for a replica's split."""
    ops: Ops = field(init=False)

    def __post_init__(self) -> None:
        self.ops = ops(self.settings, self.store)

    @property
    def enforcer(self) -> Enforcer:
        """The hard stop's effects (every tick built here has one)."""
        assert self.tick.enforcer is not None
        return self.tick.enforcer

    def close(self) -> None:
        """Close the HTTP client, and the store if this generation opened it."""
        self.admin.http.close()
        if self.owns_store:
            self.store.close()


def build(settings: Settings, store: Store | None = None,
          transport: SlackTransport | None = None, channel: str | None = None,
          http: httpx.Client | None = None, *, lease: LeasePort | None = None,
          organization: str | None = None) -> Guard:
    """The parts of a tick for ``settings``; ``store``, ``transport``, ``http`` and the
    leader ``lease`` may be given. With an ``organization`` (one of several), its Slack
    messages are labelled with the name and its journal is its own.

    Raises ``ConfigError`` without an admin key and ``StoreError`` when the store cannot be
    opened (closing whatever was already opened).
    """
    admin = admin_client(settings, http)
    try:
        owned = store is None
        store = store or connect_store(settings.state.url)
    except StoreError:
        admin.http.close()
        raise
    config = tick_config(settings)
    transport = _labelled(transport or transport_for(settings), organization)
    (_, first), *more = target_sinks(settings.fallback).items()
    tick = tick_for(admin, store, config, prices=PriceTable.load(settings.pricing),
                    sinks=first, transport=transport,
                    channel=(settings.slack.channel or "") if channel is None else channel,
                    source=settings.anthropic.source,
                    deadline_s=settings.anthropic.tick_deadline_s, lease=lease)
    tick.clock = wall_clock
    tick.more_sinks = dict(more)
    tick.degraded = degraded(settings, admin, tick.sinks, tick.transport, tick.channel,
                             organization=organization)
    tick.degraded.more_sinks = tick.more_sinks
    return Guard(settings, store, admin, tick, owns_store=owned, organization=organization)


def build_organization(org: Organization, stores: Stores) -> Guard:
    """The parts of a tick for ``org``: its own store (``Stores.organization``), its leader
    lease among every organization's in the shared store's leases table (``leader:<name>``;
    ``default``'s is ``leader``), and, as one of several, its name on its messages and
    its report."""
    shared = stores.get(org.shared_url)
    guard = build(org.settings, stores.organization(org), lease=organization_lease(shared, org),
                  organization=org.name if org.several else None)
    guard.leases = Lease(shared)
    return guard


def organization_lease(shared: Store, org: Organization) -> Lease:
    """``org``'s leader lease in the leases table of the ``shared`` store."""
    return Lease(shared, None if org.default else org.name)


def without_store(settings: Settings, at: datetime, cause: StoreError,
                  dry_run: bool = False, organization: str | None = None) -> TickReport:
    """One tick of ``guard check`` whose store cannot be opened (``run_degraded``)."""
    admin = admin_client(settings)
    try:
        return run_degraded(degraded(settings, admin, organization=organization), at, cause,
                            dry_run)
    finally:
        admin.http.close()


def degraded(settings: Settings, admin: AdminClient, sinks: SinkPort | None = None,
             transport: SlackTransport | None = None, channel: str | None = None, *,
             organization: str | None = None) -> Degraded:
    """The parts of a tick without its store: the Admin API into caches in memory, the
    sinks, Slack and the local journal."""
    config = tick_config(settings)
    prices = PriceTable.load(settings.pricing)

    def fetcher() -> Fetch:
        return Fetcher(admin, Caches(memory_store()), prices, source=settings.anthropic.source,
                       workspaces=budget_workspaces(config.budgets),
                       bounds=bounds_of(config.budgets),
                       deadline_s=settings.anthropic.tick_deadline_s,
                       limits=wants_limits(config.budgets))

    (_, first), *more = target_sinks(settings.fallback).items()
    return Degraded(fetcher, sinks or first,
                    transport or _labelled(transport_for(settings), organization),
                    Journal(journal_paths(settings, organization)),
                    config, (settings.slack.channel or "") if channel is None else channel,
                    holder(), more_sinks=dict(more))


def _labelled(transport: SlackTransport, organization: str | None) -> SlackTransport:
    return transport if organization is None else Labelled(transport, organization)


def wall_clock() -> datetime:
    """Now, in UTC: what leases are kept by."""
    return datetime.now(UTC)


@contextmanager
def opened(settings: Settings, store: Store | None = None) -> Iterator[Guard]:
    """``build(settings, store)`` for one command, closed afterwards."""
    guard = build(settings, store)
    try:
        yield guard
    finally:
        guard.close()

