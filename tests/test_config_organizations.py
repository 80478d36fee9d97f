"""Specification of ``[[organizations]]``: each organization a single-organization view, the
shared sections shared, mixing with the single-organization keys refused by field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from guard.config import load_settings, render_settings
from guard.errors import ConfigError

SECRET = "sk-ant-admin01-ORGSECRET"
Writer = Callable[[str], Path]

TWO = f"""
[anthropic]
base_url = "https://shared.example"
poll_interval_s = 30
[state]
url = "sqlite:////var/lib/budget-guard/state.db"
[fallback]
env_file = "/run/budget-guard/model.env"
reload_command = ["true"]

[[organizations]]
name = "acme"
admin_api_key = "{SECRET}-1"
[[organizations.budgets]]
name = "org"
scope = "organization"
soft_limit_usd = 800
hard_limit_usd = 1000

[[organizations]]
name = "beta-2"
admin_api_key = "{SECRET}-2"
base_url = "https://beta.example"
source = "legacy"
env_file = "/srv/beta/model.env"
reload_command = []
"""


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """Write a guard.toml with the given text and return its path."""

    def _write(text: str) -> Path:
        path = tmp_path / "guard.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def problems(path: Path) -> list[tuple[str, str]]:
    """The (field path, reason) pairs that loading ``path`` reports."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_without_organizations_the_config_is_the_one_organization_default(
        write: Writer) -> None:
    """No [[organizations]]: one organization `default`, whose view is the config itself."""
    settings = load_settings(write('[anthropic]\nadmin_api_key = "k"\n'))
    (only,) = settings.organizations_in_force()
    assert (only.name, only.settings, only.schema) == ("default", settings, None)
    assert not settings.several
    assert "organizations" not in render_settings(settings)


def test_each_organization_has_its_key_budgets_and_outputs(write: Writer) -> None:
    """Each view has the organization's key, base_url, source, budgets and fallback files;
    what it leaves unset comes from the shared sections, files tagged with its name."""
    settings = load_settings(write(TWO))
    acme, beta = settings.organizations_in_force()
    assert settings.several and (acme.name, beta.name) == ("acme", "beta-2")
    assert acme.settings.admin_api_key_value() == f"{SECRET}-1"
    assert beta.settings.admin_api_key_value() == f"{SECRET}-2"
    assert str(acme.settings.anthropic.base_url) == "https://shared.example"
    assert (str(beta.settings.anthropic.base_url), beta.settings.anthropic.source) == (
        "https://beta.example", "legacy")
    assert acme.settings.anthropic.poll_interval_s == 30
    assert [b.name for b in acme.settings.budgets] == ["org"] and beta.settings.budgets == []
    assert acme.settings.fallback.env_file == Path("/run/budget-guard/model.acme.env")
    assert acme.settings.fallback.state_file == Path("/run/budget-guard/fallback.acme.json")
    assert beta.settings.fallback.env_file == Path("/srv/beta/model.env")
    assert (acme.settings.fallback.reload_command, beta.settings.fallback.reload_command) == (
        ["true"], [])
    assert not acme.settings.organizations and not acme.settings.several


@pytest.mark.parametrize(("url", "acme_url", "schema"), [
    ("sqlite:////var/lib/budget-guard/state.db",
     "sqlite:////var/lib/budget-guard/state.acme.db", None),
    ("postgresql+psycopg://guard@db/guard", "postgresql+psycopg://guard@db/guard", "org_acme"),
], ids=["sqlite-file-each", "postgresql-schema-each"])
def test_each_organization_has_a_namespace_of_its_own(
        write: Writer, url: str, acme_url: str, schema: str | None) -> None:
    """SQLite: a file of its own next to state.url's; PostgreSQL: a schema of its own."""
    settings = load_settings(write(TWO.replace("sqlite:////var/lib/budget-guard/state.db",
                                                url)))
    acme = settings.organizations_in_force()[0]
    assert (acme.settings.state.url, acme.schema) == (acme_url, schema)


def test_an_organization_named_default_keeps_the_stores_own_tables(write: Writer) -> None:
    """`default` among [[organizations]] has the single-organization namespace (its state
    carries over from a config without [[organizations]])."""
    settings = load_settings(write(TWO.replace('"acme"', '"default"')))
    first = settings.organizations_in_force()[0]
    assert first.default and first.schema is None
    assert first.settings.state.url == "sqlite:////var/lib/budget-guard/state.db"


@pytest.mark.parametrize(("extra", "path", "reason"), [
    ('[[budgets]]\nname = "top"\nscope = "organization"\nsoft_limit_usd = 1\n'
     "hard_limit_usd = 2\n", "budgets", "budgets belong to each organization"),
    ('[anthropic]\nadmin_api_key = "sk-ant-admin01-TOP"\n', "anthropic.admin_api_key",
     "each organization has its own admin key"),
    ('[[organizations]]\nname = "acme"\nadmin_api_key = "x"\n', "organizations[2].name",
     "'acme' is used twice"),
    ('[[organizations]]\nname = "Acme Corp"\nadmin_api_key = "x"\n', "organizations[2].name",
     "not an organization name"),
    ('[[organizations]]\nname = "c"\n', "organizations[2].admin_api_key", "required"),
    ('[[organizations]]\nname = "c"\nadmin_api_key = "x"\nenv_file = "/srv/beta/model.env"\n',
     "organizations[2].env_file", "each organization needs its own"),
    ('[[organizations]]\nname = "c"\nadmin_api_key = "x"\nsurprise = 1\n',
     "organizations[2].surprise", "unknown key"),
    ('[[organizations]]\nname = "c"\nadmin_api_key = "x"\n[[organizations.budgets]]\n'
     'name = "b"\nscope = "organization"\nsoft_limit_usd = 1\nhard_limit_usd = 2\n'
     '[organizations.budgets.ceilings]\nhard_reached = "gpt"\n',
     "organizations[2].budgets[0].ceilings.hard_reached", "not a tier"),
], ids=["top-level-budgets", "top-level-key", "name-twice", "bad-name", "no-key",
        "shared-env-file", "unknown-key", "bad-ceiling"])
def test_a_bad_organizations_config_names_the_field(
        write: Writer, extra: str, path: str, reason: str) -> None:
    """Every problem of [[organizations]] names its field path, like any bad config."""
    head, tail = TWO.split("\n[[organizations]]", 1)
    text = (extra + head + "\n[[organizations]]" + tail if extra.startswith("[anthropic]")
            or extra.startswith("[[budgets]]") else TWO + extra)
    if extra.startswith("[anthropic]"):
        text = text.replace('[anthropic]\nbase_url', 'base_url', 1)
    found = problems(write(text))
    assert [p for p, _ in found] == [path], found
    assert reason in found[0][1]
    assert SECRET not in str(found)


def test_organization_keys_are_masked_and_read_from_files(write: Writer,
                                                          tmp_path: Path) -> None:
    """An organization's key is masked in `config show`; a key file shows as the file."""
    key_file = tmp_path / "acme.key"
    key_file.write_text(f"{SECRET}-file\n")
    text = TWO.replace(f'admin_api_key = "{SECRET}-1"', f'admin_api_key_file = "{key_file}"')
    settings = load_settings(write(text))
    assert settings.organizations_in_force()[0].settings.admin_api_key_value() == (
        f"{SECRET}-file")
    shown = render_settings(settings)
    assert SECRET not in shown and str(key_file) in shown and "**********" in shown
