"""On-call commands: ``guard fallback``, ``guard silence``, ``guard keys``, ``guard slack``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated

import typer

from guard.config import Settings, load_settings
from guard.core.keys import NO_LIMIT, SPEND_LIMIT, KeyDecision
from guard.core.targets import DEFAULT_TARGET
from guard.entry import wiring
from guard.entry.common import EXIT_CONFIG, EXIT_UPSTREAM
from guard.entry.status import status_text
from guard.entry.terminal import (
    DryRunOption,
    JsonOption,
    caller,
    dry,
    fail,
    guarded,
    now,
)
from guard.errors import ConfigError, InvalidInput
from guard.shell.ops import check_reason, parse_duration

fallback_app = typer.Typer(no_args_is_help=True, help="See, pin or release the model fallback.")
keys_app = typer.Typer(no_args_is_help=True, help="Undo the hard stop's key deactivations.")
slack_app = typer.Typer(no_args_is_help=True, help="On-call from Slack.")
silence_app = typer.Typer(no_args_is_help=True, help="Mute a budget's notifications for a while.")

DurationOption = Annotated[str, typer.Option("--for", help="How long: 30m, 4h, 2d.")]
TargetOption = Annotated[str | None, typer.Option(
    "--target", help="The fallback target (default: the first; see fallback status).")]


@fallback_app.command("status")
def fallback_status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The fallback in force, why, and any on-call pin."""
    typer.echo(guarded(lambda: status_text(ctx.obj.config_path, as_json)))


@fallback_app.command("pin")
def fallback_pin(ctx: typer.Context,
                 tier: Annotated[str, typer.Argument(help="Tier to hold, e.g. sonnet.")],
                 duration: DurationOption,
                 reason: Annotated[str, typer.Option(help="Why (written to the audit log).")],
                 dry_run: DryRunOption = False, target: TargetOption = None) -> None:
    """Hold a target's fallback at TIER, above or below what policy wants, until it
    expires; other targets are left as they are."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))
    guarded(lambda: check_pin(settings, tier, duration, reason, target))  # before the store

    def pin() -> str:
        with wiring.opened_store(settings.state.url) as store:
            made = wiring.ops(settings, store).pin(tier, duration, reason=reason, who=caller(),
                                                   now=now(), dry_run=dry_run, target=target)
        on = f" on target {target}" if target else ""
        return f"pinned{on} to {made.tier} until {made.expires_at:%Y-%m-%dT%H:%M:%SZ}"

    typer.echo(f"{guarded(pin)}{dry(dry_run)}; the next tick applies it")


def check_pin(settings: Settings, tier: str, duration: str, reason: str,
              target: str | None = None) -> None:
    """Refuse a bad pin before anything is opened, so bad input writes nothing."""
    problems = []
    targets = {t.name: t for t in settings.fallback.core_targets()}
    chosen = targets.get(target) if target is not None else next(iter(targets.values()), None)
    if target is not None and chosen is None and (targets or target != DEFAULT_TARGET):
        problems.append(("--target", f"{target!r} is not a fallback target "
                                     f"{list(targets) or [DEFAULT_TARGET]}"))
    chain = list(chosen.chain) if chosen is not None else list(settings.fallback.chain)
    if tier not in chain:
        where = f"target {chosen.name}'s chain" if chosen is not None else "fallback.chain"
        problems.append(("TIER", f"{tier!r} is not in {where} {chain}"))
    problems += _problems(check_reason, reason) + _problems(parse_duration, duration)
    if problems:
        raise InvalidInput(problems)


def _problems(check: Callable[[str], object], value: str) -> list[tuple[str, str]]:
    """What ``check`` finds wrong with ``value`` (none: it passed)."""
    try:
        check(value)
    except ConfigError as exc:
        return exc.problems
    return []


@fallback_app.command("release")
def fallback_release(ctx: typer.Context,
                     reason: Annotated[str, typer.Option(help="Why.")] = "released",
                     dry_run: DryRunOption = False, target: TargetOption = None) -> None:
    """Remove a target's on-call pin; policy decides it again from the next tick."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))

    def release() -> str:
        with wiring.opened_store(settings.state.url) as store:
            released = wiring.ops(settings, store).release(reason=reason, who=caller(),
                                                           now=now(), dry_run=dry_run,
                                                           target=target)
        on = f" of target {target}" if target else ""
        return (f"released the pin{on} on {released.tier}" if released
                else f"no pin{on} to release")

    typer.echo(guarded(release) + dry(dry_run))


@keys_app.command("restore")
def keys_restore(ctx: typer.Context, dry_run: DryRunOption = False) -> None:
    """Reactivate every key the hard stop deactivated, to its prior status."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))

    def restore() -> list[KeyDecision]:
        with wiring.opened(settings) as guard:
            return guard.enforcer.restore_all(now(), "guard keys restore", who=caller(),
                                              dry_run=dry_run)

    decisions = guarded(restore)
    for d in decisions:
        state = "would restore" if d.dry_run else "restored" if d.done else f"failed: {d.error}"
        typer.echo(f"{_subject(d)} ({d.budget}): {state} to {_prior(d)}")
    if not decisions:
        typer.echo("no deactivated keys to restore")
    if any(not d.done and not d.dry_run for d in decisions):
        raise typer.Exit(EXIT_UPSTREAM)


def _subject(d: KeyDecision) -> str:
    if d.key_id.startswith(SPEND_LIMIT):
        return f"workspace {d.key_id.removeprefix(SPEND_LIMIT)}'s Anthropic spend limit"
    return d.key_id


def _prior(d: KeyDecision) -> str:
    if not d.key_id.startswith(SPEND_LIMIT):
        return d.prior_status
    if d.prior_status == NO_LIMIT:
        return "no limit of its own"
    return f"${Decimal(d.prior_status) / 100:,.2f}" if d.prior_status.isdigit() \
        else d.prior_status


@silence_app.command("add")
def silence_add(ctx: typer.Context,
                budget: Annotated[str, typer.Option(help="Budget name.")],
                duration: DurationOption,
                reason: Annotated[str, typer.Option(help="Why (written to the audit log).")],
                condition: Annotated[str | None, typer.Option(
                    help="Only this condition (default: all of the budget's).")] = None,
                dry_run: DryRunOption = False) -> None:
    """Send nothing for a budget (state and the fallback still follow policy)."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))

    def add() -> str:
        with wiring.opened_store(settings.state.url) as store:
            made = wiring.ops(settings, store).silence_add(
                budget, condition, duration, reason=reason, who=caller(), now=now(),
                dry_run=dry_run)
        return (f"silence {made.id}: {made.budget}:{made.condition or '*'} until "
                f"{made.ends_at:%Y-%m-%dT%H:%M:%SZ}")

    typer.echo(guarded(add) + dry(dry_run))


@silence_app.command("list")
def silence_list(ctx: typer.Context, every: Annotated[bool, typer.Option(
        "--all", help="Include expired silences.")] = False) -> None:
    """The active silences (or all)."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))

    def listed() -> list[str]:
        with wiring.opened_store(settings.state.url) as store:
            found = wiring.ops(settings, store).silence_list(now(), every)
        return [f"{s.id}\t{s.budget}:{s.condition or '*'}\tuntil "
                f"{s.ends_at:%Y-%m-%dT%H:%M:%SZ}\tby {s.who}: {s.reason}" for s in found]

    typer.echo("\n".join(guarded(listed)) or "no silences")


@silence_app.command("expire")
def silence_expire(ctx: typer.Context,
                   silence_id: Annotated[int, typer.Argument(help="Silence id.")]) -> None:
    """End a silence now."""
    settings = guarded(lambda: load_settings(ctx.obj.config_path))

    def expire() -> bool:
        with wiring.opened_store(settings.state.url) as store:
            return wiring.ops(settings, store).silence_expire(silence_id, who=caller(),
                                                              now=now())

    if not guarded(expire):
        fail(f"no active silence {silence_id}", EXIT_CONFIG)
    typer.echo(f"silence {silence_id} expired")


@slack_app.command("listen")
def slack_listen(ctx: typer.Context) -> None:
    """Answer on-call buttons and /budget through Socket Mode until SIGTERM or Ctrl-C."""
    from guard.entry.oncall import OnCall, start_socket_mode  # noqa: PLC0415

    settings = guarded(lambda: load_settings(ctx.obj.config_path))
    app_token = settings.slack.secret_value("app_token")
    if not app_token:
        fail("invalid configuration:\n  slack.app_token: required for Socket Mode", EXIT_CONFIG)
    store = guarded(lambda: wiring.connect_store(settings.state.url))
    oncall = OnCall(wiring.ops(settings, store), settings.slack.oncall_user_ids,
                    wiring.transport_for(settings), now)
    try:
        client = guarded(lambda: start_socket_mode(
            wiring.socket_mode_client(app_token, settings.slack.base_url), oncall))
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        typer.echo(f"listening for on-call actions as {len(settings.slack.oncall_user_ids)} "
                   "allowed users; Ctrl-C to stop", err=True)
        stop.wait()
        client.close()
    finally:
        store.close()
