"""Settings resolve flag > RETAUTH_* environment > TOML > default, with typed values."""

import pytest

from biometrics.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("RETAUTH_LOW_MEMORY", "RETAUTH_MEMORY_BUDGET_MB", "RETAUTH_BACKEND"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("Yes", True), ("off", False)])
def test_low_memory_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("RETAUTH_LOW_MEMORY", text)
    assert load_settings().low_memory is expected


def test_flag_beats_environment_beats_file(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('backend = "classical"\nlow_memory = true\nmemory_budget_mb = 64\n')
    monkeypatch.setenv("RETAUTH_CONFIG", str(config))
    settings = load_settings()
    assert (settings.backend, settings.low_memory, settings.memory_budget_mb) == (
        "classical",
        True,
        64.0,
    )
    monkeypatch.setenv("RETAUTH_LOW_MEMORY", "0")
    assert load_settings().low_memory is False
    assert load_settings(low_memory=True, backend="onnxruntime").backend == "onnxruntime"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RETAUTH_LOW_MEMORY", "maybe", "true or false"),
        ("RETAUTH_LOCKOUT_ATTEMPTS", "-1", "negative"),
    ],
)
def test_malformed_values_are_refused_with_their_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


SECRETS = {
    "RETAUTH_KEY": "a2V5LW1hdGVyaWFs",
    "RETAUTH_PASSPHRASE": "correct horse",
    "RETAUTH_PASSPHRASE_OLD": "old horse",
    "RETAUTH_OPERATOR_TOKEN": "operator-secret",
}


def test_secrets_resolve_from_the_environment_and_stay_out_of_repr(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.key, settings.passphrase, settings.passphrase_old) == (
        "a2V5LW1hdGVyaWFs",
        "correct horse",
        "old horse",
    )
    assert settings.operator_token == "operator-secret"
    assert settings.key_secrets() == {k: v for k, v in SECRETS.items() if "OPERATOR" not in k}
    assert not any(value in repr(settings) for value in SECRETS.values())


@pytest.mark.parametrize("name", ["key", "passphrase", "passphrase_old", "operator_token"])
def test_secrets_are_refused_in_the_config_file(tmp_path, monkeypatch, name):
    config = tmp_path / "config.toml"
    config.write_text(f'{name} = "do-not-echo-me"\n')
    monkeypatch.setenv("RETAUTH_CONFIG", str(config))
    with pytest.raises(ConfigError, match=f"RETAUTH_{name.upper()}") as info:
        load_settings()
    assert "do-not-echo-me" not in str(info.value)
