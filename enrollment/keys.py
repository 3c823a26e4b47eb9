"""Data-encryption keys: where they come from, and the keyring that holds old and new ones.

Three sources, first match wins:

1. ``RETAUTH_KEY``: one or more base64-encoded 32-byte keys separated by commas, newest
   first (to rotate, put the new key in front and run ``retauth keys rotate``).
2. ``RETAUTH_PASSPHRASE``: stretched with scrypt; the salt and cost parameters live in the
   store itself, so a backup of the database plus the passphrase is enough to restore.
   ``RETAUTH_PASSPHRASE_OLD`` keeps a previous passphrase usable while rotating.
3. A key file (``Settings.resolved_key_file()``), created with mode 0600 (its new folders
   0700) the first time a new store is opened, and refused if group or others can read it or
   can write to its folder. It holds several keys, newest first, so ``retauth keys rotate``
   can add one and ``retauth keys retire`` remove one.

Every key has an id, an HMAC of a fixed label under the key, so records can say which key
sealed them without revealing anything about it.

The values of ``RETAUTH_KEY`` and ``RETAUTH_PASSPHRASE[_OLD]`` reach :func:`key_source` through
:class:`biometrics.settings.Settings` (``key``, ``passphrase``, ``passphrase_old``, kept out of
``repr``); this module does not read the environment itself.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import hashlib
import hmac
import json
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from biometrics.errors import StoredDataError
from enrollment.errors import KeyConfigError
from enrollment.private import make_private_dirs, shared_mode

KEY_BYTES = 32
KEY_ID_BYTES = 8
_KEY_FILE_FORMAT = "retauth-keys"
_SCRYPT_DEFAULTS = {"n": 2**15, "r": 8, "p": 1}
#: Bounds on stored scrypt parameters, checked before deriving: they live in the database, so
#: whoever can write it could otherwise make every open allocate gigabytes (memory is
#: 128*n*r bytes: 32 MiB for the defaults) or run for hours (time grows with n*r*p).
_SCRYPT_MAX_N = 2**20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16
_SCRYPT_MAX_MEMORY = 128 * 2**20
_SCRYPT_MAX_WORK = 32 * 128 * 2**15 * 8  # 32 times the defaults' 128*n*r*p
_SCRYPT_MIN_SALT = 16


def key_id(material: bytes) -> bytes:
    """Public identifier of a key: HMAC-SHA256 of a fixed label, truncated to 8 bytes."""
    return hmac.new(material, b"retauth key id v1", hashlib.sha256).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class Key:
    """A 32-byte AES-256 key; ``repr`` never shows the material."""

    material: bytes = field(repr=False)
    created: int = 0
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise KeyConfigError(f"a key must be {KEY_BYTES} bytes, got {len(self.material)}")
        object.__setattr__(self, "id", key_id(self.material))


class Keyring:
    """Keys newest first: seal with the first (primary), open with whichever the record names.

    This is ``MultiFernet`` for the store: rotation adds a key in front, re-seals every record,
    and the old key can then be retired.
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = tuple(keys)
        if not self.keys:
            raise KeyConfigError("no encryption key configured")
        self._by_id = {k.id: k for k in self.keys}

    @property
    def primary(self) -> Key:
        return self.keys[0]

    def get(self, kid: bytes) -> Key | None:
        return self._by_id.get(kid)

    def __repr__(self) -> str:
        return f"Keyring({', '.join(k.id.hex() for k in self.keys)})"


def generate_key() -> Key:
    return Key(os.urandom(KEY_BYTES), created=int(time.time()))


class KeySource:
    """Where the keyring comes from; subclasses differ in whether they can store new keys."""

    name = "key source"
    #: True when ``retauth keys rotate`` may create a key itself (key file only).
    can_generate = False

    def load(self, kdf: Mapping[str, Any] | None, *, create: bool) -> Keyring:
        """Return the keyring; ``create`` allows initialising the source for a new store."""
        raise NotImplementedError

    def new_kdf(self) -> dict[str, Any] | None:
        """Key-derivation parameters to store with a new database (passphrases only)."""
        return None

    def add_key(self, key: Key) -> None:
        raise KeyConfigError(f"keys from {self.name} are managed outside retauth")

    def remove_key(self, kid: bytes) -> bool:
        """Remove a key from storage; False when the source is managed outside retauth."""
        return False


class EnvKeySource(KeySource):
    """``RETAUTH_KEY``: comma-separated base64 keys, newest first."""

    name = "RETAUTH_KEY"

    def __init__(self, value: str) -> None:
        self._value = value

    def load(self, kdf: Mapping[str, Any] | None, *, create: bool) -> Keyring:
        keys = []
        for position, text in enumerate(p.strip() for p in self._value.split(",")):
            try:
                material = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
            except (binascii.Error, ValueError):
                raise KeyConfigError(
                    f"RETAUTH_KEY entry {position + 1} is not valid base64"
                ) from None
            if len(material) != KEY_BYTES:
                raise KeyConfigError(
                    f"RETAUTH_KEY entry {position + 1} must decode to {KEY_BYTES} bytes, "
                    f"got {len(material)}"
                )
            keys.append(Key(material))
        return Keyring(keys)


class PassphraseKeySource(KeySource):
    """``RETAUTH_PASSPHRASE`` (and optionally ``RETAUTH_PASSPHRASE_OLD``) through scrypt."""

    name = "RETAUTH_PASSPHRASE"

    def __init__(self, passphrases: list[str]) -> None:
        self._passphrases = passphrases

    def new_kdf(self) -> dict[str, Any]:
        return {
            "alg": "scrypt",
            **_SCRYPT_DEFAULTS,
            "salt": base64.b64encode(os.urandom(16)).decode(),
        }

    def load(self, kdf: Mapping[str, Any] | None, *, create: bool) -> Keyring:
        if kdf is None:
            raise KeyConfigError("the store has no passphrase salt; it was created with a key")
        salt, n, r, p = _scrypt_parameters(kdf)
        return Keyring(
            Key(Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(phrase.encode()))
            for phrase in self._passphrases
        )


def _scrypt_parameters(kdf: object) -> tuple[bytes, int, int, int]:
    """Salt, n, r, p of a stored KDF description, refused (exit 3) unless within bounds.

    Whatever this version writes is within them; anything else was altered in the database.
    """
    malformed = StoredDataError("the store's passphrase parameters are malformed")
    if not isinstance(kdf, Mapping) or kdf.get("alg", "scrypt") != "scrypt":
        raise malformed
    try:
        salt = base64.b64decode(kdf["salt"], validate=True)
        n, r, p = kdf["n"], kdf["r"], kdf["p"]
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise malformed from None
    if not all(type(v) is int for v in (n, r, p)):
        raise malformed
    if not (
        2 <= n <= _SCRYPT_MAX_N
        and n & (n - 1) == 0
        and 1 <= r <= _SCRYPT_MAX_R
        and 1 <= p <= _SCRYPT_MAX_P
        and 128 * n * r <= _SCRYPT_MAX_MEMORY
        and 128 * n * r * p <= _SCRYPT_MAX_WORK
        and len(salt) >= _SCRYPT_MIN_SALT
    ):
        raise StoredDataError(
            f"the store's passphrase parameters are out of bounds (n={n}, r={r}, p={p}, "
            f"{len(salt)}-byte salt): the database was altered"
        )
    return salt, n, r, p


class FileKeySource(KeySource):
    """A JSON key file readable by its owner only; the one source that can rotate by itself.

    Writes go to ``<name>.<pid>.tmp`` and are renamed into place; a writer killed half-way
    leaves that temp file (with key material) behind, so every load removes the temp files of
    processes that no longer run.
    """

    can_generate = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"key file {path}"

    def load(self, kdf: Mapping[str, Any] | None, *, create: bool) -> Keyring:
        self._remove_stale_temp_files()
        if not self.path.exists():
            if not create:
                raise KeyConfigError(
                    f"key file {self.path} not found; this store was encrypted with another key"
                )
            with contextlib.suppress(FileExistsError):  # another process created it first
                self._write([generate_key()], exclusive=True)
        return Keyring(self._read())

    def add_key(self, key: Key) -> None:
        self._write([key, *self._read()])

    def remove_key(self, kid: bytes) -> bool:
        self._write([k for k in self._read() if k.id != kid])
        return True

    def _check_folder(self) -> None:
        """Refuse a folder that others may write to: they could swap or plant the key file."""
        folder = self.path.parent
        mode = shared_mode(folder)
        if mode is not None and mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyConfigError(
                f"the folder {folder} of the key file is writable by group or others "
                f"(mode {mode:04o}); keep the key in a private folder (chmod 700 {folder})"
            )

    def _remove_stale_temp_files(self) -> None:
        """Delete ``<name>.<pid>.tmp`` left by a writer that was killed (its pid is gone)."""
        prefix = f"{self.path.name}."
        for tmp in self.path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            pid = tmp.name[len(prefix) : -len(".tmp")]
            if pid.isdigit() and not _process_exists(int(pid)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _read(self) -> list[Key]:
        try:
            self._check_folder()
            mode = shared_mode(self.path)
            if mode is not None:
                raise KeyConfigError(
                    f"key file {self.path} is accessible by group or others "
                    f"(mode {mode:04o}); run: chmod 600 {self.path}"
                )
            doc = json.loads(self.path.read_text())
        except OSError as exc:
            raise KeyConfigError(f"cannot read key file {self.path}: {exc.strerror}") from None
        except ValueError:
            raise KeyConfigError(f"key file {self.path} is malformed") from None
        if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
            _KEY_FILE_FORMAT,
            1,
        ):
            raise KeyConfigError(f"key file {self.path} has an unknown format")
        entries = doc.get("keys")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise KeyConfigError(f"key file {self.path} is malformed")
        try:
            return [
                Key(base64.b64decode(e["key"], validate=True), created=int(e["created"]))
                for e in entries
            ]
        except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):
            raise KeyConfigError(f"key file {self.path} is malformed") from None

    def _write(self, keys: list[Key], *, exclusive: bool = False) -> None:
        """Write a complete temp file (0600, fsynced), then link or rename it into place.

        A process killed half-way leaves at most a stray temp file, never a partial key file;
        ``exclusive`` (first creation) raises ``FileExistsError`` if another process won.
        """
        doc = {
            "format": _KEY_FILE_FORMAT,
            "version": 1,
            "keys": [
                {
                    "id": k.id.hex(),
                    "created": k.created,
                    "key": base64.b64encode(k.material).decode(),
                }
                for k in keys
            ],
        }
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            make_private_dirs(self.path.parent)
            self._check_folder()
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(tmp, flags, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write((json.dumps(doc, indent=1) + "\n").encode())
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                os.link(tmp, self.path)
            else:
                os.replace(tmp, self.path)
        except FileExistsError:
            raise
        except OSError as exc:
            raise KeyConfigError(f"cannot write key file {self.path}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def key_source(key_file: Path, secrets: Mapping[str, str] | None = None) -> KeySource:
    """Pick the key source by precedence: ``RETAUTH_KEY`` > ``RETAUTH_PASSPHRASE`` > file.

    ``secrets`` holds those values by variable name, as :meth:`Settings.key_secrets
    <biometrics.settings.Settings.key_secrets>` resolves them (the settings resolver is the
    only reader of the environment); without it, the key file is the source.
    """
    env = secrets or {}
    if env.get("RETAUTH_KEY"):
        return EnvKeySource(env["RETAUTH_KEY"])
    if env.get("RETAUTH_PASSPHRASE"):
        old = env.get("RETAUTH_PASSPHRASE_OLD")
        return PassphraseKeySource([env["RETAUTH_PASSPHRASE"], *([old] if old else [])])
    return FileKeySource(key_file)
