"""The ``guard`` command line: the daemon, one tick, the report, doctor, config, demo, backtest.

The on-call commands (``fallback``, ``silence``, ``keys``, ``slack``) are in ``oncall_cli``;
every real part comes from ``guard.entry.wiring``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from guard import __version__
from guard.config import Settings, load_settings, render_settings, resolve_config_path
from guard.core.assess import Assessment, assess
from guard.core.ledger import budget_api_keys
from guard.core.summary import TickReport, provider_lines, report_json, warnings
from guard.entry import wiring
from guard.entry.common import EXIT_CONFIG, EXIT_STANDBY, EXIT_UPSTREAM, failure, log_to_stderr
from guard.entry.oncall_cli import fallback_app, keys_app, silence_app, slack_app
from guard.entry.report import report_table
from guard.entry.terminal import (
    AtOption,
    DryRunOption,
    JsonOption,
    Options,
    console,
    dry,
    fail,
    guarded,
    now,
    parse_at,
)
from guard.errors import GuardError, StoreError
from guard.shell.tick import run_tick

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Keeps Anthropic API spend inside monthly budgets.")
config_app = typer.Typer(no_args_is_help=True, help="Validate or show the configuration.")
app.add_typer(config_app, name="config")
app.add_typer(fallback_app, name="fallback")
app.add_typer(keys_app, name="keys")
app.add_typer(keys_app, name="enforcement")
app.add_typer(slack_app, name="slack")
app.add_typer(silence_app, name="silence")

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default: $GUARD_CONFIG, ./guard.toml, "
                     "/etc/budget-guard/guard.toml).")]


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
    moment = guarded(lambda: parse_at(at, now()))
    settings = guarded(lambda: load_settings(options.config_path))
    if settings.several:
        _report_several(settings, moment, as_json=as_json)
        return
    assessment = guarded(lambda: compute_report(settings, moment))
    extra = settings_warnings(settings)
    if as_json:
        body = report_json(assessment)
        body["warnings"] += extra
        typer.echo(json.dumps(body, indent=2))
    else:
        console().print(report_table(assessment))
        for line in provider_lines(assessment):
            typer.echo(line)
        for warning in [*warnings(assessment), *extra]:
            typer.echo(f"warning: {warning}")


def _report_several(settings: Settings, moment: datetime, *, as_json: bool) -> None:
    """``guard report`` of every organization: one each (JSON: an object by organization);
    the worst exit code of them."""
    from guard.entry.several import report_all  # noqa: PLC0415

    extra = settings_warnings(settings)
    body: dict[str, Any] = {}
    codes: list[int] = []
    for name, found in report_all(settings, moment).items():
        if isinstance(found, GuardError):
            message, code = failure(found)
            codes.append(code)
            typer.echo(f"{name}: {message}", err=True)
            body[name] = {"organization": name, "error": str(found)}
            continue
        body[name] = {"organization": name} | report_json(found)
        body[name]["warnings"] += extra
        if not as_json:
            typer.echo(f"== organization {name} ==")
            console().print(report_table(found))
            for line in provider_lines(found):
                typer.echo(line)
            for warning in [*warnings(found), *extra]:
                typer.echo(f"warning: {warning}")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    if codes:
        raise typer.Exit(max(codes))


@app.command()
def run(ctx: typer.Context) -> None:
    """The daemon: a tick every poll_interval_s until SIGTERM; SIGHUP reloads the config."""
    from guard.entry import run as daemon  # noqa: PLC0415

    try:
        code = daemon.run(ctx.obj.config_path)
    except daemon.StartFailed as exc:
        fail(exc.message, exc.code)
    raise typer.Exit(code)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the admin key, Slack, the state store and the fallback paths; exit 1 on a failure."""
    from guard.entry.doctor import checks  # noqa: PLC0415

    settings = guarded(lambda: load_settings(ctx.obj.config_path))
    ok = True
    for org in settings.organizations_in_force():  # one section per organization of several
        if org.several:
            typer.echo(f"== organization {org.name} ==")
        one = org.settings
        client = wiring.admin_client(one) if one.admin_api_key_value() else None
        try:
            found = list(checks(one, client, wiring.opened_store, wiring.slack(one.slack)))
        finally:
            if client is not None:
                client.http.close()
        for item in found:
            typer.echo(item.line())
        ok = ok and all(item.ok for item in found)
    if not ok:
        raise typer.Exit(1)


CHECK_LEASE = timedelta(minutes=3)
"""How long ``guard check`` holds the leader lease at most (it releases it when it ends)."""


@app.command()
def check(ctx: typer.Context, at: AtOption = None, dry_run: DryRunOption = False,
          as_json: JsonOption = False) -> None:
    """Exactly one tick, as the daemon runs it: fetch, decide, fallback, notify, record."""
    options: Options = ctx.obj
    moment = guarded(lambda: parse_at(at, now()))
    settings = guarded(lambda: load_settings(options.config_path))

    def one() -> TickReport:
        try:
            guard = wiring.build(settings)
        except StoreError as exc:  # the store cannot even be opened: tighten only
            return wiring.without_store(settings, moment, exc, dry_run)
        try:
            # no heartbeat here: one tick holds the lease long enough, and frees it at exit
            guard.tick.config = replace(guard.tick.config, lease_ttl=CHECK_LEASE)
            try:
                return run_tick(guard.tick, moment, dry_run=dry_run)
            finally:
                guard.tick.release()  # one tick, then the lease is free for the next
        finally:
            guard.close()

    if settings.several:
        _check_several(settings, moment, dry_run=dry_run, as_json=as_json)
        return
    result = guarded(one)
    if as_json:
        body = result.as_json()
        body["warnings"] += settings_warnings(settings)
        typer.echo(json.dumps(body, indent=2))
    else:
        show_check(result, settings, dry_run)
    problem = check_problem(result)
    if problem is not None:
        fail(*problem)


def show_check(result: TickReport, settings: Settings, dry_run: bool) -> None:
    """One tick's report for people: the table, warnings, the fallback and the keys."""
    console().print(report_table(result.assessment))
    for warning in [*warnings(result.assessment), *result.warnings,
                    *settings_warnings(settings)]:
        typer.echo(f"warning: {warning}")
    typer.echo(f"fallback: {result.fallback.tier} ({result.fallback.model}, "
               f"{result.fallback.source}){' changed' if result.changed else ''}"
               f"{dry(dry_run)}")
    if len(result.targets) > 1:
        for target in result.targets:
            state = target.fallback
            typer.echo(f"  target {target.name}: {state.tier} ({state.model}, {state.source})"
                       f"{' changed' if target.changed and not result.standby else ''}")
    for line in key_lines(result):
        typer.echo(line)
    if result.what_if:
        typer.echo("what-if: --at is before the data already read, so this shows what "
                   "would have been decided and wrote nothing but the caches")


def check_problem(result: TickReport) -> tuple[str, int] | None:
    """What ``guard check`` ends with after ``result`` (message and exit code), if not 0."""
    if result.sink_error:
        return f"error: {result.sink_error}", EXIT_UPSTREAM
    if result.store_error:
        return (f"error: {result.store_error} (decided without the store: only a more "
                "restrictive tier and critical alerts)", EXIT_UPSTREAM)
    if result.upstream_error:
        return f"error: {result.upstream_error} (decided on stored data)", EXIT_UPSTREAM
    if result.standby:
        return ("standby: another replica holds the leader lease, so this check decided but "
                "wrote nothing (no fallback file, no notification, no key change)", EXIT_STANDBY)
    return None


def _check_several(settings: Settings, moment: datetime, *, dry_run: bool,
                   as_json: bool) -> None:
    """``guard check`` of every organization at once: one report each (JSON: an object by
    organization), and the worst exit code of them (3 before 4)."""
    from guard.entry.several import check_all  # noqa: PLC0415

    results = check_all(settings, moment, dry_run)
    extra = settings_warnings(settings)
    problems: list[tuple[str, int]] = []
    body: dict[str, Any] = {}
    for name, result in results.items():
        found = (failure(result) if isinstance(result, GuardError) else check_problem(result))
        if found is not None:
            problems.append((f"{name}: {found[0]}", found[1]))
        if as_json:
            body[name] = ({"organization": name, "error": str(result)}
                          if isinstance(result, GuardError)
                          else result.as_json() | {"warnings": [
                              *result.as_json()["warnings"], *extra]})
        else:
            typer.echo(f"== organization {name} ==")
            if isinstance(result, GuardError):
                typer.echo(f"error: {result}")
            else:
                show_check(result, settings, dry_run)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    for message, _ in problems:
        typer.echo(message, err=True)
    codes = {code for _, code in problems}
    if codes:
        raise typer.Exit(EXIT_UPSTREAM if EXIT_UPSTREAM in codes else max(codes))


def settings_warnings(settings: Settings) -> list[str]:
    """The config's own warnings (unknown chain models, open secret files) for report/check."""
    from guard.entry.doctor import config_warnings  # noqa: PLC0415

    return config_warnings(settings)


def key_lines(result: TickReport) -> list[str]:
    """One line per key the hard stop changed, failed to change or would change."""
    lines = []
    for k in result.keys:
        verb = "deactivated" if k.action == "deactivate" else "restored"
        if k.dry_run:
            lines.append(f"keys: would have {verb} {k.key_id} (budget {k.budget}; dry run)")
        elif k.done:
            lines.append(f"keys: {verb} {k.key_id} (budget {k.budget})")
        elif k.error:
            lines.append(f"keys: could not change {k.key_id} (budget {k.budget}): {k.error}")
    if any(k.done and k.action == "deactivate" for k in result.keys):
        lines.append("keys: undo with `guard enforcement restore`")
    return lines


@config_app.command("validate")
def config_validate(ctx: typer.Context,
                    path: Annotated[Path | None, typer.Argument(help="Config file.")] = None,
                    online: Annotated[bool, typer.Option(
                        "--online", help="Also check against the organization: the admin key "
                                         "is accepted and every budget's match exists.")] = False,
                    ) -> None:
    """Check a config file; print each problem with its field path (exit 2 if any).

    With ``--online``: also the admin key, every budget's match and the chain models against
    the organization (exit 1 on a problem)."""
    from guard.entry.doctor import config_warnings, online_checks  # noqa: PLC0415

    options: Options = ctx.obj
    target = path or options.config_path
    settings = guarded(lambda: load_settings(target))
    if settings.admin_api_key_value() is None and not settings.several:
        fail("invalid configuration:\n  anthropic.admin_api_key: not set (set admin_api_key "
             "or admin_api_key_file); no command can read spend without it", EXIT_CONFIG)
    for warning in config_warnings(settings):
        typer.echo(f"warning: {warning}")
    orgs = settings.organizations_in_force()
    if online:
        ok = True
        for org in orgs:
            client = wiring.admin_client(org.settings)
            try:
                found = list(online_checks(org.settings, client))
            finally:
                client.http.close()
            for item in found:
                typer.echo(f"{org.name}: {item.line()}" if org.several else item.line())
            ok = ok and all(item.ok for item in found)
        if not ok:
            fail(f"{target}: problems found against the organization", 1)
    budgets = sum(len(org.settings.budgets) for org in orgs)
    typer.echo(f"{target}: ok ({budgets} budgets)" if not settings.several
               else f"{target}: ok ({len(orgs)} organizations, {budgets} budgets)")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    options: Options = ctx.obj
    settings = guarded(lambda: load_settings(options.config_path))
    typer.echo(render_settings(settings), nl=False)


@app.command()
def demo(ctx: typer.Context,
         seed: Annotated[int, typer.Option(help="Seed of the simulated organization.")] = 7,
         month: Annotated[str, typer.Option(help="Month to simulate, YYYY-MM.")] = "2026-11",
         step_hours: Annotated[int, typer.Option(help="Simulated hours between ticks.")] = 2,
         scenario: Annotated[str, typer.Option(
             help="steady, spike, runaway or breach.")] = "breach",
         ) -> None:
    """A simulated month through the real tick, with the fallback flipping under demo-out/."""
    from guard.entry.demo import run_demo  # noqa: PLC0415  (the simulator loads only when asked for)

    transport, channel = None, ""
    if ctx.obj.config_path.exists():
        settings = guarded(lambda: load_settings(ctx.obj.config_path))
        if settings.slack.secret_value("bot_token") or settings.slack.secret_value(
                "webhook_url"):
            transport, channel = wiring.transport_for(settings), settings.slack.channel or ""
    guarded(lambda: run_demo(seed=seed, month=month, step_hours=step_hours,
                              console=console(), scenario=scenario, transport=transport,
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
        result, alerts = guarded(lambda: command.run_backtest(
            orgs=orgs, months=months, seed=seed, history=history))
        console().print(backtest_table(result))
        console().print(alerts_table(alerts))
        if history is None and runaway_orgs:
            console().print(runaway_table(command.run_runaway(runaway_orgs, seed),
                                           runaway_orgs))
        return
    options: Options = ctx.obj
    today = now().date()
    first = guarded(lambda: command.export_start(since, today))
    settings = guarded(lambda: load_settings(options.config_path))

    def write() -> int:
        client = wiring.admin_client(settings)
        try:
            return export_history(client, first, today, export, "--export")
        finally:
            client.http.close()

    typer.echo(f"{export}: {guarded(write)} days from {first} to before {today}")


def compute_report(settings: Settings, at: datetime) -> Assessment:
    """Refresh the caches as of ``at`` and assess every budget (no alert state, no delay)."""
    budgets = settings.budget_models()
    with wiring.opened(settings) as guard:
        snapshot = guard.tick.fetcher.refresh(at, budget_api_keys(budgets))
    policy = replace(settings.policy_config(), raise_after=timedelta(0))
    return assess(budgets, snapshot, policy=policy,
                  lag=timedelta(minutes=settings.policy.usage_lag_minutes))


def main() -> None:
    """Console-script entry point."""
    log_to_stderr()
    app()
