"""Runtime settings resolved as: command-line flag > ``RETAUTH_*`` environment > TOML > default.

The TOML file is ``$RETAUTH_CONFIG`` or ``<user config dir>/retauth/config.toml`` and holds the
same keys as :class:`Settings` (e.g. ``db_url = "postgresql+psycopg://..."``). Keeping one
resolver means the CLI, the kiosk and the benchmarks all agree on where the store lives; it
is the only reader of ``RETAUTH_*`` variables (``RETAUTH_HOME`` and ``RETAUTH_CONFIG``, which
say where the rest lives, are read here too), including the secrets (the key, the passphrases,
the kiosk operator's token): those are kept out of ``repr`` and are refused in the TOML file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from biometrics.errors import ConfigurationError, InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "retauth"


def data_dir() -> Path:
    """Per-user data directory (database, key file), created on demand."""
    return Path(os.environ.get("RETAUTH_HOME") or platformdirs.user_data_dir(APP))


@dataclass(frozen=True)
class Settings:
    """Everything a retauth process needs to know about its deployment."""

    db_url: str = ""
    key_file: str = ""
    backend: str = "auto"
    weights: str = ""
    threshold: float | None = None
    memory_budget_mb: float | None = None
    low_memory: bool = False
    lockout_attempts: int = 5
    lockout_window_s: float = 900.0
    lockout_duration_s: float = 900.0
    #: Folder holding the public data sets (``RIDB/``, ``DRIVE/``...) for train/evaluate.
    data: str = ""
    #: ``libtvm_runtime.so`` to load instead of the one in the installed ``tvm`` package.
    tvm_runtime: str = ""
    #: Where evaluation caches templates (default: the per-user cache dir).
    cache_dir: str = ""
    #: The kiosk operator's token (``RETAUTH_OPERATOR_TOKEN``); kept out of ``repr``.
    operator_token: str = field(default="", repr=False)
    #: ``RETAUTH_KEY``: base64 data-encryption key(s), newest first (see enrollment.keys).
    key: str = field(default="", repr=False)
    #: ``RETAUTH_PASSPHRASE``: the store's passphrase, stretched with scrypt.
    passphrase: str = field(default="", repr=False)
    #: ``RETAUTH_PASSPHRASE_OLD``: the previous passphrase, kept usable while rotating.
    passphrase_old: str = field(default="", repr=False)
    #: Dask scheduler address (``tcp://host:8786``) for sharded 1:N and ``retauth dedup``.
    dask_scheduler: str = ""
    #: Parsed reference templates a service keeps (each ~0.11 MB with its matcher maps, so
    #: ~30 MB in all): the last dozen 1:N shortlists and recent claimants stay warm.
    reference_cache: int = 256
    #: Store and compare protected references (ISO/IEC 24745: keyed, renewable, no vessel
    #: map) instead of plain templates; chosen when the store is first used, fixed after.
    protected_templates: bool = False

    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{data_dir() / 'retauth.db'}"

    def resolved_key_file(self) -> Path:
        return Path(self.key_file) if self.key_file else data_dir() / "retauth.key"

    def key_secrets(self) -> dict[str, str]:
        """The key material given in the environment, by variable name, for ``key_source``.

        Secret: never log or print it (the fields are already kept out of ``repr``).
        """
        return {
            "RETAUTH_KEY": self.key,
            "RETAUTH_PASSPHRASE": self.passphrase,
            "RETAUTH_PASSPHRASE_OLD": self.passphrase_old,
        }

    def resolved_cache_dir(self) -> Path:
        """Per-user cache: shared by every ``retauth evaluate --out`` folder and protocol."""
        return Path(self.cache_dir) if self.cache_dir else Path(platformdirs.user_cache_dir(APP))


class ConfigError(ConfigurationError):
    """The configuration file or an environment variable is malformed (exit 2)."""


def _config_path() -> Path:
    env = os.environ.get("RETAUTH_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP)) / "config.toml"


#: Secrets come from the environment (e.g. a systemd credential) or a private file, never from
#: the config file: that is usually readable by everyone, and nothing checks its mode.
_SECRETS = frozenset({"operator_token", "key", "passphrase", "passphrase_old"})


_NUMBERS = {
    "threshold": float,
    "memory_budget_mb": float,
    "lockout_attempts": int,
    "lockout_window_s": float,
    "lockout_duration_s": float,
    "reference_cache": int,
}


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


#: Settings that are true or false.
_FLAGS = frozenset({"low_memory", "protected_templates"})


def _coerce(name: str, value: Any) -> Any:
    if name in _FLAGS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in _TRUE + _FALSE:
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return text in _TRUE
    if name in _NUMBERS:
        if name in ("threshold", "memory_budget_mb") and value in (None, ""):
            return None
        try:
            number = _NUMBERS[name](value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{name} must not be negative, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def load_settings(*, defaults: dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """Resolve settings; ``overrides`` are command-line values (``None`` means not given).

    ``defaults`` are a caller's own defaults (the kiosk's low-memory mode): they replace the
    built-in ones but lose to the config file and the environment, unlike a flag default.
    """
    values: dict[str, Any] = dict(defaults or {})
    path = _config_path()
    if path.is_file():
        try:
            document = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        secrets = sorted(_SECRETS & set(document))
        if secrets:
            variables = ", ".join(f"RETAUTH_{name.upper()}" for name in secrets)
            raise ConfigError(
                f"{path}: {', '.join(secrets)} must not be in the config file (it is not kept "
                f"private); set {variables} in the environment instead"
            )
        values.update(document)
    names = {f.name for f in fields(Settings)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    for name in names:
        env = os.environ.get(f"RETAUTH_{name.upper()}")
        if env is not None:
            values[name] = env
        if overrides.get(name) is not None:
            values[name] = overrides[name]
    return replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})


def data_root(flag: str | Path | None = None, *, what: str = "a data folder") -> Path:
    """The data folder from ``flag`` (argument or ``--data``), else ``RETAUTH_DATA``.

    The error names the path that is missing and where it came from, and says where the
    data sets come from: they are public but not shipped (licences), so a fresh clone has
    none.
    """
    source = "command line" if flag else "RETAUTH_DATA"
    value = flag or load_settings().data
    if not value:
        raise InputError(
            f"give {what} on the command line or in RETAUTH_DATA; the public data sets (RIDB, DRIVE, "
            "CHASE_DB1, HRF) are not shipped, see README 'Data and attribution'"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise InputError(f"data folder {root} (from {source}) does not exist or is not a folder")
    return root
