"""Slack messages for alerts, thread replies, the daily digest and the monthly reset. Pure.

Each function turns a view (plain frozen data, defined here) into a ``Message``: the top-level
``text`` (the notification and screen-reader fallback) and Block Kit ``blocks`` as plain dicts,
ready for ``chat.postMessage`` or ``chat.update``. Nothing here reads the clock or does I/O.

Slack's limits (reference/slack.md §B2) are enforced here rather than hoped for. Every text
is clipped with an ellipsis at its limit, and strings from outside (budget, workspace, model
and key names, reasons) are capped far below those limits, so a whole message stays under
about 10,000 characters of blocks. Names are escaped for mrkdwn (``&``, ``<``, ``>``), so a
name can never mention a channel. Money is formatted from ``Decimal``, never through float.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from guard.core.policy import CLEAR_BAND, Condition, Reason, Severity

MAX_BLOCKS = 50
SECTION_MAX = 3000
FIELDS_MAX = 10
FIELD_MAX = 2000
HEADER_MAX = 150
BUTTON_TEXT_MAX = 75
VALUE_MAX = 2000
ID_MAX = 255
TEXT_MAX = 40_000
BLOCK_PREFIX = "budget:"
KEY_MAX = ID_MAX - len(BLOCK_PREFIX)
"""An incident key fits in a block_id together with its prefix."""

NAME_CAP = 80
REASON_CAP = 300
FIELD_CAP = 600  # of FIELD_MAX: ten full fields would blow the ~12k total
MOVERS_CAP = 1500
FOOTER_CAP = 1000
LINE_CAP = 700
DIGEST_CAP = 8000
MOVERS_PER_GROUP = 5
MOVER_GROUPS = 6
FIRING_SHOWN = 6

WORDS: dict[str, str] = {
    Condition.SOFT_REACHED: "Soft limit reached",
    Condition.HARD_AT_RISK: "Hard limit at risk",
    Condition.HARD_LIKELY: "Hard limit likely to be exceeded",
    Condition.HARD_REACHED: "Hard limit reached",
    Condition.RUNAWAY: "Runaway spend",
    Condition.DATA_STALE: "Spend data is stale",
}
EMOJI: dict[str, str] = {Severity.WARNING: ":warning:", Severity.CRITICAL: ":rotating_light:"}
RESOLVED_EMOJI = ":white_check_mark:"
KIND_WORDS: dict[str, str] = {"firing": "New alert", "update": "Updated", "repeat": "Repeat",
              "escalated": "Escalated", "resolved": "Resolved"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_CENT = Decimal("0.01")
_HUGE = Decimal("1e30")
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

Blocks = list[dict[str, Any]]


# --- views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mover:
    """A top contributor today; ``share`` is its fraction of the budget's spend today."""

    name: str
    usd: Decimal
    share: Decimal


@dataclass(frozen=True, slots=True)
class IncidentView:
    """Everything one alert message shows about one (budget, condition) at ``at``.

    ``burn`` holds (tier name, long-window multiple, short-window multiple) per burn tier;
    ``since`` (optional) is when the condition started firing, for "resolved after 3 h".
    """

    budget: str
    scope: str
    match: str | None
    condition: str
    severity: str
    kind: str
    period: date
    mtd_usd: Decimal
    soft_usd: Decimal
    hard_usd: Decimal
    p10_usd: Decimal | None
    p50_usd: Decimal | None
    p90_usd: Decimal | None
    exhaustion_day: date | None
    burn: tuple[tuple[str, Decimal, Decimal], ...]
    tte_hours: Decimal | None
    tier: str
    model: str
    tier_reason: str
    data_through: datetime | None
    at: datetime
    movers: tuple[tuple[str, tuple[Mover, ...]], ...]
    reason: str
    silenced: bool = False
    since: datetime | None = None


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


@dataclass(frozen=True, slots=True)
class Message:
    """A Slack message: the plain-text fallback and its Block Kit blocks."""

    text: str
    blocks: tuple[dict[str, Any], ...]


# --- text ------------------------------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, never inside an ``&…;`` escape."""
    if len(text) <= limit:
        return text
    return _ENTITY_TAIL.sub("", text[:limit - 1]) + "…"


def escape(text: str) -> str:
    """``text`` safe inside mrkdwn: Slack's three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, cap: int = NAME_CAP) -> str:
    """An outside string on one line (control characters become spaces), capped."""
    return clip(_CONTROL.sub(" ", text), cap)


def name(text: str, cap: int = NAME_CAP) -> str:
    """An outside string, on one line, capped and escaped for mrkdwn."""
    return escape(plain(text, cap))


def usd(amount: Decimal) -> str:
    """``$12,345.67`` (half-even to the cent); ``-$5.00`` below zero; ``n/a`` if not finite."""
    if not amount.is_finite():
        return "n/a"
    sign = "-" if amount < 0 else ""
    if abs(amount) >= _HUGE:
        return f"{sign}${abs(amount):.3E}"
    return f"{sign}${abs(amount).quantize(_CENT, ROUND_HALF_EVEN):,}"


def percent(fraction: Decimal, signed: bool = False) -> str:
    """``48.1%`` from 0.481 (``+12.3%`` when ``signed``); ``n/a`` if not finite."""
    if not fraction.is_finite():
        return "n/a"
    return f"{fraction * 100:+.1f}%" if signed else f"{fraction * 100:.1f}%"


def share(part: Decimal, whole: Decimal) -> str:
    """``part`` as a percentage of ``whole``; ``n/a`` without a positive finite whole."""
    if not (whole.is_finite() and part.is_finite()) or whole <= 0:
        return "n/a"
    return percent(part / whole)


def multiple(value: Decimal) -> str:
    """A burn multiple: ``9.8×``, ``∞×`` when nothing was expected."""
    if value.is_nan():
        return "n/a"
    return "∞×" if value.is_infinite() else f"{value:.1f}×"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``19th``, ``23rd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def month_name(day: date) -> str:
    """``March 2026``, whatever the locale."""
    return f"{_MONTHS[day.month - 1]} {day.year}"


def short_day(day: date) -> str:
    """``Mar 19``."""
    return f"{_MONTHS[day.month - 1][:3]} {day.day}"


def clock(moment: datetime, on: datetime) -> str:
    """``14:05 UTC``, with the day in front when it is not ``on``'s day."""
    moment, on = moment.astimezone(UTC), on.astimezone(UTC)
    day = "" if moment.date() == on.date() else short_day(moment.date()) + " "
    return f"{day}{moment:%H:%M} UTC"


def duration(span: timedelta) -> str:
    """``3 h 20 min``, ``2 d 4 h``, ``45 min``, ``under a minute``."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min" if mins > 0 else "under a minute"


def words(condition: str) -> str:
    """The condition in words: ``Hard limit likely to be exceeded``."""
    known = WORDS.get(condition)
    return known if known else plain(condition.replace("_", " ").capitalize())


# --- blocks ----------------------------------------------------------------------------------


def _mrkdwn(text: str, limit: int = SECTION_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header",
            "text": {"type": "plain_text", "text": clip(text, HEADER_MAX), "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _fields(fields: Sequence[str]) -> dict[str, Any]:
    return {"type": "section",
            "fields": [_mrkdwn(f, FIELD_CAP) for f in fields[:FIELDS_MAX]]}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text, FOOTER_CAP)]}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def _button(label: str, action_id: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id[:ID_MAX],
            "text": _plain(label, BUTTON_TEXT_MAX), "value": value[:VALUE_MAX], **extra}


def _message(text: str, blocks: Blocks) -> Message:
    return Message(clip(text, TEXT_MAX), tuple(blocks[:MAX_BLOCKS]))


# --- incidents -------------------------------------------------------------------------------


def incident_key(view: IncidentView) -> str:
    """``2026-03:org-monthly:hard_likely``, stable and at most ``KEY_MAX`` (248) characters.

    ``budget:`` + key fits a block_id. A budget name too long to fit is cut and tagged with a
    hash of the whole name, so two long names sharing a prefix still get different keys.
    """
    head, tail = f"{view.period:%Y-%m}:", f":{view.condition}"
    room = KEY_MAX - len(head) - len(tail)
    budget = view.budget
    if len(budget) > room:
        digest = hashlib.sha256(budget.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        budget = f"{budget[:max(0, room - 11)]}~{digest}"
    return (head + budget + tail)[:KEY_MAX]


def render_incident(view: IncidentView) -> Message:
    """The parent alert: header, figures, top movers, context and (until resolved) buttons."""
    key = incident_key(view)
    blocks = [_header(_title(view)), _fields(_figures(view)), *_movers(view.movers),
              _context(_footer(view, key))]
    if view.kind != "resolved":
        blocks.append(_actions(key, view.tier, view.model))
    return _message(_incident_text(view), blocks)


def _title(v: IncidentView) -> str:
    resolved = v.kind == "resolved"
    emoji = RESOLVED_EMOJI if resolved else EMOJI.get(v.severity, ":warning:")
    prefix = "Resolved: " if resolved else ""
    return f"{emoji} {prefix}{words(v.condition)} — {plain(v.budget)}"


def _figures(v: IncidentView) -> list[str]:
    return [f"*Month to date*\n{usd(v.mtd_usd)} ({share(v.mtd_usd, v.hard_usd)} of hard)",
            f"*Soft / hard limit*\n{usd(v.soft_usd)} / {usd(v.hard_usd)}",
            f"*Forecast P50 / P90*\n{_forecast(v)}",
            _burn_field(v),
            f"*Fallback tier*\n{_tier(v.tier, v.model)}" + _line(name(v.tier_reason, REASON_CAP)),
            f"*Budget*\n{name(v.budget)} · {_scope(v)} · {month_name(v.period)}"]


def _line(text: str) -> str:
    return f"\n{text}" if text else ""


def _tier(tier: str, model: str, mark: str = "`") -> str:
    shown = f" ({mark}{name(model, 60)}{mark})" if model else ""
    return name(tier, 40) + shown


def _scope(v: IncidentView) -> str:
    return f"{name(v.scope, 40)} `{name(v.match)}`" if v.match else name(v.scope, 40)


def _forecast(v: IncidentView) -> str:
    if v.p50_usd is None:
        return "no forecast yet"
    p90 = usd(v.p90_usd) if v.p90_usd is not None else "n/a"
    p10 = _line(f"P10 {usd(v.p10_usd)}") if v.p10_usd is not None else ""
    return f"{usd(v.p50_usd)} / {p90}{p10}\n{_exhaustion(v)}"


def _exhaustion(v: IncidentView) -> str:
    if v.mtd_usd >= v.hard_usd:
        return "hard limit already reached"
    if v.exhaustion_day is None:
        return "hard limit not reached this month"
    same = (v.exhaustion_day.year, v.exhaustion_day.month) == (v.period.year, v.period.month)
    when = f"the {ordinal(v.exhaustion_day.day)}" if same else short_day(v.exhaustion_day)
    return f"hard limit reached around {when}"


def worst_burn(burn: Sequence[tuple[str, Decimal, Decimal]]) -> tuple[str, Decimal, Decimal] | None:
    """The tier whose weaker window runs hottest (both windows must trip a tier)."""
    rated = [b for b in burn if not (b[1].is_nan() or b[2].is_nan())]
    return max(rated, key=lambda b: min(b[1], b[2]), default=None)


def _burn_text(v: IncidentView) -> str:
    worst = worst_burn(v.burn)
    if worst is None:
        return "no burn data"
    return (f"{name(worst[0], 40)} tier {multiple(worst[1])} / {multiple(worst[2])} expected "
            "(long / short window)")


def _burn_field(v: IncidentView) -> str:
    return f"*Burn rate*\n{_burn_text(v)}{_line(_time_to_hard(v))}"


def _time_to_hard(v: IncidentView) -> str:
    if v.mtd_usd >= v.hard_usd:
        return "hard limit passed"
    if v.tte_hours is None or not v.tte_hours.is_finite() or v.tte_hours < 0:
        return ""
    if v.tte_hours < 1:
        return "hard limit within the hour"
    if v.tte_hours < 48:
        return f"hard limit in ~{v.tte_hours:.0f} h"
    return f"hard limit in ~{v.tte_hours / 24:.0f} d"


def _movers(groups: Sequence[tuple[str, Sequence[Mover]]]) -> Blocks:
    lines = [_mover_line(g, ms) for g, ms in groups[:MOVER_GROUPS] if ms]
    if not lines:
        return []
    return [_section(clip("*Top movers today*\n" + "\n".join(lines), MOVERS_CAP))]


def _mover_line(group: str, movers: Sequence[Mover]) -> str:
    shown = ", ".join(f"{name(m.name, 60)} {usd(m.usd)} ({percent(m.share)})"
                      for m in movers[:MOVERS_PER_GROUP])
    more = f" +{len(movers) - MOVERS_PER_GROUP} more" if len(movers) > MOVERS_PER_GROUP else ""
    return f"*{name(group.capitalize(), 30)}:* {shown}{more}"


def _freshness(v: IncidentView) -> str:
    if v.data_through is None:
        return "No spend data yet"
    lag = v.at - v.data_through
    late = f" (lag {duration(lag)})" if lag >= timedelta(minutes=1) else ""
    return f"Data through {clock(v.data_through, v.at)}{late}"


def _footer(v: IncidentView, key: str) -> str:
    kind = KIND_WORDS.get(v.kind, name(v.kind, 20))
    why = "" if v.reason.lower() == kind.lower() else f": {name(v.reason, REASON_CAP)}"
    muted = " · :no_bell: silenced" if v.silenced else ""
    since = _since(v) if v.kind == "resolved" else ""
    return f"{_freshness(v)} · {kind}{since}{why}{muted} · alert `{name(key, KEY_MAX)}`"


def _actions(key: str, tier: str, model: str) -> dict[str, Any]:
    return {"type": "actions", "block_id": (BLOCK_PREFIX + key)[:ID_MAX], "elements": [
        _button("Acknowledge", "budget_ack", key, style="primary"),
        _button("Pin current tier 4h", "budget_pin_4h", key, style="danger",
                confirm=_pin_confirm(tier, model)),
        _button("Release", "budget_release", key),
        _button("Silence 24h", "budget_silence_24h", key)]}


def _pin_confirm(tier: str, model: str) -> dict[str, Any]:
    text = (f"Hold the fallback at {_tier(tier, model)} for 4 hours, whatever the budgets "
            "say? *Release* ends the pin early.")
    return {"title": _plain("Pin the fallback tier?", 100), "text": _mrkdwn(text, 300),
            "confirm": _plain("Pin for 4 hours", 30), "deny": _plain("Cancel", 30),
            "style": "danger"}


def _incident_text(v: IncidentView) -> str:
    prefix = "Resolved: " if v.kind == "resolved" else ""
    muted = " (silenced)" if v.silenced else ""
    first = (f"{prefix}{escape(words(v.condition))} — {name(v.budget)}{muted}: month to date "
             f"{usd(v.mtd_usd)} ({share(v.mtd_usd, v.hard_usd)} of the {usd(v.hard_usd)} hard "
             f"limit, soft {usd(v.soft_usd)}).")
    return f"{first}\n{'; '.join(_text_details(v))}."


def _text_details(v: IncidentView) -> list[str]:
    details = []
    if v.p50_usd is not None:
        details.append(f"Forecast P50 {usd(v.p50_usd)}"
                       + (f" / P90 {usd(v.p90_usd)}" if v.p90_usd is not None else ""))
    if v.condition == Condition.RUNAWAY:
        details.append(f"burn {_burn_text(v)}")
    if v.condition == Condition.DATA_STALE:
        details.append(_freshness(v).lower())
    details.append(f"fallback tier {_tier(v.tier, v.model, mark='')}")
    return [details[0][:1].upper() + details[0][1:], *details[1:]]


# --- thread replies --------------------------------------------------------------------------


def render_thread_reply(view: IncidentView) -> Message:
    """A short reply in the alert's thread: repeat, escalation or resolution."""
    reply = _REPLIES.get(view.kind, _notice)(view)
    return _message(reply, [_section(reply)])


def _headline(v: IncidentView) -> str:
    if v.condition == Condition.RUNAWAY:
        return f"{_said(v.condition)}, burn {_burn_text(v)}"
    if v.condition == Condition.DATA_STALE:
        return f"{_said(v.condition)}, {_freshness(v).lower()}"
    if v.condition in (Condition.HARD_AT_RISK, Condition.HARD_LIKELY) and v.p50_usd is not None:
        return (f"{_said(v.condition)}, {_forecast(v).splitlines()[0]} (P50 / P90) "
                f"vs the {usd(v.hard_usd)} hard limit")
    return (f"{_said(v.condition)}, month to date {usd(v.mtd_usd)} "
            f"({share(v.mtd_usd, v.hard_usd)} of the {usd(v.hard_usd)} hard limit)")


def _said(condition: str) -> str:
    return escape(words(condition).lower())


def _since(v: IncidentView) -> str:
    return f" after {duration(v.at - v.since)}" if v.since is not None else ""


def _escalated(v: IncidentView) -> str:
    tte = _time_to_hard(v)
    return (f"Escalated to {name(v.severity, 20)}: {_headline(v)}" + (f"; {tte}" if tte else "")
            + f". Fallback tier {_tier(v.tier, v.model)}.")


def _notice(v: IncidentView) -> str:
    kind = KIND_WORDS.get(v.kind, name(v.kind, 20))
    return f"{kind}: {_headline(v)}. Fallback tier {_tier(v.tier, v.model)}."


def _repeat(v: IncidentView) -> str:
    return (f"Still firing{_since(v)}: {_headline(v)}. Fallback tier {_tier(v.tier, v.model)}"
            f" ({name(v.reason, REASON_CAP)}).")


def _resolved(v: IncidentView) -> str:
    if v.reason == Reason.RESET.value:
        return "Resolved at month rollover: the budget period reset."
    return f"Resolved{_since(v)}: {_cleared(v) or name(v.reason, REASON_CAP)}."


def _cleared(v: IncidentView) -> str | None:
    band = f"{CLEAR_BAND * 100:.0f}%"
    below: dict[str, tuple[str, Decimal | None, str, Decimal]] = {
             Condition.SOFT_REACHED: ("month to date", v.mtd_usd, "soft", v.soft_usd),
             Condition.HARD_REACHED: ("month to date", v.mtd_usd, "hard", v.hard_usd),
             Condition.HARD_AT_RISK: ("P90", v.p90_usd, "hard", v.hard_usd),
             Condition.HARD_LIKELY: ("P50", v.p50_usd, "hard", v.hard_usd)}
    if v.condition == Condition.RUNAWAY:
        return f"burn rate back to {_burn_text(v)}"
    if v.condition == Condition.DATA_STALE:
        return f"spend data is current again ({_freshness(v).lower()})"
    what, value, limit, amount = below.get(v.condition, ("", None, "", v.hard_usd))
    if value is None:
        return None
    return f"{what} {usd(value)} is below {band} of the {limit} limit ({usd(amount)})"


_REPLIES: dict[str, Callable[[IncidentView], str]] = {
    "escalated": _escalated, "repeat": _repeat, "resolved": _resolved}


# --- digest and reset ------------------------------------------------------------------------


def render_digest(view: DigestView) -> Message:
    """The daily digest: one line per budget (as many as fit) and the fallback tier."""
    head = [_header(f":bar_chart: Anthropic spend digest — {short_day(view.day)}, {view.day.year}"),
            _section(f"*Fallback tier:* {_tier(view.tier, view.model)}")]
    lines = _fit([_digest_line(b) for b in view.budgets], MAX_BLOCKS - len(head) - 1)
    blocks = head + [_section(line) for line in lines]
    if len(lines) < len(view.budgets):
        blocks.append(_context(f"…and {len(view.budgets) - len(lines)} more budgets; "
                               "`guard report` lists them all."))
    return _message(_digest_text(view), blocks)


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
            f"Fallback tier {_tier(view.tier, view.model, mark='')}.")


def render_reset(month: date, tier: str, model: str) -> Message:
    """The "budgets reset" notice at month rollover."""
    before = month_name(month.replace(day=1) - timedelta(days=1))
    body = (f"The {month_name(month)} budget period started (UTC). Every alert of {before} is "
            f"resolved and the fallback is back to {_tier(tier, model)}.")
    text = (f"Budgets reset for {month_name(month)}: every {before} alert resolved; fallback "
            f"tier {_tier(tier, model, mark='')}.")
    return _message(text, [_header(f":arrows_counterclockwise: Budgets reset for "
                                   f"{month_name(month)}"), _section(body)])
