"""The real backend (AuthService: default segmenter, encrypted store in a temp RETAUTH_HOME) on
the demo captures shipped in ``biometrics/samples``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from biometrics.errors import FailureToAcquire
from biometrics.kiosk.library import LibraryBackend
from biometrics.settings import load_settings
from segmentation.imageio import read_image
from tests.kiosk.conftest import SAMPLES, synthetic_fundus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibraryBackend]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETAUTH_HOME", str(home))
        mp.delenv("RETAUTH_CONFIG", raising=False)
        backend = LibraryBackend(load_settings())
        assert backend.enroll("alice", [read_image(SAMPLES / "eye_a_1.jpg")]) == 1
        yield backend
        backend.close()


def test_genuine_accepted_impostor_rejected_with_overlay(library: LibraryBackend) -> None:
    genuine = library.verify(read_image(SAMPLES / "eye_a_2.jpg"), "alice")
    impostor = library.verify(read_image(SAMPLES / "eye_b_1.jpg"), "alice")
    assert genuine.accepted and genuine.reason == "accepted"
    assert not impostor.accepted and impostor.reason == "no_match"
    assert genuine.score > impostor.score
    assert genuine.overlay is not None and genuine.overlay.dtype == np.uint8
    assert {"segment_ms", "match_ms"} <= set(genuine.timings_ms)


def test_unknown_id_is_a_plain_rejection(library: LibraryBackend) -> None:
    decision = library.verify(read_image(SAMPLES / "eye_a_3.jpg"), "bob")
    assert (decision.accepted, decision.reason, decision.user_id) == (False, "unknown_user", "bob")


def test_blank_retina_is_a_failure_to_acquire(library: LibraryBackend) -> None:
    flat = np.full_like(synthetic_fundus(1), 120)
    flat[::7] = 10  # not blank enough for the decoder, no vessel tree for the pipeline
    with pytest.raises(FailureToAcquire):
        library.verify(flat, None)


def test_no_file_is_written_besides_the_store(
    library: LibraryBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = Path(load_settings().resolved_db_url().removeprefix("sqlite:///")).parent
    before = {p.name for p in home.iterdir()}
    library.verify(read_image(SAMPLES / "eye_a_3.jpg"), None)
    assert {p.name for p in home.iterdir()} <= before | {"retauth.db-wal", "retauth.db-shm"}
    assert list(tmp_path.iterdir()) == []
