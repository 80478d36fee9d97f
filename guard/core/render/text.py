"""Text for Slack messages: clipping, mrkdwn escaping, money, percentages, dates and words. Pure.

Strings from outside (budget, workspace, model and key names, reasons) go through ``plain`` or
``name``: on one line, capped at the caps below (far under Slack's limits) and, for ``name``,
escaped for mrkdwn. Money is formatted from ``Decimal``, never through float.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from guard.core.policy import Condition, Severity

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
    Condition.PROVIDER_CAP_NEAR: "Anthropic spend limit near",
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


def tier_label(tier: str, model: str, mark: str = "`") -> str:
    """The fallback tier and its model, escaped: ``cheap (`claude-haiku`)``; ``mark`` quotes it."""
    shown = f" ({mark}{name(model, 60)}{mark})" if model else ""
    return name(tier, 40) + shown
