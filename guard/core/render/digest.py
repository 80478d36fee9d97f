"""The daily digest and the monthly "budgets reset" notice. Pure.

``render_digest`` shows one line per budget, as many as fit in Slack's block limit and the
digest's character cap, and says how many more there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from guard.core.policy import Condition
from guard.core.render.blocks import MAX_BLOCKS, Message, context, header, message, section
from guard.core.render.text import (
    DIGEST_CAP,
    FIRING_SHOWN,
    LINE_CAP,
    REASON_CAP,
    clip,
    escape,
    month_name,
    name,
    percent,
    share,
    short_day,
    tier_label,
    usd,
    words,
)


@dataclass(frozen=True, slots=True)
class DigestLine:
    """One budget in the daily digest; ratios are fractions (0.123 is 12.3 %)."""

    name: str
    mtd_usd: Decimal
    soft_usd: Decimal
    hard_usd: Decimal
    p50_usd: Decimal | None
    p90_usd: Decimal | None
    week_over_week: Decimal | None
    cache_hit_ratio: Decimal | None
    firing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DigestView:
    """The daily digest: every budget on ``day`` and the fallback tier in force."""

    day: date
    budgets: tuple[DigestLine, ...]
    tier: str
    model: str


def render_digest(view: DigestView) -> Message:
    """The daily digest: one line per budget (as many as fit) and the fallback tier."""
    head = [header(f":bar_chart: Anthropic spend digest — {short_day(view.day)}, {view.day.year}"),
            section(f"*Fallback tier:* {tier_label(view.tier, view.model)}")]
    lines = _fit([_digest_line(b) for b in view.budgets], MAX_BLOCKS - len(head) - 1)
    blocks = head + [section(line) for line in lines]
    if len(lines) < len(view.budgets):
        blocks.append(context(f"…and {len(view.budgets) - len(lines)} more budgets; "
                              "`guard report` lists them all."))
    return message(_digest_text(view), blocks)


def _fit(lines: Sequence[str], room: int) -> list[str]:
    shown: list[str] = []
    used = 0
    for line in lines[:room]:
        used += len(line)
        if used > DIGEST_CAP:
            break
        shown.append(line)
    return shown


def _digest_line(b: DigestLine) -> str:
    parts = [f"{_dot(b.firing)} *{name(b.name)}* {usd(b.mtd_usd)} of {usd(b.hard_usd)} "
             f"({share(b.mtd_usd, b.hard_usd)}; soft {usd(b.soft_usd)})"]
    if b.p50_usd is not None:
        p90 = f" (P90 {usd(b.p90_usd)})" if b.p90_usd is not None else ""
        parts.append(f"P50 {usd(b.p50_usd)}{p90}")
    if b.week_over_week is not None:
        parts.append(f"week over week {percent(b.week_over_week, signed=True)}")
    if b.cache_hit_ratio is not None:
        parts.append(f"cache hits {percent(b.cache_hit_ratio)}")
    if b.firing:
        parts.append(f"firing: {_firing(b.firing)}")
    return clip(" · ".join(parts), LINE_CAP)


def _dot(firing: Sequence[str]) -> str:
    if any(c in (Condition.HARD_REACHED, Condition.RUNAWAY) for c in firing):
        return ":red_circle:"
    return ":large_orange_circle:" if firing else ":large_green_circle:"


def _firing(firing: Sequence[str]) -> str:
    shown = ", ".join(name(words(c).lower(), 40) for c in firing[:FIRING_SHOWN])
    more = len(firing) - FIRING_SHOWN
    return shown + (f" +{more} more" if more > 0 else "")


def _digest_text(view: DigestView) -> str:
    firing = [b.name for b in view.budgets if b.firing]
    names = ", ".join(name(n, 40) for n in firing[:5]) + (", …" if len(firing) > 5 else "")
    which = f" ({names})" if firing else ""
    return (f"Anthropic spend digest for {view.day.isoformat()}: {len(view.budgets)} budgets, "
            f"{len(firing)} with firing conditions{which}. "
            f"Fallback tier {tier_label(view.tier, view.model, mark='')}.")


def render_reset(month: date, tier: str, model: str) -> Message:
    """The "budgets reset" notice at month rollover."""
    before = month_name(month.replace(day=1) - timedelta(days=1))
    body = (f"The {month_name(month)} budget period started (UTC). Every alert of {before} is "
            f"resolved and the fallback is back to {tier_label(tier, model)}.")
    text = (f"Budgets reset for {month_name(month)}: every {before} alert resolved; fallback "
            f"tier {tier_label(tier, model, mark='')}.")
    return message(text, [header(f":arrows_counterclockwise: Budgets reset for "
                                 f"{month_name(month)}"), section(body)])


def render_price_notice(month: date, model: str, problem: str) -> Message:
    """The once-a-month notice that a model's estimate cannot be trusted: ``problem`` says
    whether the price table lacks it or its card drifted from the bill."""
    title = f":warning: Price table: {name(model)}"
    text = f"Price table, {month_name(month)}: {clip(problem, REASON_CAP)}"
    body = (f"{clip(escape(problem), REASON_CAP)}\n\nBilled figures are unaffected; the "
            "estimate of the hours the bill does not cover yet is.")
    return message(text, [header(title), section(body)])


def render_limit_notice(budget: str, action: str, workspace: str,
                        cents: int | None) -> Message:
    """The hard stop set (or restored) ``workspace``'s Anthropic spend limit for ``budget``."""
    if action == "deactivate":
        amount = f"${Decimal(cents or 0) / 100:,.2f}"
        text = (f"Hard stop: the Anthropic spend limit of workspace {name(workspace)} is now "
                f"{amount}, what {name(budget)} has spent: Anthropic stops its traffic at once. "
                "Undo with `guard enforcement restore`; it is restored when the budget period "
                "resets.")
        head = ":no_entry: Hard stop: workspace spend limit set"
    else:
        text = (f"Hard stop undone: the Anthropic spend limit of workspace {name(workspace)} "
                f"is back to what it was before {name(budget)}'s hard stop.")
        head = ":white_check_mark: Hard stop: workspace spend limit restored"
    return message(clip(text, 2 * REASON_CAP), [header(head), section(text)])


def render_key_notice(budget: str, action: str, key_ids: Sequence[str],
                      failed: Sequence[str] = ()) -> Message:
    """The hard stop acted on ``key_ids`` of ``budget`` (``deactivate`` or ``restore``)."""
    done = "deactivated" if action == "deactivate" else "restored"
    shown = ", ".join(f"`{name(k)}`" for k in key_ids[:20])
    more = f" and {len(key_ids) - 20} more" if len(key_ids) > 20 else ""
    text = (f"Hard stop: {len(key_ids)} API key{'s' if len(key_ids) != 1 else ''} {done} for "
            f"{name(budget)}: {', '.join(key_ids[:20])}{more}"
            + (". Undo with `guard enforcement restore`." if action == "deactivate" else "."))
    body = f"*{len(key_ids)} API key(s) {done}* for budget *{name(budget)}*: {shown}{more}."
    if action == "deactivate":
        body += ("\nUndo with `guard enforcement restore`; keys also come back by "
                 "themselves when the budget period resets.")
    if failed:
        body += f"\nNot changed (the Admin API refused): {', '.join(name(k) for k in failed)}"
    icon = ":no_entry:" if action == "deactivate" else ":white_check_mark:"
    return message(clip(text, 2 * REASON_CAP), [header(f"{icon} Hard stop: keys {done}"),
                                             section(body)])
