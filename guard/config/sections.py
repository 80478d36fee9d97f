"""The section models: field types, their checks, and secrets read from ``*_file`` keys."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guard.core.model import DEFAULT_WORKSPACE, Budget, Scope
from guard.core.targets import DEFAULT_TARGET, Target

Condition = Literal[
    "soft_reached", "hard_at_risk", "hard_likely", "hard_reached", "runaway", "data_stale",
    "provider_cap_near"
]
NO_CEILING = "none"
MASK = "**********"

def mask_url_password(url: str) -> str:
    """``url`` with its password, if any, replaced by the mask.

    The URL is parsed the way the store will parse it (SQLAlchemy), so a password holding
    ``/``, ``:`` or ``#`` is masked whole; a URL that does not parse, or whose host still
    holds an ``@``, is masked from the user name's ``:`` to the last ``@``.
    """
    from sqlalchemy.engine import make_url  # noqa: PLC0415  (only to parse the URL)
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _mask_userinfo(url)
    if "@" in (parsed.host or "") or "@" in (parsed.database or ""):
        return _mask_userinfo(url)
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True).replace(":***@", f":{MASK}@", 1)


def _mask_userinfo(url: str) -> str:
    """Everything between ``scheme://user:`` and the last ``@`` masked."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:{MASK}@{host}"


def _problem(reason: str, *at: str | int) -> PydanticCustomError:
    """A validation error whose path continues, below the validator's own, with ``at``."""
    return PydanticCustomError("guard_config", "{reason}", {"reason": reason, "at": at})


def _file_mode(raw: object) -> int:
    """A file mode as octal text (``"0644"``, ``"640"``) or a TOML integer (``0o644``)."""
    try:
        mode = int(raw, 8) if isinstance(raw, str) else int(str(raw))
    except ValueError:
        raise _problem(f"{raw!r} is not an octal file mode like \"0644\"") from None
    if isinstance(raw, bool) or not 0o600 <= mode <= 0o666 or mode & 0o600 != 0o600 or (
            mode & 0o111):
        raise _problem(f"{raw!r} must let the owner read and write, and nobody execute "
                       "(0600 to 0666)")
    return mode


FileMode = Annotated[int, BeforeValidator(_file_mode),
                     PlainSerializer(lambda mode: f"0{mode:o}", return_type=str)]
Usd = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PositiveUsd = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _matching(pattern: str, what: str) -> AfterValidator:
    """A check that a string matches ``pattern``, failing with "'x' is not <what>"."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _problem(f"'{value}' is not {what}")
        return value

    return AfterValidator(check)


# Tiers and model ids are written into env files (DESIGN §5), so they keep to its charset;
# no comma in a model id, because the chain is comma-joined.
Tier = Annotated[str, _matching(r"[A-Za-z0-9_.-]+", "a tier name (letters, digits, _ . -)")]
ModelId = Annotated[
    str, _matching(r"[A-Za-z0-9_.:/@+-]+", "a model id (letters, digits, _ . : / @ + -)")
]
HttpUrl = Annotated[str, _matching(r"https?://\S+", "an http:// or https:// URL")]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]+")
_MODEL_PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SecretSection(_Section):
    """A section whose secrets ``X`` may instead be read from the file named by ``X_file``."""

    _secrets: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unset = {key for name in cls._secrets for key in (name, f"{name}_file")
                 if data.get(key) == ""}  # the documented example writes "" for "not set"
        data = {key: value for key, value in data.items() if key not in unset}
        for name in cls._secrets:
            file = data.get(f"{name}_file")
            if isinstance(file, str | Path):
                if data.get(name) is not None:
                    raise _problem(f"{name} is set as well; set only one of them", f"{name}_file")
                data[name] = _read_secret_file(Path(file), f"{name}_file")
        return data

    def secret_value(self, name: str) -> str | None:
        """The plain text of the secret ``name``, from the value or its file; None when unset."""
        secret: SecretStr | None = getattr(self, name)
        return None if secret is None else secret.get_secret_value()


def _read_secret_file(path: Path, field: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise _problem(f"cannot read {path}: {reason}", field) from None
    if not text:
        raise _problem(f"{path} is empty", field)
    return text


class AnthropicSettings(_SecretSection):
    """The Admin API: key, endpoint, polling and retry behaviour."""

    _secrets = ("admin_api_key",)

    admin_api_key: SecretStr | None = None
    admin_api_key_file: Path | None = None
    base_url: HttpUrl = "https://api.anthropic.com"
    source: Literal["auto", "analytics", "legacy"] = "auto"
    poll_interval_s: int = Field(60, ge=10)
    stale_after_minutes: int = Field(30, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(4, ge=0)
    max_retry_wait_s: float = Field(120.0, ge=0)
    tick_deadline_s: float = Field(50.0, gt=0)
    """All of one tick's Admin API reads, retries and waits included: past it the tick
    decides on stored data (what was read is kept, so the next tick continues)."""


class PolicySettings(_Section):
    """Alert lifecycle timing (DESIGN §2) and how late the Admin API's newest minutes are."""

    raise_after_minutes: int = Field(10, ge=0)
    clear_after_minutes: int = Field(60, ge=0)
    repeat_interval_minutes: int = Field(1440, ge=1)
    usage_lag_minutes: int = Field(5, ge=0)
    provider_cap_pct: Decimal = Field(Decimal(90), gt=0, le=100)
    """``provider_cap_near`` fires at this share (%) of an Anthropic spend limit."""


class EnforcementSettings(_Section):
    """The opt-in hard stop: deactivate a budget's API keys past a share of its hard limit."""

    enabled: bool = False
    dry_run: bool = True
    deactivate_keys_at_pct: Decimal = Field(Decimal(100), gt=0)
    never_deactivate: list[NonBlank] = Field(default_factory=list)
    method: Literal["keys", "spend_limit"] = "keys"
    """``keys``: deactivate the keys in the budget's scope. ``spend_limit``: a workspace
    budget sets its workspace's Anthropic spend limit to what was spent (key and default
    workspace budgets still use keys)."""
    fallback_to_keys: bool = False
    """With ``spend_limit``: deactivate keys instead when Anthropic refuses the write (403)."""


class StateSettings(_Section):
    """Where the state store lives (SQLAlchemy URL)."""

    url: NonBlank = "sqlite:////var/lib/budget-guard/state.db"
    instance: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{0,32}$")] = ""
    """Tells replicas on one host over one store apart (e.g. systemd ``%i``); empty for one."""
    lease_ttl_s: int = Field(15, ge=5, le=600)
    """The leader lease's life; a heartbeat renews it every third of it, and a standby takes
    over within about one TTL of the leader's death or pause."""
    journal_file: Path | None = None
    """Where ticks without the store journal critical alerts until it returns (``None``:
    next to a SQLite file, else in the temporary directory); a second copy goes to the
    temporary directory when this one cannot be written."""

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        problem = state_url_problem(url)
        if problem:
            raise _problem(problem)
        return url

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", mask_url_password(self.url)


def state_url_problem(url: str) -> str | None:
    """Why ``url`` can never open a state store (never echoing the URL, which may hold a
    password), or ``None``."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415  (only to parse the URL)
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except ArgumentError:
        return ("not a SQLAlchemy URL: use sqlite:////var/lib/budget-guard/state.db or "
                "postgresql+psycopg://user@host/db")
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in ("sqlite", "postgresql"):
        return (f"{backend} is not supported: use sqlite:///… (embedded) or "
                "postgresql+psycopg://… (HA)")
    if backend == "postgresql" and driver != "psycopg":
        return f"the {driver} driver is not supported: use postgresql+psycopg://…"
    if backend == "postgresql" and importlib.util.find_spec("psycopg") is None:
        return "the PostgreSQL driver is not installed: pip install 'budget-guard[postgres]'"
    return None


def secret_files(settings: Iterable[_SecretSection], prefixes: Iterable[str]) -> Iterator[
        tuple[str, Path]]:
    """``(field path, file)`` of every secret given as a ``*_file``."""
    for section, prefix in zip(settings, prefixes, strict=True):
        for name in section._secrets:
            path = getattr(section, f"{name}_file", None)
            if path is not None:
                yield f"{prefix}.{name}_file", Path(path)


TargetName = Annotated[str, _matching(
    r"[a-z0-9][a-z0-9_-]{0,39}", "a target name (lower-case letters, digits, _ and -)")]


class TargetSettings(_Section):
    """One ``[[fallback.targets]]`` entry: outputs capped only by the budgets it lists.

    ``budgets`` unset means every budget. ``env_file`` and ``state_file`` default to
    ``[fallback]``'s with the name before the suffix (``model.research.env``),
    ``reload_command`` to ``[fallback]``'s; ``chain`` to ``[fallback]``'s (a part of it, in
    its order), ``models`` to ``[fallback.models]`` (a target's own override them).
    """

    name: TargetName
    budgets: list[NonBlank] | None = None
    env_file: Path | None = None
    state_file: Path | None = None
    reload_command: list[str] | None = None
    chain: list[Tier] | None = None
    models: dict[Tier, ModelId] = Field(default_factory=dict)
    claude_code_settings: Path | None = None


class FallbackSettings(_Section):
    """The model fallback chain and the sinks applications read."""

    chain: list[Tier] = Field(default_factory=lambda: ["opus", "sonnet", "haiku"])
    env_file: Path = Path("/run/budget-guard/model.env")
    state_file: Path = Path("/run/budget-guard/fallback.json")
    model_var: str = "ANTHROPIC_MODEL"
    file_mode: FileMode = 0o644
    """The env file's mode: readable by others because applications read it. The state
    file and the state database are always 0600."""
    reload_command: list[str] = Field(default_factory=list)
    claude_code: bool = True
    """Also write Claude Code's ``ANTHROPIC_DEFAULT_{OPUS,SONNET,HAIKU}_MODEL`` and
    ``CLAUDE_CODE_SUBAGENT_MODEL``, each capped at the tier in force."""
    claude_code_settings: Path | None = None
    """Claude Code's managed settings file (e.g. ``/etc/claude-code/managed-settings.json``):
    its ``model`` and ``availableModels`` capped at the tier, other keys kept."""
    models: dict[Tier, ModelId] = Field(
        default_factory=lambda: {
            "opus": "claude-opus-5-5",
            "sonnet": "claude-sonnet-5-5",
            "haiku": "claude-haiku-5-5",
        }
    )
    targets: list[TargetSettings] = Field(default_factory=list)
    """Several sets of outputs, each capped only by its budgets; empty: one target,
    ``default``, of ``[fallback]``'s files and every budget."""

    @field_validator("chain")
    @classmethod
    def _chain_is_ordered_set(cls, chain: list[str]) -> list[str]:
        if not chain:
            raise _problem("the chain needs at least one tier")
        for i, tier in enumerate(chain):
            if tier == NO_CEILING:
                raise _problem(f"'{NO_CEILING}' is reserved for 'no ceiling'", i)
            if tier in chain[:i]:
                raise _problem(f"tier '{tier}' appears twice", i)
        return chain

    @field_validator("model_var")
    @classmethod
    def _model_var_is_env_name(cls, name: str) -> str:
        if not _ENV_NAME.fullmatch(name):
            raise _problem(f"'{name}' is not a valid environment variable name")
        return name

    @model_validator(mode="after")
    def _every_tier_has_a_model(self) -> Self:
        missing = [tier for tier in self.chain if tier not in self.models]
        if missing:
            raise _problem(f"no model for tier {', '.join(missing)} of the chain", "models")
        return self

    @model_validator(mode="after")
    def _settings_need_claude_code(self) -> Self:
        if self.claude_code_settings is not None and not self.claude_code:
            raise _problem("Claude Code's settings are only written with claude_code = true",
                           "claude_code_settings")
        return self

    @model_validator(mode="after")
    def _targets_stand_apart(self) -> Self:
        problem = _targets_problem(self)
        if problem is not None:
            raise _problem(*problem)
        return self

    def model_for(self, tier: str) -> str:
        """The model id of a tier of the chain."""
        return self.models[tier]

    def target_chain(self, target: TargetSettings) -> list[str]:
        """The tiers of ``target``'s chain."""
        return list(target.chain) if target.chain is not None else list(self.chain)

    def target_models(self, target: TargetSettings) -> dict[str, str]:
        """The model of each tier of ``target``'s chain."""
        return {**self.models, **target.models}

    def core_targets(self) -> tuple[Target, ...]:
        """The core's targets (none without ``[[fallback.targets]]``: the tick then has the
        one target ``default``)."""
        return tuple(Target(t.name, tuple(self.target_chain(t)), self.target_models(t),
                            None if t.budgets is None else tuple(t.budgets))
                     for t in self.targets)

    def env_files(self) -> dict[str, str]:
        """Each target's env file, by name (``default``'s without targets)."""
        if not self.targets:
            return {DEFAULT_TARGET: str(self.env_file)}
        return {t.name: str(target_path(self, t, "env_file")) for t in self.targets}


def _targets_problem(fallback: FallbackSettings) -> tuple[str, *tuple[str | int, ...]] | None:
    """Why ``[[fallback.targets]]`` cannot stand (reason, field path), or None."""
    names: set[str] = set()
    files: dict[Path, str] = {}
    for i, target in enumerate(fallback.targets):
        if target.name in names:
            return f"target name '{target.name}' is used twice", "targets", i, "name"
        names.add(target.name)
        chain = fallback.target_chain(target)
        problem = _target_chain_problem(chain, fallback.chain)
        if problem is not None:
            return problem, "targets", i, "chain"
        models = fallback.target_models(target)
        missing = [tier for tier in chain if tier not in models]
        if missing:
            return f"no model for tier {', '.join(missing)} of the chain", "targets", i, "models"
        if target.claude_code_settings is not None and not fallback.claude_code:
            return ("Claude Code's settings are only written with claude_code = true",
                    "targets", i, "claude_code_settings")
        for key in ("env_file", "state_file", "claude_code_settings"):
            path = target_path(fallback, target, key)
            if path is None:
                continue
            if path in files:
                return (f"{path} is also {files[path]}; each target needs its own", "targets",
                        i, key)
            files[path] = f"target {target.name}'s {key}"
    return None


def _target_chain_problem(chain: list[str], full: list[str]) -> str | None:
    if not chain:
        return "the chain needs at least one tier"
    unknown = [tier for tier in chain if tier not in full]
    if unknown:
        return f"{', '.join(unknown)} is not a tier of fallback.chain {full}"
    order = [full.index(tier) for tier in chain]
    if order != sorted(set(order)):
        return f"the tiers must keep fallback.chain's order {full}, each once"
    return None


def target_path(fallback: FallbackSettings, target: TargetSettings, key: str) -> Path | None:
    """``target``'s ``env_file``, ``state_file`` or ``claude_code_settings``: its own, else
    (for the two files) ``[fallback]``'s with the target's name before the suffix."""
    own: Path | None = getattr(target, key)
    if own is not None or key == "claude_code_settings":
        return own
    base: Path = getattr(fallback, key)
    return base.with_name(f"{base.stem}.{target.name}{base.suffix}")


class SlackSettings(_SecretSection):
    """Slack: a bot token (stateful incidents) or a webhook (post only), and Socket Mode."""

    _secrets = ("bot_token", "webhook_url", "app_token")

    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    channel: str | None = None
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    base_url: HttpUrl = "https://slack.com/api/"
    app_token: SecretStr | None = None
    app_token_file: Path | None = None
    oncall_user_ids: list[str] = Field(default_factory=list)
    digest_hour_utc: int | None = Field(9, ge=0, le=23)

    @field_validator("oncall_user_ids")
    @classmethod
    def _are_user_ids(cls, ids: list[str]) -> list[str]:
        for i, user in enumerate(ids):
            if not _SLACK_USER.fullmatch(user):
                raise _problem(f"'{user}' is not a Slack user id (like U012AB3CD)", i)
        return ids


class HttpSettings(_SecretSection):
    """The HTTP endpoint: listen address and the bearer token that unlocks writes."""

    _secrets = ("admin_token",)

    listen: str = "127.0.0.1:9184"
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _is_host_port(cls, listen: str) -> str:
        host, sep, port = listen.rpartition(":")
        if not (sep and host.strip("[]") and port.isdigit() and int(port) <= 65535):
            raise _problem(f"'{listen}' is not host:port (like 127.0.0.1:9184)")
        return listen

    @property
    def host(self) -> str:
        """The host part of ``listen``, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])


class BudgetSettings(_Section):
    """One ``[[budgets]]`` entry; ``Settings.budget_models()`` turns it into a ``Budget``."""

    name: NonBlank
    scope: Scope
    match: str | None = None
    soft_limit_usd: PositiveUsd
    hard_limit_usd: PositiveUsd
    ceilings: dict[Condition, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        reason = _match_problem(self.scope, self.match or "")
        if reason:
            raise _problem(reason, "match")
        if self.soft_limit_usd > self.hard_limit_usd:
            raise _problem(
                f"soft limit {self.soft_limit_usd} exceeds hard limit {self.hard_limit_usd}",
                "soft_limit_usd",
            )
        return self

    def to_budget(self) -> Budget:
        """The core's frozen ``Budget``."""
        return Budget(
            name=self.name,
            scope=self.scope,
            match=self.match or None,
            soft_limit_usd=self.soft_limit_usd,
            hard_limit_usd=self.hard_limit_usd,
            ceilings=tuple(self.ceilings.items()),
        )


def _match_problem(scope: Scope, match: str) -> str | None:
    """Why ``match`` cannot select anything in ``scope``, or None when it can."""
    if scope is Scope.ORGANIZATION:
        return "an organization budget takes no match" if match else None
    if not match:
        return f"a {scope} budget needs a match"
    if scope is Scope.WORKSPACE and not (match == DEFAULT_WORKSPACE or match.startswith("wrkspc_")):
        return f"'{match}' is not a workspace id (wrkspc_…) or '{DEFAULT_WORKSPACE}'"
    if scope is Scope.API_KEY and not match.startswith("apikey_"):
        return f"'{match}' is not an API key id (apikey_…)"
    if scope is Scope.MODEL and not _MODEL_PREFIX.fullmatch(match):
        return f"'{match}' is not a model id prefix (like 'claude-opus')"
    return None


class ModelPriceOverride(_Section):
    """One ``[pricing]`` entry, $/MTok; unset optional prices derive from ``guard.core.pricing``."""

    input: Usd
    output: Usd
    cache_write_5m: Usd | None = None
    cache_write_1h: Usd | None = None
    cache_read: Usd | None = None
    long_context_input: Usd | None = None
    long_context_output: Usd | None = None
    inference_geo_us: bool | None = None
    fast: PositiveUsd | None = None  # the fast-mode multiplier, e.g. 2


ORGANIZATION_NAME = r"[a-z0-9][a-z0-9_-]{0,31}"
OrganizationName = Annotated[str, _matching(
    ORGANIZATION_NAME, "an organization name (lowercase letters, digits, _ and -; at most 32, "
                       "starting with a letter or digit)")]


class OrganizationSettings(_SecretSection):
    """One ``[[organizations]]`` entry: its admin key, endpoint, budgets and fallback outputs.

    What it leaves unset comes from the shared sections: ``base_url`` and ``source`` from
    ``[anthropic]``, ``reload_command`` from ``[fallback]``; ``env_file`` and ``state_file``
    default to ``[fallback]``'s with the name before the suffix (``model.acme.env``).
    """

    _secrets = ("admin_api_key",)

    name: OrganizationName
    admin_api_key: SecretStr | None = None
    admin_api_key_file: Path | None = None
    base_url: HttpUrl | None = None
    source: Literal["auto", "analytics", "legacy"] | None = None
    budgets: list[BudgetSettings] = Field(default_factory=list)
    env_file: Path | None = None
    state_file: Path | None = None
    reload_command: list[str] | None = None

    @model_validator(mode="after")
    def _has_a_key(self) -> Self:
        if self.admin_api_key is None:
            raise _problem("required: set admin_api_key or admin_api_key_file",
                           "admin_api_key")
        return self

    @field_validator("budgets")
    @classmethod
    def _budget_names_are_unique(cls, budgets: list[BudgetSettings]) -> list[BudgetSettings]:
        return unique_budget_names(budgets)


def unique_budget_names(budgets: list[BudgetSettings]) -> list[BudgetSettings]:
    """``budgets``, or the problem of the first name used twice."""
    seen: set[str] = set()
    for i, budget in enumerate(budgets):
        if budget.name in seen:
            raise _problem(f"budget name '{budget.name}' is used twice", i, "name")
        seen.add(budget.name)
    return budgets
