"""The ``guard`` command line; the one composition root that builds real clients."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import httpx
import typer

from guard import __version__
from guard.adapters.admin.client import API_VERSION, AdminClient, RetryPolicy
from guard.adapters.sinks import FileSinks
from guard.adapters.store.engine import Store
from guard.adapters.store.state import Records
from guard.config import Settings, load_settings, render_settings, resolve_config_path
from guard.core.assess import Assessment, assess
from guard.core.ledger import budget_api_keys
from guard.core.pricing import PriceTable
from guard.entry.report import report_json, report_table
from guard.errors import ConfigError, GuardError, StoreError, UpstreamError
from guard.shell import ops
from guard.shell.deliver import LogTransport, PacedTransport
from guard.shell.enforce import EnforcementConfig, Enforcer, KeyDecision
from guard.shell.ports import SlackTransport
from guard.shell.sync import Fetcher
from guard.shell.tick import Tick, TickConfig, TickReport, run_tick

if TYPE_CHECKING:
    from rich.console import Console

EXIT_CONFIG = 2
EXIT_UPSTREAM = 3
T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Keeps Anthropic API spend inside monthly budgets.")
config_app = typer.Typer(no_args_is_help=True, help="Validate or show the configuration.")
app.add_typer(config_app, name="config")
fallback_app = typer.Typer(no_args_is_help=True, help="See, pin or release the model fallback.")
app.add_typer(fallback_app, name="fallback")
keys_app = typer.Typer(no_args_is_help=True, help="Undo the hard stop's key deactivations.")
app.add_typer(keys_app, name="keys")
slack_app = typer.Typer(no_args_is_help=True, help="On-call from Slack.")
app.add_typer(slack_app, name="slack")
silence_app = typer.Typer(no_args_is_help=True, help="Mute a budget's notifications for a while.")
app.add_typer(silence_app, name="silence")


@dataclass(frozen=True, slots=True)
class Options:
    """Global options, resolved once."""

    config_path: Path


ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default: $GUARD_CONFIG, ./guard.toml, "
                     "/etc/budget-guard/guard.toml).")]
AtOption = Annotated[str | None, typer.Option(
    "--at", help="Evaluate as of this RFC 3339 instant; no data after it is requested.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Compute everything, change nothing (no files, no Slack, no keys, "
                      "no state).")]


@app.callback(invoke_without_command=True)
def _global(ctx: typer.Context, config: ConfigOption = None,
            version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
            ) -> None:
    if version:
        typer.echo(f"budget-guard {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    ctx.obj = Options(config_path=resolve_config_path(config, os.environ))


@app.command()
def report(ctx: typer.Context, at: AtOption = None, as_json: JsonOption = False) -> None:
    """Month-to-date spend per budget: billed and estimated, against its limits."""
    options: Options = ctx.obj
    moment = _guarded(lambda: parse_at(at, datetime.now(UTC)))
    settings = _guarded(lambda: load_settings(options.config_path))
    assessment = _guarded(lambda: compute_report(settings, moment))
    if as_json:
        typer.echo(json.dumps(report_json(assessment), indent=2))
    else:
        _console().print(report_table(assessment))


@app.command()
def run(ctx: typer.Context) -> None:
    """The daemon: a tick every poll_interval_s until SIGTERM; SIGHUP reloads the config."""
    from guard.entry.daemon import Daemon, configure_logging  # noqa: PLC0415
    from guard.entry.http import HttpServer, HttpState, build_app  # noqa: PLC0415
    from guard.entry.metrics import Metrics  # noqa: PLC0415

    configure_logging()
    state, metrics = HttpState(), Metrics()

    def observe(report: TickReport | None, seconds: float, at: datetime,
                error: Exception | None) -> None:
        state.update(report, at, error)
        metrics.observe(report, seconds, at, error)

    stores = Stores()
    daemon = _guarded(lambda: Daemon(ctx.obj.config_path,
                                     lambda s: open_tick(s, stores.get(s.state.url)), observe))
    http = daemon.settings.http
    server = HttpServer(build_app(state, metrics, lambda: daemon.settings))
    try:
        server.start(http.host, http.port)
    except OSError as exc:
        _fail(f"error: cannot listen on {http.listen}: {exc.strerror or exc}", EXIT_UPSTREAM)
    listener = _socket_mode(daemon.settings)
    try:
        code = daemon.run()
    finally:
        server.stop()
        stores.close()
        if listener is not None:
            listener.close()
    raise typer.Exit(code)


def _socket_mode(settings: Settings) -> Any:
    """Start on-call from Slack when an app token is configured (else None)."""
    app_token = settings.slack.secret_value("app_token")
    if not app_token:
        return None
    from guard.entry.oncall import OnCall, start_socket_mode  # noqa: PLC0415

    oncall = OnCall(settings, transport_for(settings), lambda: datetime.now(UTC))
    try:
        return start_socket_mode(app_token, oncall)
    except GuardError as exc:
        logging.getLogger("guard.entry.daemon").error("Socket Mode not started: %s", exc)
        return None


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the admin key, Slack, the state store and the fallback paths; exit 1 on a failure."""
    from guard.entry.doctor import Check, checks  # noqa: PLC0415

    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    found: list[Check] = []
    if settings.admin_api_key_value():
        with open_fetcher(settings) as fetcher:
            found += checks(settings, fetcher.client, settings.state.url)
    else:
        found += checks(settings, None, settings.state.url)
    for item in found:
        typer.echo(item.line())
    if not all(item.ok for item in found):
        raise typer.Exit(1)


@app.command()
def check(ctx: typer.Context, at: AtOption = None, dry_run: DryRunOption = False,
          as_json: JsonOption = False) -> None:
    """Exactly one tick, as the daemon runs it: fetch, decide, fallback, notify, record."""
    options: Options = ctx.obj
    moment = _guarded(lambda: parse_at(at, datetime.now(UTC)))
    settings = _guarded(lambda: load_settings(options.config_path))

    def one() -> TickReport:
        with open_tick(settings) as tick:
            return run_tick(tick, moment, dry_run=dry_run)

    result = _guarded(one)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        _console().print(report_table(result.assessment))
        typer.echo(f"fallback: {result.fallback.tier} ({result.fallback.model}, "
                   f"{result.fallback.source}){' changed' if result.changed else ''}"
                   f"{' [dry run]' if dry_run else ''}")
    if result.upstream_error:
        _fail(f"error: {result.upstream_error} (decided on stored data)", EXIT_UPSTREAM)


@fallback_app.command("status")
def fallback_status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The fallback in force, why, and any on-call pin."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    status = _guarded(lambda: ops.fallback_status(settings, datetime.now(UTC)))
    typer.echo(json.dumps(status, indent=2) if as_json else ops.describe_status(status))


@fallback_app.command("pin")
def fallback_pin(ctx: typer.Context,
                 tier: Annotated[str, typer.Argument(help="Tier to hold, e.g. sonnet.")],
                 duration: Annotated[str, typer.Option("--for", help="How long: 30m, 4h, 2d.")],
                 reason: Annotated[str, typer.Option(help="Why (written to the audit log).")],
                 dry_run: DryRunOption = False) -> None:
    """Hold the fallback at TIER, above or below what policy wants, until it expires."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    now = datetime.now(UTC)
    pin = _guarded(lambda: ops.pin(settings, tier, duration, reason=reason, who=ops.caller(),
                                   now=now, dry_run=dry_run))
    typer.echo(f"pinned to {pin.tier} until {pin.expires_at:%Y-%m-%dT%H:%M:%SZ}"
               f"{' [dry run]' if dry_run else ''}; the next tick applies it")


@fallback_app.command("release")
def fallback_release(ctx: typer.Context,
                     reason: Annotated[str, typer.Option(help="Why.")] = "released",
                     dry_run: DryRunOption = False) -> None:
    """Remove the on-call pin; policy decides again from the next tick."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    released = _guarded(lambda: ops.release(settings, reason=reason, who=ops.caller(),
                                            now=datetime.now(UTC), dry_run=dry_run))
    typer.echo(("released the pin on " + released.tier if released else "no pin to release")
               + (" [dry run]" if dry_run else ""))


@keys_app.command("restore")
def keys_restore(ctx: typer.Context, dry_run: DryRunOption = False) -> None:
    """Reactivate every key the hard stop deactivated, to its prior status."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))

    def restore() -> list[KeyDecision]:
        with open_tick(settings) as tick:
            assert tick.enforcer is not None
            return tick.enforcer.restore(datetime.now(UTC), "guard keys restore",
                                         who=ops.caller(), dry_run=dry_run)

    decisions = _guarded(restore)
    for d in decisions:
        state = "would restore" if d.dry_run else "restored" if d.done else f"failed: {d.error}"
        typer.echo(f"{d.key_id} ({d.budget}): {state} to {d.prior_status}")
    if not decisions:
        typer.echo("no deactivated keys to restore")
    if any(not d.done and not d.dry_run for d in decisions):
        raise typer.Exit(EXIT_UPSTREAM)


@silence_app.command("add")
def silence_add(ctx: typer.Context,
                budget: Annotated[str, typer.Option(help="Budget name.")],
                duration: Annotated[str, typer.Option("--for", help="How long: 30m, 4h, 2d.")],
                reason: Annotated[str, typer.Option(help="Why (written to the audit log).")],
                condition: Annotated[str | None, typer.Option(
                    help="Only this condition (default: all of the budget's).")] = None,
                dry_run: DryRunOption = False) -> None:
    """Send nothing for a budget (state and the fallback still follow policy)."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    made = _guarded(lambda: ops.silence_add(settings, budget, condition, duration,
                                            reason=reason, who=ops.caller(),
                                            now=datetime.now(UTC), dry_run=dry_run))
    typer.echo(f"silence {made.id}: {made.budget}:{made.condition or '*'} until "
               f"{made.ends_at:%Y-%m-%dT%H:%M:%SZ}{' [dry run]' if dry_run else ''}")


@silence_app.command("list")
def silence_list(ctx: typer.Context, every: Annotated[bool, typer.Option(
        "--all", help="Include expired silences.")] = False) -> None:
    """The active silences (or all)."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    found = _guarded(lambda: ops.silence_list(settings, datetime.now(UTC), every))
    for s in found:
        typer.echo(f"{s.id}\t{s.budget}:{s.condition or '*'}\tuntil "
                   f"{s.ends_at:%Y-%m-%dT%H:%M:%SZ}\tby {s.who}: {s.reason}")
    if not found:
        typer.echo("no silences")


@silence_app.command("expire")
def silence_expire(ctx: typer.Context,
                   silence_id: Annotated[int, typer.Argument(help="Silence id.")]) -> None:
    """End a silence now."""
    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    ended = _guarded(lambda: ops.silence_expire(settings, silence_id, who=ops.caller(),
                                                now=datetime.now(UTC)))
    if not ended:
        _fail(f"no active silence {silence_id}", EXIT_CONFIG)
    typer.echo(f"silence {silence_id} expired")


@slack_app.command("listen")
def slack_listen(ctx: typer.Context) -> None:
    """Answer on-call buttons and /budget through Socket Mode until SIGTERM or Ctrl-C."""
    from guard.entry.oncall import OnCall, start_socket_mode  # noqa: PLC0415

    settings = _guarded(lambda: load_settings(ctx.obj.config_path))
    app_token = settings.slack.secret_value("app_token")
    if not app_token:
        _fail("invalid configuration:\n  slack.app_token: required for Socket Mode",
              EXIT_CONFIG)
    oncall = OnCall(settings, transport_for(settings), lambda: datetime.now(UTC))
    client = _guarded(lambda: start_socket_mode(app_token, oncall))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(f"listening for on-call actions as {len(settings.slack.oncall_user_ids)} "
               "allowed users; Ctrl-C to stop", err=True)
    stop.wait()
    client.close()


@config_app.command("validate")
def config_validate(ctx: typer.Context,
                    path: Annotated[Path | None, typer.Argument(help="Config file.")] = None,
                    ) -> None:
    """Check a config file; print each problem with its field path (exit 2 if any)."""
    options: Options = ctx.obj
    target = path or options.config_path
    settings = _guarded(lambda: load_settings(target))
    typer.echo(f"{target}: ok ({len(settings.budgets)} budgets)")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    options: Options = ctx.obj
    settings = _guarded(lambda: load_settings(options.config_path))
    typer.echo(render_settings(settings), nl=False)


@app.command()
def demo(ctx: typer.Context,
         seed: Annotated[int, typer.Option(help="Seed of the simulated organization.")] = 7,
         month: Annotated[str, typer.Option(help="Month to simulate, YYYY-MM.")] = "2026-03",
         step_hours: Annotated[int, typer.Option(help="Simulated hours between ticks.")] = 2,
         scenario: Annotated[str, typer.Option(
             help="steady, spike, runaway or breach.")] = "breach",
         ) -> None:
    """A simulated month through the real tick, with the fallback flipping under demo-out/."""
    from guard.entry.demo import run_demo  # noqa: PLC0415  (the simulator loads only when asked for)

    transport, channel = None, ""
    if ctx.obj.config_path.exists():
        settings = _guarded(lambda: load_settings(ctx.obj.config_path))
        if settings.slack.secret_value("bot_token") or settings.slack.secret_value(
                "webhook_url"):
            transport, channel = transport_for(settings), settings.slack.channel or ""
    _guarded(lambda: run_demo(seed=seed, month=month, step_hours=step_hours,
                              console=_console(), scenario=scenario, transport=transport,
                              channel=channel))


@app.command()
def backtest(
    ctx: typer.Context,
    *,
    orgs: Annotated[int, typer.Option(min=1, help="Synthetic organizations to replay.")] = 200,
    months: Annotated[int, typer.Option(min=3, help="Months per synthetic organization.")] = 13,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic organizations.")] = 1,
    history: Annotated[Path | None, typer.Option(
        help="Replay this daily cost history (CSV or JSON) instead of synthetic ones.")] = None,
    export: Annotated[Path | None, typer.Option(
        help="Write the organization's daily cost history (CSV) here, from the Admin API.")
    ] = None,
    since: Annotated[str | None, typer.Option(
        help="First day to export, YYYY-MM-DD (default: 13 months back).")] = None,
    runaway_orgs: Annotated[int, typer.Option(
        min=0, help="Synthetic organizations for the minute-level runaway replay.")] = 30,
) -> None:
    """Replay the forecast over past months and score it against the naive run rate."""
    from guard.backtest import (  # noqa: PLC0415  (the backtest loads only when asked for)
        alerts_table,
        backtest_table,
        command,
        export_history,
        runaway_table,
    )

    if export is None:
        result, alerts = _guarded(lambda: command.run_backtest(
            orgs=orgs, months=months, seed=seed, history=history))
        _console().print(backtest_table(result))
        _console().print(alerts_table(alerts))
        if history is None and runaway_orgs:
            _console().print(runaway_table(command.run_runaway(runaway_orgs, seed),
                                           runaway_orgs))
        return
    options: Options = ctx.obj
    today = datetime.now(UTC).date()
    first = _guarded(lambda: command.export_start(since, today))
    settings = _guarded(lambda: load_settings(options.config_path))

    def write() -> int:
        with open_fetcher(settings) as fetcher:
            return export_history(fetcher.client, first, today, export, "--export")

    typer.echo(f"{export}: {_guarded(write)} days from {first} to before {today}")


def compute_report(settings: Settings, at: datetime) -> Assessment:
    """Refresh the caches as of ``at`` and assess every budget (no alert state, no delay)."""
    budgets = settings.budget_models()
    with open_fetcher(settings) as fetcher:
        snapshot = fetcher.refresh(at, budget_api_keys(budgets))
    policy = replace(settings.policy_config(), raise_after=timedelta(0))
    return assess(budgets, snapshot, policy=policy,
                  lag=timedelta(minutes=settings.policy.usage_lag_minutes))


@contextmanager
def open_fetcher(settings: Settings, store: Store | None = None) -> Iterator[Fetcher]:
    """A ``Fetcher`` wired to the real Admin API client and the store of ``settings``.

    A ``store`` passed in (the daemon keeps one for its lifetime) is used and left open.
    """
    key = settings.admin_api_key_value()
    if not key:
        raise ConfigError([("anthropic.admin_api_key",
                            "required: set admin_api_key or admin_api_key_file")])
    cfg = settings.anthropic
    owned = store is None
    store = store or Store.connect(settings.state.url)
    http = httpx.Client(base_url=str(cfg.base_url), timeout=cfg.timeout_s, headers={
        "x-api-key": key, "anthropic-version": API_VERSION,
        "user-agent": f"budget-guard/{__version__}"})
    retry = RetryPolicy(attempts=cfg.max_retries + 1, max_wait_s=cfg.max_retry_wait_s)
    try:
        yield Fetcher(AdminClient(http, retry=retry), store,
                      PriceTable.load(settings.pricing))
    finally:
        http.close()
        if owned:
            store.close()


class Stores:
    """One open store per state URL, kept across ticks (the daemon's)."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.store: Store | None = None

    def get(self, url: str) -> Store:
        """The store for ``url``, reopened only when the URL changes (a reload)."""
        if self.store is None or url != self.url:
            self.close()
            self.store, self.url = Store.connect(url), url
        return self.store

    def close(self) -> None:
        """Close the open store, if any."""
        if self.store is not None:
            self.store.close()
            self.store = None


def _console() -> Console:
    """A console for stdout; wide enough for the table when piped or captured."""
    from rich.console import Console  # noqa: PLC0415  (rich loads only for terminal output)

    return Console() if sys.stdout.isatty() else Console(width=160)


@contextmanager
def open_tick(settings: Settings, store: Store | None = None) -> Iterator[Tick]:
    """A ``Tick`` wired to the real client, store, sinks and notification transport."""
    with open_fetcher(settings, store) as fetcher:
        records = Records(fetcher.store)
        e = settings.enforcement
        enforcer = Enforcer(fetcher.client, records, EnforcementConfig(
            e.enabled, e.dry_run, e.deactivate_keys_at_pct, frozenset(e.never_deactivate)))
        config = TickConfig(settings.budget_models(), settings.policy_config(),
                            timedelta(minutes=settings.policy.usage_lag_minutes),
                            dict(settings.fallback.models),
                            digest_hour=settings.slack.digest_hour_utc)
        yield Tick(fetcher, records, FileSinks.from_settings(settings.fallback),
                   transport_for(settings), config, enforcer,
                   channel=settings.slack.channel or "")


def transport_for(settings: Settings) -> SlackTransport:
    """Slack's Web API with a bot token, else a webhook, else the log."""
    from guard.adapters.slack import from_settings  # noqa: PLC0415  (slack-sdk only when used)

    slack = from_settings(settings.slack)
    return PacedTransport(slack) if slack is not None else LogTransport()


def parse_at(raw: str | None, now: datetime) -> datetime:
    """``--at`` as an aware UTC datetime; ``now`` when absent."""
    if raw is None:
        return now
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError([("--at", f"not an RFC 3339 timestamp: {raw!r}")]) from None
    if moment.tzinfo is None:
        raise ConfigError([("--at", f"{raw!r} has no time zone (add Z or an offset)")])
    return moment.astimezone(UTC)


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a known error becomes a clear message and its exit code."""
    try:
        return action()
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except (UpstreamError, StoreError) as exc:
        _fail(f"error: {exc}", EXIT_UPSTREAM)
    except GuardError as exc:
        _fail(f"error: {exc}", 1)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    app()
