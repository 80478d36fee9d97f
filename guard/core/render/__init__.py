"""Slack messages for alerts, thread replies, the daily digest and the monthly reset. Pure.

Each function turns a view (plain frozen data, defined here) into a ``Message``: the top-level
``text`` (the notification and screen-reader fallback) and Block Kit ``blocks`` as plain dicts,
ready for ``chat.postMessage`` or ``chat.update``. Nothing here reads the clock or does I/O.

Slack's limits (reference/slack.md §B2) are enforced here rather than hoped for. Every text
is clipped with an ellipsis at its limit, and strings from outside (budget, workspace, model
and key names, reasons) are capped far below those limits, so a whole message stays under
about 10,000 characters of blocks. Names are escaped for mrkdwn (``&``, ``<``, ``>``), so a
name can never mention a channel. Money is formatted from ``Decimal``, never through float.

The submodules, by concern:

* ``text``: clipping, escaping and formatting (``clip``, ``escape``, ``name``, ``usd``, …),
  the condition words and emoji, and the caps on outside strings (``NAME_CAP``, …).
* ``blocks``: Slack's limits (``MAX_BLOCKS``, ``KEY_MAX``, ``TEXT_MAX``, …), ``Message``
  and the Block Kit builders (``header``, ``section``, ``button``, ``message``, …).
* ``incident``: the alert and its thread replies (``IncidentView``, ``Mover``,
  ``incident_key``, ``render_incident``, ``render_thread_reply``, ``worst_burn``).
* ``digest``: the daily digest and the monthly reset (``DigestView``, ``DigestLine``,
  ``render_digest``, ``render_reset``).

The names used outside the package are re-exported here.
"""

from __future__ import annotations

from guard.core.render.blocks import KEY_MAX, TEXT_MAX, Message
from guard.core.render.digest import (
    DigestLine,
    DigestView,
    render_digest,
    render_key_notice,
    render_limit_notice,
    render_price_notice,
    render_reset,
)
from guard.core.render.incident import (
    IncidentView,
    Mover,
    incident_key,
    render_incident,
    render_thread_reply,
)
from guard.core.render.text import (
    REASON_CAP,
    clip,
    clock,
    escape,
    name,
    ordinal,
    share,
    usd,
    words,
)

__all__ = [
    "KEY_MAX",
    "REASON_CAP",
    "TEXT_MAX",
    "DigestLine",
    "DigestView",
    "IncidentView",
    "Message",
    "Mover",
    "clip",
    "clock",
    "escape",
    "incident_key",
    "name",
    "ordinal",
    "render_digest",
    "render_incident",
    "render_key_notice",
    "render_limit_notice",
    "render_price_notice",
    "render_reset",
    "render_thread_reply",
    "share",
    "usd",
    "words",
]
