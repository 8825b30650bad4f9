"""Settings: defaults, parsing, and the refusals that keep a bad deployment from starting."""

from pathlib import Path

import pytest

from gru.config import ConfigError, Settings

SECRET = "s" * 32
TOKEN1_SECRET = "k" * 32
PRODUCTION = {"GRU_ENV": "production", "GRU_SECRET": SECRET, "GRU_TOKEN1_VERIFIER": "hmac",
              "GRU_TOKEN1_SECRET": TOKEN1_SECRET, "GRU_CORS_ORIGINS": "https://school.example"}


def test_defaults_are_the_embedded_single_process_service():
    settings = Settings.from_env({})
    assert settings.bind == "0.0.0.0:30000"
    assert settings.workers == 1
    assert settings.node_name == "node_1"
    assert settings.verifier == "accept"
    assert settings.auth_timeout == 10
    assert settings.max_content == 65536
    assert settings.redis_url is None
    assert settings.user_type_names == {0: "TEACHER", 1: "STUDENT"}


def test_values_come_from_gru_variables_and_other_variables_are_ignored():
    settings = Settings.from_env({"GRU_BIND": "127.0.0.1:11111", "GRU_AUTH_TIMEOUT": "2.5",
                                  "GRU_USER_TYPES": "0:T,1:S,2:PARENT", "HOME": "/x", "GRU_WORKERS": ""})
    assert settings.bind == "127.0.0.1:11111"
    assert settings.auth_timeout == 2.5
    assert settings.user_type_names[2] == "PARENT"
    assert settings.workers == 1


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GRU_BIND": "30000"}, "GRU_BIND"),
        ({"GRU_WORKERS": "many"}, "GRU_WORKERS"),
        ({"GRU_AUTH_TIMEOUT": "-1"}, "GRU_AUTH_TIMEOUT"),
        ({"GRU_TOKEN1_VERIFIER": "ldap"}, "GRU_TOKEN1_VERIFIER"),
        ({"GRU_PUBLIC_ADDR": "10.0.0.1:11111"}, "GRU_PUBLIC_ADDR"),
        ({"GRU_USER_TYPES": "TEACHER"}, "GRU_USER_TYPES"),
        ({"GRU_ENV": "production"}, "GRU_SECRET"),
        ({"GRU_ENV": "production", "GRU_SECRET": SECRET}, "GRU_TOKEN1_VERIFIER"),
        ({"GRU_ENV": "production", "GRU_SECRET": SECRET, "GRU_TOKEN1_VERIFIER": "accept"}, "accept"),
        ({"GRU_ENV": "production", "GRU_SECRET": SECRET, "GRU_TOKEN1_VERIFIER": "hmac", "GRU_TOKEN1_SECRET": "x" * 32},
         "GRU_CORS_ORIGINS"),
        ({"GRU_SECRET": "short"}, "32 characters"),
        ({"GRU_TOKEN1_VERIFIER": "hmac"}, "GRU_TOKEN1_SECRET"),
        ({"GRU_TOKEN1_VERIFIER": "http"}, "GRU_TOKEN1_URL"),
        ({"GRU_WORKERS": "2"}, "GRU_REDIS_URL"),
        ({"GRU_REDIS_URL": "http://x"}, "GRU_REDIS_URL"),
    ],
)
def test_bad_configuration_is_refused_with_the_variable_named(env, needle):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert needle in str(info.value)


def test_production_starts_with_a_secret_and_a_real_verifier():
    settings = Settings.from_env(PRODUCTION)
    assert settings.signing_secret == SECRET
    assert settings.cors_allowed == ["https://school.example"]


@pytest.mark.parametrize(("change", "needle"), [
    ({"GRU_TOKEN1_SECRET": "k"}, "GRU_TOKEN1_SECRET must be at least 32"),
    ({"GRU_TOKEN1_SECRET": "k" * 31}, "GRU_TOKEN1_SECRET must be at least 32"),
    ({"GRU_CORS_ORIGINS": "*"}, "GRU_CORS_ORIGINS must list"),
    ({"GRU_CORS_ORIGINS": "https://school.example, *"}, "GRU_CORS_ORIGINS must list"),
])
def test_production_refuses_a_guessable_token1_secret_and_any_origin(change, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(PRODUCTION | change)
    Settings.from_env({k: v for k, v in (PRODUCTION | change).items() if k != "GRU_ENV"})  # fine in development


def test_production_names_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"GRU_ENV": "production"})
    assert all(name in str(info.value) for name in ("GRU_SECRET", "GRU_TOKEN1_VERIFIER", "GRU_CORS_ORIGINS"))
    with pytest.raises(ConfigError) as info:
        Settings.from_env(PRODUCTION | {"GRU_TOKEN1_SECRET": "k", "GRU_CORS_ORIGINS": "*", "GRU_WORKERS": "2"})
    assert all(name in str(info.value) for name in ("GRU_TOKEN1_SECRET", "GRU_CORS_ORIGINS", "GRU_REDIS_URL"))


@pytest.mark.parametrize("origin", [
    "https://school.example.evil.com", "https://evil-school.example", "https://evilschool.example",
    "https://school.exampl", "https://school.example.", "https://school.example/", "https://school.example:8443",
    "http://school.example", "wss://school.example", "HTTPS://SCHOOL.EXAMPLE", "https://School.example",
    "https://school.example@evil.com", "https://app.school.example", "null", "", "*",
    "https://school.example,https://evil.example", " https://school.example",
])
def test_only_the_exact_listed_origins_are_allowed(origin):
    settings = Settings.from_env({"GRU_CORS_ORIGINS": "https://school.example, https://teach.example:8080"})
    assert settings.origin_allowed("https://school.example") and settings.origin_allowed("https://teach.example:8080")
    assert settings.origin_allowed(None)  # no browser: CORS does not apply
    assert not settings.origin_allowed(origin)
    assert not settings.origin_allowed(origin, own_origin="http://127.0.0.1:30000")
    assert settings.origin_allowed("http://127.0.0.1:30000", own_origin="http://127.0.0.1:30000")


def test_several_secrets_rotate_keys():
    settings = Settings.from_env({"GRU_SECRET": f"{'n' * 32}, {SECRET}"})
    assert settings.token_keys == ["n" * 32, SECRET] and settings.signing_secret == "n" * 32
    with pytest.raises(ConfigError, match="every key"):
        Settings.from_env({"GRU_SECRET": f"{SECRET},short"})


def test_secrets_are_not_shown_in_the_settings_repr():
    settings = Settings.from_env({"GRU_SECRET": SECRET})
    assert SECRET not in repr(settings)


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [f"GRU_{name.upper()}" for name in Settings.model_fields if f"`GRU_{name.upper()}`" not in readme]
    assert missing == []


def test_production_accepts_a_token1_secret_longer_than_the_minimum():
    settings = Settings.from_env(PRODUCTION | {"GRU_TOKEN1_SECRET": "k" * 64})
    assert settings.token1_secret.get_secret_value() == "k" * 64


@pytest.mark.parametrize("env", [{}, {"GRU_CORS_ORIGINS": "*"}, {"GRU_CORS_ORIGINS": " * "}])
def test_development_allows_every_origin_by_default(env):
    settings = Settings.from_env(env)
    assert settings.cors_allowed == "*"
    assert settings.origin_allowed("https://anything.example")
    assert settings.origin_allowed(None, own_origin="http://127.0.0.1:30000")


@pytest.mark.parametrize("value", [",", " , ", "'quoted'", "!x"])
def test_an_origin_list_without_a_star_never_allows_every_origin(value):
    settings = Settings.from_env({"GRU_CORS_ORIGINS": value})
    assert settings.cors_allowed != "*"
    assert not settings.origin_allowed("https://evil.example")


def test_a_page_of_gru_itself_is_allowed_and_a_page_without_origin_too():
    settings = Settings.from_env({"GRU_CORS_ORIGINS": "https://school.example"})
    own = "".join(["http://127.0.0.1", ":30000"])  # built per request from its Host, never the same object
    assert settings.origin_allowed("http://127.0.0.1:30000", own_origin=own)
    assert settings.origin_allowed(None, own_origin=own)
