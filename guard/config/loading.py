"""Loading: the TOML file below the environment, every problem as one ``ConfigError``."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from guard.config.settings import Settings, _EnvSource
from guard.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/budget-guard/guard.toml")
LOCAL_CONFIG_PATH = Path("guard.toml")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _TomlData(PydanticBaseSettingsSource):
    """The already parsed TOML file, below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _settings_from(data: dict[str, Any]) -> Settings:
    """Settings from parsed TOML ``data``, overridden by the environment."""

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, _EnvSource(settings_cls), _TomlData(settings_cls, data)

    FileSettings.__name__ = FileSettings.__qualname__ = "Settings"
    return FileSettings()


def resolve_config_path(cli_path: Path | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$GUARD_CONFIG``, else ``./guard.toml`` if present, else /etc."""
    if cli_path is not None:
        return cli_path
    if environ.get("GUARD_CONFIG"):
        return Path(environ["GUARD_CONFIG"])
    return LOCAL_CONFIG_PATH if LOCAL_CONFIG_PATH.is_file() else DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read, merge and validate the configuration; every problem in one ``ConfigError``."""
    data = _read_toml(path)
    try:
        return _settings_from(data)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    except SettingsError as exc:
        raise ConfigError([_describe_env_error(exc)]) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([(str(path), "file not found")]) from None
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([(str(path), "not UTF-8 text")]) from None
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), _describe_toml_error(exc))]) from None


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc))
    if not found:
        return f"invalid TOML: {exc}"
    what, line, column = found.groups()
    return f"invalid TOML at line {line}, column {column}: {what}"


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """A pydantic error as ``(field path, reason)``, never quoting the input (it may be secret)."""
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "guard_config":
        return _format_path([*loc, *ctx["at"]]), str(ctx["reason"])
    if error["type"] == "extra_forbidden":
        return _format_path(loc), "unknown key"
    if error["type"] == "missing":
        return _format_path(loc), "required"
    reason = re.sub(r"^(Input|String|Value|List|Dictionary) should", "must", error["msg"])
    if "[key]" in loc:
        loc.remove("[key]")
        reason = f"the key {reason}"
    return _format_path(loc), reason


def _format_path(loc: list[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            path += f".{key}" if path else key
    return path


def _describe_env_error(exc: SettingsError) -> tuple[str, str]:
    found = re.search(r'field "(\w+)"', str(exc))
    field = found.group(1) if found else "environment"
    return field, f"a GUARD_{field.upper()}… environment variable is not valid JSON"
