"""Block Kit building blocks and Slack's limits (reference/slack.md §B2). Pure.

Each builder returns a plain dict, its texts clipped at Slack's limit (or a tighter cap), and
``message`` keeps the fallback text and the number of blocks within what Slack accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guard.core.render.text import FIELD_CAP, FOOTER_CAP, clip

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

Blocks = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Message:
    """A Slack message: the plain-text fallback and its Block Kit blocks."""

    text: str
    blocks: tuple[dict[str, Any], ...]


def mrkdwn(text: str, limit: int = SECTION_MAX) -> dict[str, Any]:
    """A mrkdwn text object, clipped at ``limit``."""
    return {"type": "mrkdwn", "text": clip(text, limit)}


def header(text: str) -> dict[str, Any]:
    """A header block, its plain text clipped at ``HEADER_MAX``."""
    return {"type": "header",
            "text": {"type": "plain_text", "text": clip(text, HEADER_MAX), "emoji": True}}


def section(text: str) -> dict[str, Any]:
    """A section block of mrkdwn text."""
    return {"type": "section", "text": mrkdwn(text)}


def fields(fields: Sequence[str]) -> dict[str, Any]:
    """A section block of up to ``FIELDS_MAX`` mrkdwn fields, each capped at ``FIELD_CAP``."""
    return {"type": "section",
            "fields": [mrkdwn(f, FIELD_CAP) for f in fields[:FIELDS_MAX]]}


def context(text: str) -> dict[str, Any]:
    """A context block of one mrkdwn element, capped at ``FOOTER_CAP``."""
    return {"type": "context", "elements": [mrkdwn(text, FOOTER_CAP)]}


def plain_text(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object (emoji on), clipped at ``limit``."""
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def button(label: str, action_id: str, value: str, **extra: Any) -> dict[str, Any]:
    """A button element; ``extra`` adds keys such as ``style`` or ``confirm``."""
    return {"type": "button", "action_id": action_id[:ID_MAX],
            "text": plain_text(label, BUTTON_TEXT_MAX), "value": value[:VALUE_MAX], **extra}


def message(text: str, blocks: Blocks) -> Message:
    """The ``Message``: fallback text clipped at ``TEXT_MAX``, at most ``MAX_BLOCKS`` blocks."""
    return Message(clip(text, TEXT_MAX), tuple(blocks[:MAX_BLOCKS]))
