"""A running kiosk sees what other processes do to its store: enrolment, deletion, revocation
and key rotation by ``retauth`` commands take effect on the very next request."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from biometrics.kiosk.library import LibraryBackend
from biometrics.settings import load_settings
from segmentation.imageio import read_image
from tests.kiosk.conftest import SAMPLES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kiosk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LibraryBackend]:
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("RETAUTH_KEY", raising=False)
    backend = LibraryBackend(load_settings())
    assert backend.enroll("alice", [read_image(SAMPLES / "eye_a_1.jpg")]) == 1
    yield backend
    backend.close()


def _retauth(*args: str) -> None:
    """Run a command in another process, against the same store."""
    subprocess.run(
        [sys.executable, "-m", "biometrics.cli", *args],
        check=True,
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        timeout=300,
    )


def test_enrolment_and_deletion_by_another_process(kiosk: LibraryBackend) -> None:
    probe = read_image(SAMPLES / "eye_b_1.jpg")
    assert kiosk.verify(probe, None).user_id is None
    _retauth("enroll", "--user", "bob", str(SAMPLES / "eye_b_1.jpg"))
    assert kiosk.verify(probe, None).user_id == "bob"
    _retauth("users", "delete", "--user", "bob")
    assert kiosk.verify(probe, None).user_id is None
    assert kiosk.verify(probe, "bob").reason == "unknown_user"


def test_revocation_and_rotation_by_another_process(kiosk: LibraryBackend) -> None:
    probe = read_image(SAMPLES / "eye_a_2.jpg")
    _retauth("keys", "rotate")
    assert kiosk.verify(probe, "alice").accepted  # records re-sealed under a key it had not
    _retauth("users", "revoke", "--user", "alice")
    assert kiosk.verify(probe, "alice").reason == "revoked"
    assert kiosk.verify(probe, None).user_id is None
