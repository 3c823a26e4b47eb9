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
