"""Settings: the TOML file, overridden by ``GUARD_<SECTION>__<KEY>`` environment variables.

``load_settings(path)`` is the one way in. Every problem comes back as one ``ConfigError``
listing ``(field path, reason)`` pairs, the path written as ``budgets[1].soft_limit_usd``
(list indexes count from 0). Secrets are ``SecretStr``, each also readable from a ``*_file``
key; they never appear in an error, a ``repr`` or ``render_settings``.

TOML floats are parsed as ``Decimal`` from their text, so ``800.1`` is exactly
``Decimal("800.1")``; JSON in environment variables is parsed the same way.

* ``sections``: the section models (``[anthropic]``, ``[state]``, ``[fallback]``, ``[slack]``,
  ``[http]``, ``[[budgets]]``, ``[pricing]``) and secrets read from ``*_file`` keys;
* ``settings``: ``Settings``, the whole configuration and its checks across sections;
* ``loading``: the file, the environment, and their problems turned into one ``ConfigError``;
* ``render``: the effective configuration as TOML, secrets masked.
"""

from guard.config.loading import load_settings, resolve_config_path
from guard.config.render import render_settings
from guard.config.sections import ModelPriceOverride
from guard.config.settings import Settings

__all__ = [
    "ModelPriceOverride",
    "Settings",
    "load_settings",
    "render_settings",
    "resolve_config_path",
]
