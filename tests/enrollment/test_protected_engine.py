"""A protected deployment through the engine: what is stored, decisions, and the store's kind."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from biometrics.demo import sample_images
from biometrics.errors import ConfigurationError
from biometrics.pipeline import Pipeline
from biometrics.protected_engine import ProtectedEngine
from biometrics.service import open_engine
from biometrics.settings import load_settings
from biometrics.template import Template
from enrollment import LockoutPolicy, TemplateStore, UnknownUser
from enrollment.errors import InvalidRecord
from enrollment.models import Meta, TemplateRecord
from enrollment.store import PROTECTION_META
from matching.protected import (
    PROTECTED_THRESHOLD,
    RECORD_SIZE,
    ProtectedTemplate,
    compare_protected,
    protect_probe,
)

PROTECTED = load_settings(protected_templates=True)
PLAIN = load_settings(protected_templates=False)


@pytest.fixture(scope="module")
def eyes() -> dict[str, Template]:
    """The bundled real captures (synthetic eyes from one generator look alike in the
    protected domain too: their impostor scores pass the protected threshold)."""
    pipeline = Pipeline()
    return {name: pipeline.extract_file(path) for name, path in sample_images().items()}


@pytest.fixture
def engine(store: TemplateStore, eyes: dict[str, Template]) -> ProtectedEngine:
    kiosk = open_engine(store, PROTECTED)
    assert isinstance(kiosk, ProtectedEngine)
    kiosk.enroll("alice", [eyes["eye_a_1"], eyes["eye_a_2"]])
    return kiosk


def test_only_protected_records_are_stored(engine: ProtectedEngine) -> None:
    store = engine.store
    with store.engine.connect() as conn:
        rows = conn.execute(select(TemplateRecord)).all()
    assert len(rows) == 2
    for row in rows:
        assert row.features is None  # no pre-filter vector: an unprotected embedding
    opened, problems = store.open_references([r.id for r in rows])
    assert not problems
    for blob in opened.values():
        assert len(blob) == RECORD_SIZE
        assert ProtectedTemplate.from_bytes(blob).generation == engine.key.generation


def test_protected_decisions(engine: ProtectedEngine, eyes: dict[str, Template]) -> None:
    engine.enroll("bob", [eyes["eye_b_1"]])
    genuine = engine.verify(eyes["eye_a_3"], "alice")
    impostor = engine.verify(eyes["eye_a_3"], "bob")
    assert genuine.accepted and not impostor.accepted
    assert genuine.threshold == engine.threshold == PROTECTED_THRESHOLD
    found = engine.identify(eyes["eye_a_3"])
    assert found.accepted and found.user_id == "alice"
    with pytest.raises(UnknownUser):
        engine.verify(eyes["eye_a_3"], "nobody")
    engine.store.revoke("bob")
    assert not engine.identify(eyes["eye_b_1"]).accepted


def test_locked_id_is_never_identified(engine: ProtectedEngine, eyes) -> None:
    engine.store.policy = LockoutPolicy(max_failures=1, window_s=600, lockout_s=600)
    assert not engine.verify(eyes["eye_b_1"], "alice").accepted
    assert engine.identify(eyes["eye_a_3"]).user_id is None


def test_enrolment_by_another_process_is_identified(
    engine: ProtectedEngine, eyes, db_url: str
) -> None:
    assert not engine.identify(eyes["eye_b_1"]).accepted  # builds the 1:N index
    with TemplateStore.open(load_settings(db_url=db_url)) as other:
        open_engine(other, PROTECTED).enroll("bob", [eyes["eye_b_1"]])
    found = engine.identify(eyes["eye_b_1"])
    assert found.accepted and found.user_id == "bob"


def test_store_keeps_its_kind(engine: ProtectedEngine) -> None:
    with pytest.raises(ConfigurationError, match="holds protected references"):
        open_engine(engine.store, PLAIN)


def test_plain_store_refuses_protected_mode(store: TemplateStore, eyes) -> None:
    open_engine(store, PLAIN).enroll("alice", [eyes["eye_a_1"]])
    with pytest.raises(ConfigurationError, match="holds plain references"):
        open_engine(store, PROTECTED)


def test_edited_protection_marker_is_tampering(engine: ProtectedEngine) -> None:
    with engine.store.engine.begin() as conn:
        conn.execute(
            update(Meta).where(Meta.name == PROTECTION_META).values(value=b"generation 1:00")
        )
    with pytest.raises(InvalidRecord, match="protection marker was edited"):
        open_engine(engine.store, PROTECTED)


def test_record_of_another_generation_fails_its_user_only(engine: ProtectedEngine, eyes) -> None:
    """A reference made under another transform key cannot be compared: its user's claims
    fail as a corrupt record does (nothing recorded), everyone else is unaffected."""
    store = engine.store
    engine.enroll("bob", [eyes["eye_b_1"]])
    other = open_engine(store, PROTECTED)
    other.key = store.transform_key(1)
    other.enroll("alice", [eyes["eye_a_1"]], replace=True)
    fresh = open_engine(store, PROTECTED)
    events = [e["event"] for e in store.audit_events()]
    with pytest.raises(InvalidRecord, match="generation 1"):
        fresh.verify(eyes["eye_a_3"], "alice")
    assert [e["event"] for e in store.audit_events()] == events  # the refused claim: nothing
    assert fresh.identify(eyes["eye_b_1"]).user_id == "bob"


def test_deleted_after_the_index_was_built_is_never_identified(
    engine: ProtectedEngine, eyes, db_url: str
) -> None:
    """The 1:N index is not rebuilt on every change: a deleted capture must still never match,
    even when its row id is given to another user's new capture (SQLite reuses row ids)."""
    assert engine.identify(eyes["eye_a_3"]).user_id == "alice"  # the index holds alice
    with TemplateStore.open(load_settings(db_url=db_url)) as other:
        other.delete("alice")
        open_engine(other, PROTECTED).enroll("bob", [eyes["eye_b_1"]])
    stranger = engine.identify(eyes["eye_a_3"])
    assert not stranger.accepted and stranger.user_id is None
    assert engine.identify(eyes["eye_b_1"]).user_id == "bob"


def test_renewed_transform_key_retires_every_reference(
    engine: ProtectedEngine, eyes, db_url: str
) -> None:
    """After a renewal by another process, a running engine matches no old reference; a
    re-enrolment under the new key works, and the old record no longer matches it."""
    store = engine.store
    old = store.open_references([min(engine._records)])[0]
    with TemplateStore.open(load_settings(db_url=db_url)) as other:
        assert other.renew_protection() == 1
    with pytest.raises(InvalidRecord, match="re-enrol"):
        engine.verify(eyes["eye_a_3"], "alice")
    assert engine.key.generation == 1
    assert not engine.identify(eyes["eye_a_3"]).accepted
    engine.enroll("alice", [eyes["eye_a_1"]], replace=True)
    assert engine.verify(eyes["eye_a_3"], "alice").accepted
    stolen = ProtectedTemplate.from_bytes(next(iter(old.values())))
    probe = protect_probe(eyes["eye_a_3"], engine.key)
    assert compare_protected(stolen, probe) < PROTECTED_THRESHOLD


def test_plain_store_has_no_transform_key_to_renew(store: TemplateStore) -> None:
    with pytest.raises(ConfigurationError, match="no transform key"):
        store.renew_protection()


def test_claims_go_on_while_the_1n_index_is_built(
    engine: ProtectedEngine, eyes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first 1:N claim builds the index (seconds in a large gallery) outside the engine
    lock: a 1:1 claim made meanwhile is decided without waiting for it."""
    import biometrics.protected_engine as module

    started, release = threading.Event(), threading.Event()
    real = module.ProtectedGallery

    def slow_gallery(records):
        started.set()
        assert release.wait(10), "the 1:1 claim waited for the index build"
        return real(records)

    monkeypatch.setattr(module, "ProtectedGallery", slow_gallery)
    found: list = []
    search = threading.Thread(target=lambda: found.append(engine.identify(eyes["eye_a_3"])))
    search.start()
    try:
        assert started.wait(10)
        assert engine.verify(eyes["eye_a_3"], "alice").accepted
    finally:
        release.set()
        search.join(20)
    assert found and found[0].user_id == "alice"
