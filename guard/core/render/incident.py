"""Alert messages: the parent alert of one (budget, condition) and the replies in its thread. Pure.

``render_incident`` builds the parent (header, figures, top movers, footer and, until resolved,
the buttons whose value is ``incident_key``); ``render_thread_reply`` the short reply posted
in its thread on a repeat, an escalation or the resolution.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.core.policy import CLEAR_BAND, Condition, Reason
from guard.core.render.blocks import (
    BLOCK_PREFIX,
    ID_MAX,
    KEY_MAX,
    Blocks,
    Message,
    button,
    context,
    fields,
    header,
    message,
    mrkdwn,
    plain_text,
    section,
)
from guard.core.render.text import (
    EMOJI,
    KIND_WORDS,
    MOVER_GROUPS,
    MOVERS_CAP,
    MOVERS_PER_GROUP,
    REASON_CAP,
    RESOLVED_EMOJI,
    clip,
    clock,
    duration,
    escape,
    month_name,
    multiple,
    name,
    ordinal,
    percent,
    plain,
    share,
    short_day,
    tier_label,
    usd,
    words,
)

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
    provider_limit_usd: Decimal | None = None
    """The Anthropic spend limit on the budget's scope (``provider_cap_near``)."""
    provider_limit: str | None = None
    """That limit in words: ``workspace wrkspc_… $500.00/month``."""



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
    blocks = [header(_title(view)), fields(_figures(view)), *_movers(view.movers),
              context(_footer(view, key))]
    if view.kind != "resolved":
        blocks.append(_actions(key, view.tier, view.model))
    return message(_incident_text(view), blocks)


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
            f"*Fallback tier*\n{tier_label(v.tier, v.model)}"
            + _line(name(v.tier_reason, REASON_CAP)),
            f"*Budget*\n{name(v.budget)} · {_scope(v)} · {month_name(v.period)}"]


def _line(text: str) -> str:
    return f"\n{text}" if text else ""


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
    return [section(clip("*Top movers today*\n" + "\n".join(lines), MOVERS_CAP))]


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
        button("Acknowledge", "budget_ack", key, style="primary"),
        button("Pin current tier 4h", "budget_pin_4h", key, style="danger",
               confirm=_pin_confirm(tier, model)),
        button("Release", "budget_release", key),
        button("Silence 24h", "budget_silence_24h", key)]}


def _pin_confirm(tier: str, model: str) -> dict[str, Any]:
    text = (f"Hold the fallback at {tier_label(tier, model)} for 4 hours, whatever the budgets "
            "say? *Release* ends the pin early.")
    return {"title": plain_text("Pin the fallback tier?", 100), "text": mrkdwn(text, 300),
            "confirm": plain_text("Pin for 4 hours", 30), "deny": plain_text("Cancel", 30),
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
    details.append(f"fallback tier {tier_label(v.tier, v.model, mark='')}")
    return [details[0][:1].upper() + details[0][1:], *details[1:]]


# --- thread replies --------------------------------------------------------------------------


def render_thread_reply(view: IncidentView) -> Message:
    """A short reply in the alert's thread: repeat, escalation or resolution."""
    reply = _REPLIES.get(view.kind, _notice)(view)
    return message(reply, [section(reply)])


def _headline(v: IncidentView) -> str:
    if v.condition == Condition.RUNAWAY:
        return f"{_said(v.condition)}, burn {_burn_text(v)}"
    if v.condition == Condition.DATA_STALE:
        return f"{_said(v.condition)}, {_freshness(v).lower()}"
    if v.condition == Condition.PROVIDER_CAP_NEAR and v.provider_limit_usd is not None:
        return (f"{_said(v.condition)}, month to date {usd(v.mtd_usd)} "
                f"({share(v.mtd_usd, v.provider_limit_usd)} of Anthropic's "
                f"{usd(v.provider_limit_usd)} limit on the {name(v.provider_limit or '', 80)}; "
                "Anthropic stops this traffic at it)")
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
            + f". Fallback tier {tier_label(v.tier, v.model)}.")


def _notice(v: IncidentView) -> str:
    kind = KIND_WORDS.get(v.kind, name(v.kind, 20))
    return f"{kind}: {_headline(v)}. Fallback tier {tier_label(v.tier, v.model)}."


def _repeat(v: IncidentView) -> str:
    return (f"Still firing{_since(v)}: {_headline(v)}. Fallback tier {tier_label(v.tier, v.model)}"
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
    if v.condition == Condition.PROVIDER_CAP_NEAR:
        return ("the Anthropic spend limit no longer covers this budget, or was raised"
                if v.provider_limit_usd is None else
                f"month to date {usd(v.mtd_usd)} is below the warning line of Anthropic's "
                f"{usd(v.provider_limit_usd)} limit")
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
