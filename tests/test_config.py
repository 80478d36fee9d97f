"""Specification of the configuration: sources, precedence, validation, secrets, rendering."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from guard.config import (
    ModelPriceOverride,
    load_settings,
    render_settings,
    resolve_config_path,
)
from guard.core.model import Budget, Scope
from guard.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
SECRET = "sk-ant-admin01-TOPSECRET"

ORG_BUDGET = """
[[budgets]]
name = "org"
scope = "organization"
soft_limit_usd = 800
hard_limit_usd = 1000
"""


Writer = Callable[[str], Path]


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


def paths(path: Path) -> list[str]:
    """The field paths that loading ``path`` reports."""
    return [field for field, _ in problems(path)]


def secret_file(tmp_path: Path, name: str = "key", text: str = SECRET + "\n") -> Path:
    """A credential file, as systemd LoadCredential= would provide it."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the example and defaults --------------------------------------------------------------


def test_example_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml loads once its admin key file exists (pointed to by the env)."""
    monkeypatch.setenv("GUARD_ANTHROPIC__ADMIN_API_KEY_FILE", str(secret_file(tmp_path)))
    settings = load_settings(EXAMPLE)
    assert settings.admin_api_key_value() == SECRET
    assert [b.name for b in settings.budget_models()] == ["org-monthly", "prod-workspace"]
    assert settings.fallback.chain == ["opus", "sonnet", "haiku"]
    assert settings.slack.channel == "#llm-spend"
    assert settings.slack.bot_token is None  # "" in the example means unset
    assert settings.http.admin_token_file is None


def test_example_without_key_file_names_the_file_field() -> None:
    """As shipped, the example names the credential file it could not read."""
    assert paths(EXAMPLE) == ["anthropic.admin_api_key_file"]


def test_empty_file_gives_documented_defaults(write: Writer) -> None:
    """An empty file means every default from DESIGN §4 and no budgets."""
    settings = load_settings(write(""))
    assert settings.anthropic.base_url == "https://api.anthropic.com"
    assert settings.anthropic.poll_interval_s == 60
    assert settings.state.url == "sqlite:////var/lib/budget-guard/state.db"
    assert settings.fallback.models["sonnet"] == "claude-sonnet-5-5"
    assert settings.fallback.model_var == "ANTHROPIC_MODEL"
    assert settings.http.listen == "127.0.0.1:9184"
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 9184)
    assert settings.budget_models() == ()
    assert settings.admin_api_key_value() is None


# --- environment overrides -----------------------------------------------------------------


def test_env_override_of_one_nested_key_keeps_siblings(
    write: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GUARD_ANTHROPIC__POLL_INTERVAL_S replaces that key only; the file's other keys stay."""
    path = write('[anthropic]\npoll_interval_s = 90\nbase_url = "http://127.0.0.1:8080"\n')
    monkeypatch.setenv("GUARD_ANTHROPIC__POLL_INTERVAL_S", "120")
    settings = load_settings(path)
    assert settings.anthropic.poll_interval_s == 120
    assert settings.anthropic.base_url == "http://127.0.0.1:8080"


def test_env_names_are_case_insensitive(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """guard_fallback__models__haiku overrides one model and keeps the others of the table."""
    monkeypatch.setenv("guard_fallback__models__haiku", "claude-haiku-9")
    settings = load_settings(write('[fallback.models]\nopus = "o"\nsonnet = "s"\nhaiku = "h"\n'))
    assert settings.fallback.models == {"opus": "o", "sonnet": "s", "haiku": "claude-haiku-9"}


def test_guard_config_variable_is_not_a_setting(
    write: Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GUARD_CONFIG selects the file; it is not rejected as an unknown key."""
    path = write("")
    monkeypatch.setenv("GUARD_CONFIG", str(path))
    assert load_settings(path).budgets == []


def test_env_error_names_the_field_path(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value from the environment is reported at the same path as in the file."""
    monkeypatch.setenv("GUARD_ANTHROPIC__POLL_INTERVAL_S", "5")
    assert problems(write("")) == [
        ("anthropic.poll_interval_s", "must be greater than or equal to 10")
    ]


def test_env_json_list_overrides_the_chain(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """List-valued keys take JSON from the environment."""
    monkeypatch.setenv("GUARD_FALLBACK__CHAIN", '["sonnet", "haiku"]')
    assert load_settings(write("")).fallback.chain == ["sonnet", "haiku"]


def test_env_invalid_json_is_a_config_error(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Malformed JSON in a GUARD_* variable is a ConfigError naming the section."""
    monkeypatch.setenv("GUARD_BUDGETS", "[{not json")
    assert paths(write("")) == ["budgets"]


# --- unknown keys and basic field rules ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("colour = 1\n", "colour"),
        ("[anthropic]\npoll_interval = 60\n", "anthropic.poll_interval"),
        ("[fallback]\nmodel_variable = 'X'\n", "fallback.model_variable"),
        ("[enforcment]\nenabled = true\n", "enforcment"),
        (ORG_BUDGET + "limit = 3\n", "budgets[0].limit"),
        ("[pricing.claude-x]\ninput = 1\noutput = 2\nbatch = 1\n", "pricing.claude-x.batch"),
    ],
    ids=["top-level", "anthropic", "fallback", "unknown-section", "budget", "pricing"],
)
def test_unknown_key_is_rejected_with_its_path(write: Writer, text: str, path: str) -> None:
    """Any key the schema does not know is an error at its own path."""
    assert problems(write(text)) == [(path, "unknown key")]


def test_unknown_key_from_env_is_rejected(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt nested GUARD_* variable is an unknown key too, not silently ignored."""
    monkeypatch.setenv("GUARD_SLACK__CHANEL", "#x")
    assert problems(write("")) == [("slack.chanel", "unknown key")]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[anthropic]\npoll_interval_s = 5\n", "anthropic.poll_interval_s"),
        ("[anthropic]\nbase_url = 'api.anthropic.com'\n", "anthropic.base_url"),
        ("[fallback]\nchain = []\n", "fallback.chain"),
        ("[fallback]\nchain = ['opus', 'haiku', 'opus']\n", "fallback.chain[2]"),
        ("[fallback]\nchain = ['opus', 'none']\n", "fallback.chain[1]"),
        ("[fallback]\nchain = ['opus', 'mini']\n", "fallback.models"),
        ("[fallback]\nmodel_var = 'ANTHROPIC-MODEL'\n", "fallback.model_var"),
        ("[fallback.models]\nopus = 'a,b'\nsonnet = 's'\nhaiku = 'h'\n", "fallback.models.opus"),
        ('[fallback.models]\nopus = "o\\n"\nsonnet = "s"\nhaiku = "h"\n', "fallback.models.opus"),
        ("[slack]\noncall_user_ids = ['U01', '@alice']\n", "slack.oncall_user_ids[1]"),
        ("[http]\nlisten = '9184'\n", "http.listen"),
        ("[http]\nlisten = 'localhost:http'\n", "http.listen"),
        ("[pricing.claude-x]\ninput = 1\n", "pricing.claude-x.output"),
        ("[pricing.claude-x]\ninput = -1\noutput = 2\n", "pricing.claude-x.input"),
        ("[anthropic]\nsource = 'billing'\n", "anthropic.source"),
    ],
    ids=[
        "poll-too-fast", "base-url-scheme", "empty-chain", "repeated-tier", "tier-named-none",
        "tier-without-model", "model-var-name", "comma-in-model-id", "newline-in-model-id",
        "oncall-user-id",
        "listen-no-host", "listen-port-name", "price-missing-output", "negative-price",
        "unknown-billing-source",
    ],
)
def test_invalid_value_names_its_path(write: Writer, text: str, path: str) -> None:
    """Each field rule reports the offending field's path."""
    assert paths(write(text)) == [path]


def test_chain_tier_without_model_says_which(write: Writer) -> None:
    """The fallback.models problem names the tier of the chain that has no model."""
    assert problems(write("[fallback]\nchain = ['opus', 'mini']\n")) == [
        ("fallback.models", "no model for tier mini of the chain")
    ]


def test_ipv6_listen_address_is_accepted(write: Writer) -> None:
    """A bracketed IPv6 listen address splits into host and port."""
    http = load_settings(write("[http]\nlisten = '[::1]:9184'\n")).http
    assert (http.host, http.port) == ("::1", 9184)


def test_all_problems_are_reported_together(write: Writer) -> None:
    """One run lists every independent problem, not only the first."""
    text = "[anthropic]\npoll_interval_s = 1\n[http]\nlisten = 'x'\n" + ORG_BUDGET + "typo = 1\n"
    assert sorted(paths(write(text))) == [
        "anthropic.poll_interval_s", "budgets[0].typo", "http.listen"
    ]


# --- budgets -------------------------------------------------------------------------------


def budget(scope: str, match: str | None = None, soft: str = "1", hard: str = "2") -> str:
    """One [[budgets]] table."""
    match_line = f'match = "{match}"\n' if match is not None else ""
    return (
        f'[[budgets]]\nname = "b-{scope}"\nscope = "{scope}"\n{match_line}'
        f"soft_limit_usd = {soft}\nhard_limit_usd = {hard}\n"
    )


def test_soft_above_hard_is_rejected_naming_the_budget(write: Writer) -> None:
    """A soft limit above the hard limit is reported at budgets[i].soft_limit_usd."""
    text = ORG_BUDGET + budget("workspace", "default", soft="900", hard="500")
    assert problems(write(text)) == [
        ("budgets[1].soft_limit_usd", "soft limit 900 exceeds hard limit 500")
    ]


@pytest.mark.parametrize(
    ("soft", "hard", "field"),
    [("0", "10", "soft_limit_usd"), ("5", "-1", "hard_limit_usd"), ("'x'", "10", "soft_limit_usd")],
    ids=["zero-soft", "negative-hard", "not-a-number"],
)
def test_limits_must_be_positive_numbers(write: Writer, soft: str, hard: str, field: str) -> None:
    """Limits are numbers greater than zero."""
    assert paths(write(budget("organization", soft=soft, hard=hard))) == [f"budgets[0].{field}"]


def test_duplicate_budget_names_are_rejected(write: Writer) -> None:
    """Budget names are unique; the second use is the one reported."""
    assert problems(write(ORG_BUDGET + ORG_BUDGET)) == [
        ("budgets[1].name", "budget name 'org' is used twice")
    ]


def test_blank_budget_name_is_rejected(write: Writer) -> None:
    """A budget needs a non-blank name."""
    assert paths(write(ORG_BUDGET.replace('"org"', '"  "'))) == ["budgets[0].name"]


@pytest.mark.parametrize(
    ("scope", "match", "expected"),
    [
        ("organization", None, None),
        ("organization", "", None),
        ("workspace", "default", "default"),
        ("workspace", "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ", "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"),
        ("api_key", "apikey_01Rj2N8SVvo6BePZj99NhmiT", "apikey_01Rj2N8SVvo6BePZj99NhmiT"),
        ("model", "claude-opus", "claude-opus"),
        ("model", "claude-sonnet-4-6", "claude-sonnet-4-6"),
    ],
    ids=["org-absent", "org-empty", "default-workspace", "workspace", "api-key", "model-family",
         "model-exact"],
)
def test_valid_scope_and_match(
    write: Writer,
    scope: str,
    match: str | None,
    expected: str | None,
) -> None:
    """Each scope accepts its kind of match; an empty organization match becomes None."""
    (converted,) = load_settings(write(budget(scope, match))).budget_models()
    assert (converted.scope, converted.match) == (Scope(scope), expected)


@pytest.mark.parametrize(
    ("scope", "match", "reason"),
    [
        ("organization", "wrkspc_1", "an organization budget takes no match"),
        ("workspace", None, "a workspace budget needs a match"),
        ("workspace", "prod", "'prod' is not a workspace id (wrkspc_…) or 'default'"),
        ("api_key", "", "a api_key budget needs a match"),
        ("api_key", "sk-ant-api03-x", "'sk-ant-api03-x' is not an API key id (apikey_…)"),
        ("model", "Claude Opus", "'Claude Opus' is not a model id prefix (like 'claude-opus')"),
    ],
    ids=["org-with-match", "workspace-missing", "workspace-name", "api-key-empty",
         "api-key-secret-not-id", "model-not-prefix"],
)
def test_invalid_scope_and_match(write: Writer, scope: str, match: str | None, reason: str) -> None:
    """Match must fit the scope: nothing for organization, an id or prefix for the others."""
    assert problems(write(budget(scope, match))) == [("budgets[0].match", reason)]


def test_unknown_scope_is_rejected(write: Writer) -> None:
    """Scope is one of the four kinds."""
    assert paths(write(budget("team", "x"))) == ["budgets[0].scope"]


def test_ceilings_become_pairs_of_condition_and_tier(write: Writer) -> None:
    """[budgets.ceilings] converts to a tuple of (condition, tier) pairs, "none" allowed."""
    text = ORG_BUDGET + '[budgets.ceilings]\nhard_reached = "haiku"\ndata_stale = "none"\n'
    assert load_settings(write(text)).budget_models() == (
        Budget(
            name="org",
            scope=Scope.ORGANIZATION,
            match=None,
            soft_limit_usd=Decimal(800),
            hard_limit_usd=Decimal(1000),
            ceilings=(("hard_reached", "haiku"), ("data_stale", "none")),
        ),
    )


@pytest.mark.parametrize(
    ("ceilings", "path", "reason_part"),
    [
        ('hard_reached = "mini"', "budgets[0].ceilings.hard_reached", "'mini' is not a tier"),
        ('hard_reched = "haiku"', "budgets[0].ceilings.hard_reched", "the key must be 'soft"),
    ],
    ids=["tier-not-in-chain", "unknown-condition"],
)
def test_bad_ceiling_is_rejected(write: Writer, ceilings: str, path: str, reason_part: str) -> None:
    """A ceiling names a known condition and a tier of the chain (or "none")."""
    ((field, reason),) = problems(write(ORG_BUDGET + f"[budgets.ceilings]\n{ceilings}\n"))
    assert field == path
    assert reason_part in reason


def test_ceiling_tier_is_checked_against_a_custom_chain(write: Writer) -> None:
    """With chain ["sonnet", "haiku"], "opus" is no longer a valid ceiling."""
    text = "[fallback]\nchain = ['sonnet', 'haiku']\n" + ORG_BUDGET
    text += '[budgets.ceilings]\nsoft_reached = "opus"\n'
    assert paths(write(text)) == ["budgets[0].ceilings.soft_reached"]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [("800.1", "800.1"), ("0.1", "0.1"), ("1234.5678901234567891", "1234.5678901234567891"),
     ("1e3", "1E+3"), ("800", "800")],
    ids=["one-decimal", "tenth", "more-digits-than-a-float", "exponent", "integer"],
)
def test_float_limits_become_exact_decimals(write: Writer, literal: str, expected: str) -> None:
    """A TOML number becomes the Decimal of its text, never the binary float's expansion."""
    text = budget("organization", soft=literal, hard="1e9")
    (converted,) = load_settings(write(text)).budget_models()
    assert converted.soft_limit_usd == Decimal(expected)
    assert str(converted.soft_limit_usd) == expected


def test_env_json_budgets_keep_exact_decimals(
    write: Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Budgets given as JSON in GUARD_BUDGETS are exact Decimals too."""
    monkeypatch.setenv(
        "GUARD_BUDGETS",
        '[{"name": "o", "scope": "organization", "soft_limit_usd": 0.1,'
        ' "hard_limit_usd": 1234.5678901234567891}]',
    )
    (converted,) = load_settings(write("")).budget_models()
    assert converted.soft_limit_usd == Decimal("0.1")
    assert converted.hard_limit_usd == Decimal("1234.5678901234567891")


# --- pricing -------------------------------------------------------------------------------


def test_pricing_overrides_are_typed(write: Writer) -> None:
    """[pricing] entries become ModelPriceOverride with exact Decimal prices."""
    text = (
        '[pricing]\n"claude-new" = { input = 4, output = 20.5 }\n'
        '"claude-geo" = { input = 5, output = 25, cache_read = 0.5, cache_write_5m = 6.25,'
        " cache_write_1h = 10, long_context_input = 10, long_context_output = 37.5,"
        " inference_geo_us = true }\n"
    )
    pricing = load_settings(write(text)).pricing
    assert pricing["claude-new"] == ModelPriceOverride(input=Decimal(4), output=Decimal("20.5"))
    geo = pricing["claude-geo"]
    assert (geo.cache_read, geo.cache_write_5m, geo.long_context_output) == (
        Decimal("0.5"), Decimal("6.25"), Decimal("37.5")
    )
    assert geo.inference_geo_us is True
    assert pricing["claude-new"].cache_read is None


# --- secrets -------------------------------------------------------------------------------


SECRET_FIELDS = [
    ("anthropic", "admin_api_key", "admin_api_key_value"),
    ("slack", "bot_token", "slack_bot_token_value"),
    ("slack", "webhook_url", "slack_webhook_url_value"),
    ("slack", "app_token", "slack_app_token_value"),
    ("http", "admin_token", "http_admin_token_value"),
]
SECRET_IDS = [f"{section}.{name}" for section, name, _ in SECRET_FIELDS]


@pytest.mark.parametrize(("section", "name", "accessor"), SECRET_FIELDS, ids=SECRET_IDS)
def test_secret_is_read_from_its_file(
    write: Writer, tmp_path: Path, section: str, name: str, accessor: str
) -> None:
    """`X_file` supplies secret X: the file's text with trailing whitespace stripped."""
    key_file = secret_file(tmp_path, text=SECRET + " \n\n")
    settings = load_settings(write(f'[{section}]\n{name}_file = "{key_file}"\n'))
    assert getattr(settings, accessor)() == SECRET


@pytest.mark.parametrize(("section", "name", "accessor"), SECRET_FIELDS, ids=SECRET_IDS)
def test_secret_inline_value(write: Writer, section: str, name: str, accessor: str) -> None:
    """A secret can also be given inline."""
    settings = load_settings(write(f'[{section}]\n{name} = "{SECRET}"\n'))
    assert getattr(settings, accessor)() == SECRET


def test_secret_and_its_file_together_are_rejected(write: Writer, tmp_path: Path) -> None:
    """Setting both the value and the file is an error naming the file field."""
    key_file = secret_file(tmp_path)
    text = f'[slack]\nbot_token = "{SECRET}"\nbot_token_file = "{key_file}"\n'
    assert problems(write(text)) == [
        ("slack.bot_token_file", "bot_token is set as well; set only one of them")
    ]


def test_secret_from_env_and_file_from_toml_are_both_set(
    write: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources merge before the check: an env value plus a file key in TOML is still both."""
    monkeypatch.setenv("GUARD_ANTHROPIC__ADMIN_API_KEY", SECRET)
    text = f'[anthropic]\nadmin_api_key_file = "{secret_file(tmp_path)}"\n'
    assert paths(write(text)) == ["anthropic.admin_api_key_file"]


@pytest.mark.parametrize(
    ("make_file", "reason_part"),
    [
        (lambda d: d / "missing", "No such file or directory"),
        (lambda d: d, "Is a directory"),
        (lambda d: secret_file(d, text=" \n"), "is empty"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_unreadable_secret_file_names_the_file_field(
    write: Writer,
    tmp_path: Path,
    make_file: Callable[[Path], Path],
    reason_part: str,
) -> None:
    """An unreadable or empty credential file is reported at the *_file field."""
    target = make_file(tmp_path)
    ((field, reason),) = problems(write(f'[http]\nadmin_token_file = "{target}"\n'))
    assert field == "http.admin_token_file"
    assert reason_part in reason


def test_empty_string_secret_means_unset(write: Writer) -> None:
    """`webhook_url = ""` (as in the example) disables the webhook rather than setting ""."""
    settings = load_settings(write('[slack]\nwebhook_url = ""\nbot_token_file = ""\n'))
    assert settings.slack_webhook_url_value() is None
    assert settings.slack.bot_token_file is None


@pytest.mark.parametrize(
    "text",
    [
        f'[slack]\nbot_tokn = "{SECRET}"\n',
        f'[slack]\nbot_token = ["{SECRET}"]\n',
        f'[anthropic]\nadmin_api_key = "{SECRET}"\nadmin_api_key_file = "/nonexistent"\n',
        f'colour = "{SECRET}"\n',
        f'[[budgets]]\nname = "x"\nscope = "organization"\nmatch = "{SECRET}"\n'
        "soft_limit_usd = 1\nhard_limit_usd = 2\n",
    ],
    ids=["misspelt-key", "wrong-type", "both-set", "unknown-top-level", "quoted-in-match"],
)
def test_secrets_never_appear_in_errors(write: Writer, text: str) -> None:
    """Error messages, and the exception chain a traceback would print, never hold a secret."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(text))
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_secret_from_env_never_appears_in_errors(
    write: Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret passed as a nested JSON env value is not echoed when the section is invalid."""
    monkeypatch.setenv("GUARD_SLACK", f'{{"bot_token": "{SECRET}", "bogus": 1}}')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(""))
    assert caught.value.problems == [("slack.bogus", "unknown key")]
    assert SECRET not in str(caught.value)


def test_secrets_are_masked_in_repr_and_render(write: Writer, tmp_path: Path) -> None:
    """repr and render_settings show "**********" for set secrets and the *_file paths."""
    key_file = secret_file(tmp_path)
    text = (
        f'[anthropic]\nadmin_api_key_file = "{key_file}"\n'
        f'[slack]\nbot_token = "{SECRET}"\nwebhook_url = "https://hooks.slack.com/{SECRET}"\n'
        f'[http]\nadmin_token = "{SECRET}"\n'
        f'[state]\nurl = "postgresql+psycopg://guard:{SECRET}@db/guard"\n'
    )
    settings = load_settings(write(text))
    rendered = render_settings(settings)
    for shown in (repr(settings), str(settings), rendered):
        assert SECRET not in shown
    parsed = tomllib.loads(rendered)
    assert parsed["anthropic"]["admin_api_key_file"] == str(key_file)
    assert "admin_api_key" not in parsed["anthropic"]  # shown as its file
    assert parsed["slack"]["bot_token"] == parsed["http"]["admin_token"] == "**********"
    assert parsed["slack"]["webhook_url"] == "**********"
    assert parsed["state"]["url"] == "postgresql+psycopg://guard:**********@db/guard"
    assert "app_token" not in parsed["slack"]  # None values are omitted


@pytest.mark.parametrize(("raw", "mode"), [('"0640"', 0o640), ("0o600", 0o600), ('"644"', 0o644)])
def test_file_mode_is_octal_text_or_a_toml_octal(write: Writer, raw: str, mode: int) -> None:
    """`fallback.file_mode` reads "0640" or 0o640, and config show writes it back as text."""
    settings = load_settings(write(f"[fallback]\nfile_mode = {raw}\n"))
    assert settings.fallback.file_mode == mode
    assert tomllib.loads(render_settings(settings))["fallback"]["file_mode"] == f"0{mode:o}"


@pytest.mark.parametrize("raw", ['"0755"', '"0400"', '"rw-r--r--"', "0o1644", "true"])
def test_a_bad_file_mode_names_the_field(write: Writer, raw: str) -> None:
    """Executable, not owner-writable, not octal, or past 0666: a config error."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(f"[fallback]\nfile_mode = {raw}\n"))
    assert [p for p, _ in caught.value.problems] == ["fallback.file_mode"]


@pytest.mark.parametrize("password", ["pa/ss", "p:w", "p#w", "a/b@c", "p%2Fw", "p?w=1"])
def test_a_state_url_password_is_masked_whatever_it_holds(write: Writer, password: str) -> None:
    """`/`, `:`, `#`, `@`, `?` or an escape in the password: config show masks all of it."""
    text = f'[state]\nurl = "postgresql+psycopg://guard:{password}@db.internal/guard"\n'
    rendered = render_settings(load_settings(write(text)))
    url = tomllib.loads(rendered)["state"]["url"]
    assert url == "postgresql+psycopg://guard:**********@db.internal/guard", url
    assert password not in rendered


def test_render_is_the_effective_config(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """render_settings shows env overrides, defaults and exact limits as TOML."""
    monkeypatch.setenv("GUARD_ANTHROPIC__POLL_INTERVAL_S", "300")
    text = budget("organization", soft="800.1", hard="1000")
    text += '[pricing]\n"claude-new" = { input = 4, output = 20.5 }\n'
    parsed = tomllib.loads(render_settings(load_settings(write(text))), parse_float=Decimal)
    assert parsed["anthropic"]["poll_interval_s"] == 300
    assert parsed["fallback"]["chain"] == ["opus", "sonnet", "haiku"]
    assert parsed["budgets"][0]["soft_limit_usd"] == Decimal("800.1")
    assert parsed["budgets"][0]["scope"] == "organization"
    assert parsed["pricing"]["claude-new"] == {"input": 4, "output": Decimal("20.5")}


# --- the file itself -----------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported with the path."""
    missing = tmp_path / "nope.toml"
    assert problems(missing) == [(str(missing), "file not found")]


def test_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    """A path that cannot be read as a file is a ConfigError, not an OSError."""
    assert paths(tmp_path) == [str(tmp_path)]


def test_toml_syntax_error_names_the_line(write: Writer) -> None:
    """A TOML syntax error says the line and column."""
    ((field, reason),) = problems(write('[anthropic]\nbase_url = "x"\npoll_interval_s = \n'))
    assert field.endswith("guard.toml")
    assert reason.startswith("invalid TOML at line 3, column 19")


# --- which file ----------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("cli", "environ", "local_exists", "expected"),
    [
        ("/cli.toml", {"GUARD_CONFIG": "/env.toml"}, True, Path("/cli.toml")),
        (None, {"GUARD_CONFIG": "/env.toml"}, True, Path("/env.toml")),
        (None, {"GUARD_CONFIG": ""}, True, Path("guard.toml")),
        (None, {}, True, Path("guard.toml")),
        (None, {}, False, Path("/etc/budget-guard/guard.toml")),
    ],
    ids=["cli-wins", "env-next", "empty-env-ignored", "local-file", "etc-default"],
)
def test_resolve_config_path_order(
    workdir: Path,
    cli: str | None,
    environ: dict[str, str],
    local_exists: bool,
    expected: Path,
) -> None:
    """--config, then $GUARD_CONFIG, then ./guard.toml if present, then /etc/budget-guard."""
    if local_exists:
        (workdir / "guard.toml").write_text("", encoding="utf-8")
    cli_path = Path(cli) if cli else None
    assert resolve_config_path(cli_path, environ) == expected
