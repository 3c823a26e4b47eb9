"""Key sources: RETAUTH_KEY, passphrase, key file (0600, refused when others can read it)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from biometrics.settings import Settings, load_settings
from enrollment import TemplateStore
from enrollment.errors import KeyConfigError
from enrollment.keys import (
    EnvKeySource,
    FileKeySource,
    Key,
    PassphraseKeySource,
    key_source,
)

RAW = bytes(range(32))
B64 = base64.b64encode(RAW).decode()


def test_env_key_multiple_newest_first() -> None:
    other = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    ring = EnvKeySource(f"{B64}, {other}").load(None, create=False)
    assert [k.material for k in ring.keys] == [RAW, bytes(32)]
    assert ring.primary.material == RAW


@pytest.mark.parametrize(
    ("value", "message"),
    [("not base64!!", "not valid base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_env_key_malformed(value: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as info:
        EnvKeySource(value).load(None, create=False)
    assert value not in str(info.value)


def test_key_repr_hides_material() -> None:
    key = Key(RAW)
    assert RAW.hex() not in repr(key) and str(list(RAW)) not in repr(key)
    assert B64 not in repr(key)


def test_key_file_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "retauth.key"
    ring = FileKeySource(path).load(None, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(ring.keys) == 1
    assert FileKeySource(path).load(None, create=False).primary == ring.primary


def test_key_file_not_created_for_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "retauth.key"
    with pytest.raises(KeyConfigError, match="not found"):
        FileKeySource(path).load(None, create=False)
    assert not path.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "retauth.key"
    FileKeySource(path).load(None, create=True)
    os.chmod(path, mode)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        FileKeySource(path).load(None, create=False)


def test_key_file_malformed(tmp_path: Path) -> None:
    path = tmp_path / "retauth.key"
    path.write_text(json.dumps({"format": "retauth-keys", "version": 1, "keys": [{"key": "!"}]}))
    os.chmod(path, 0o600)
    with pytest.raises(KeyConfigError, match="malformed"):
        FileKeySource(path).load(None, create=False)


def test_key_file_add_and_remove(tmp_path: Path) -> None:
    source = FileKeySource(tmp_path / "k")
    first = source.load(None, create=True).primary
    new = Key(RAW)
    source.add_key(new)
    assert [k.id for k in source.load(None, create=False).keys] == [new.id, first.id]
    assert source.remove_key(first.id)
    assert [k.id for k in source.load(None, create=False).keys] == [new.id]
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [tmp_path / "k"]  # no temp file left behind


def test_passphrase_is_stretched_with_stored_salt() -> None:
    source = PassphraseKeySource(["correct horse"])
    kdf = {**source.new_kdf(), "n": 2**10}
    a = source.load(kdf, create=False).primary
    assert a == PassphraseKeySource(["correct horse"]).load(kdf, create=False).primary
    assert a != PassphraseKeySource(["wrong horse"]).load(kdf, create=False).primary
    other_salt = {**PassphraseKeySource(["x"]).new_kdf(), "n": 2**10}
    assert a != source.load(other_salt, create=False).primary


def test_source_precedence(tmp_path: Path) -> None:
    path = tmp_path / "k"
    assert isinstance(
        key_source(path, {"RETAUTH_KEY": B64, "RETAUTH_PASSPHRASE": "p"}), EnvKeySource
    )
    assert isinstance(key_source(path, {"RETAUTH_PASSPHRASE": "p"}), PassphraseKeySource)
    assert isinstance(key_source(path, {}), FileKeySource)


def test_key_comes_from_the_settings_resolver(sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    """RETAUTH_KEY reaches the store through Settings.key, not through os.environ there."""
    monkeypatch.setenv("RETAUTH_KEY", B64)
    settings = load_settings(db_url=sqlite_url)
    assert settings.key == B64 and B64 not in repr(settings)
    monkeypatch.delenv("RETAUTH_KEY")  # the store sees only what the settings resolved
    with TemplateStore.open(settings) as store:
        assert store.source.name == "RETAUTH_KEY"
        assert store.keyring.primary.material == RAW
    assert not (tmp_path / "home").exists()  # no key file was created beside it
    phrases = Settings(passphrase="new phrase", passphrase_old="old phrase").key_secrets()
    source = key_source(tmp_path / "k", phrases)
    assert isinstance(source, PassphraseKeySource)
    assert source._passphrases == ["new phrase", "old phrase"]
    assert isinstance(key_source(tmp_path / "k", Settings().key_secrets()), FileKeySource)
