"""``Settings``: the whole configuration, its checks across sections, and its env source."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from guard.config.sections import (
    NO_CEILING,
    AnthropicSettings,
    BudgetSettings,
    EnforcementSettings,
    FallbackSettings,
    HttpSettings,
    ModelPriceOverride,
    NonBlank,
    OrganizationSettings,
    PolicySettings,
    SlackSettings,
    StateSettings,
    _problem,
    unique_budget_names,
)
from guard.core.model import Budget
from guard.core.policy import PolicyConfig

if TYPE_CHECKING:
    from guard.config.organizations import Organization


class Settings(BaseSettings):
    """The whole configuration; build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="GUARD_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    fallback: FallbackSettings = Field(default_factory=FallbackSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    enforcement: EnforcementSettings = Field(default_factory=EnforcementSettings)
    budgets: list[BudgetSettings] = Field(default_factory=list)
    pricing: dict[NonBlank, ModelPriceOverride] = Field(default_factory=dict)
    organizations: list[OrganizationSettings] = Field(default_factory=list)
    """Several organizations in one daemon; empty: ``[anthropic]`` and ``[[budgets]]`` are
    the one organization, named ``default``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init kwargs, then the environment; no .env file, no secrets dir."""
        return init_settings, _EnvSource(settings_cls)

    @field_validator("budgets")
    @classmethod
    def _names_are_unique(cls, budgets: list[BudgetSettings]) -> list[BudgetSettings]:
        return unique_budget_names(budgets)

    @model_validator(mode="after")
    def _ceilings_are_tiers(self) -> Self:
        allowed = [*self.fallback.chain, NO_CEILING]
        lists: list[tuple[tuple[str | int, ...], list[BudgetSettings]]] = [
            (("budgets",), self.budgets),
            *((("organizations", i, "budgets"), org.budgets)
              for i, org in enumerate(self.organizations))]
        for at, budgets in lists:
            for i, budget in enumerate(budgets):
                for condition, tier in budget.ceilings.items():
                    if tier not in allowed:
                        raise _problem(
                            f"'{tier}' is not a tier of fallback.chain or '{NO_CEILING}'"
                            f" (one of {', '.join(allowed)})",
                            *at, i, "ceilings", condition,
                        )
        return self

    @model_validator(mode="after")
    def _targets_name_budgets(self) -> Self:
        known = {b.name for b in self.budgets} | {
            b.name for org in self.organizations for b in org.budgets}
        for i, target in enumerate(self.fallback.targets):
            for j, name in enumerate(target.budgets or ()):
                if name not in known:
                    raise _problem(f"'{name}' is not a configured budget",
                                   "fallback", "targets", i, "budgets", j)
        return self

    @model_validator(mode="after")
    def _organizations_stand_alone(self) -> Self:
        from guard.config.organizations import organizations_problem  # noqa: PLC0415

        problem = organizations_problem(self)
        if problem is not None:
            raise _problem(*problem)
        return self

    def organizations_in_force(self) -> tuple[Organization, ...]:
        """Every organization this config guards, each as a single-organization view: the
        ``[[organizations]]`` in file order, else ``default`` (this config itself)."""
        from guard.config.organizations import organizations_of  # noqa: PLC0415

        return organizations_of(self)

    @property
    def several(self) -> bool:
        """Whether ``[[organizations]]`` is in use (reports and metrics then name them)."""
        return bool(self.organizations)

    def policy_config(self) -> PolicyConfig:
        """The policy's knobs: the chain, lifecycle timing and the staleness threshold."""
        p = self.policy
        return PolicyConfig(chain=tuple(self.fallback.chain),
                            raise_after=timedelta(minutes=p.raise_after_minutes),
                            clear_after=timedelta(minutes=p.clear_after_minutes),
                            repeat_interval=timedelta(minutes=p.repeat_interval_minutes),
                            stale_after=timedelta(minutes=self.anthropic.stale_after_minutes),
                            provider_cap_pct=p.provider_cap_pct)

    def budget_models(self) -> tuple[Budget, ...]:
        """The budgets as the core's frozen ``Budget`` values, in file order."""
        return tuple(budget.to_budget() for budget in self.budgets)

    def admin_api_key_value(self) -> str | None:
        """The Admin API key in plain text, from the value or its file."""
        return self.anthropic.secret_value("admin_api_key")

    def slack_bot_token_value(self) -> str | None:
        """The Slack bot token (xoxb-…) in plain text."""
        return self.slack.secret_value("bot_token")

    def slack_webhook_url_value(self) -> str | None:
        """The Slack incoming-webhook URL in plain text."""
        return self.slack.secret_value("webhook_url")

    def slack_app_token_value(self) -> str | None:
        """The Slack app-level token (xapp-…, Socket Mode) in plain text."""
        return self.slack.secret_value("app_token")

    def http_admin_token_value(self) -> str | None:
        """The bearer token for the HTTP write endpoints in plain text."""
        return self.http.secret_value("admin_token")


class _EnvSource(EnvSettingsSource):
    """``GUARD_*`` variables; JSON values keep their numbers exact, like the TOML file."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return json.loads(value, parse_float=Decimal)
