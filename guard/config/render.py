"""Rendering: the effective configuration as TOML, secrets and URL passwords masked."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w
from pydantic import SecretStr

from guard.config.sections import MASK, mask_url_password
from guard.core.model import Scope

if TYPE_CHECKING:
    from guard.config.settings import Settings


def render_settings(settings: Settings) -> str:
    """The effective configuration as TOML, secrets shown as ``**********``."""
    data = settings.model_dump(mode="python", exclude_none=True)
    data["state"]["url"] = mask_url_password(settings.state.url)
    for section in ("anthropic", "slack", "http"):
        for name in getattr(settings, section)._secrets:
            if f"{name}_file" in data[section]:
                del data[section][name]  # read from the file, which is what to show
    if not data.get("organizations"):
        data.pop("organizations", None)  # a single-organization config shows as it always did
    for org in data.get("organizations", ()):
        if "admin_api_key_file" in org:
            del org["admin_api_key"]
    return tomli_w.dumps(_plain(data))


def _plain(value: Any) -> Any:
    """``value`` with only types TOML can write; secrets masked."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Path | Scope):
        return str(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)  # 800, not 800.0, as it was most likely written
    return value
