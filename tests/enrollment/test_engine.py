"""The verification engine on a real store: decisions, the reference cache and its currency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from eyes import templates
from sqlalchemy import update

from biometrics.engine import Engine
from biometrics.settings import load_settings
from enrollment import LockoutPolicy, TemplateStore, UnknownUser, UserLocked, UserRevoked
from enrollment.errors import InvalidRecord
from enrollment.models import TemplateRecord
from enrollment.rotation import rotate
from matching import DEFAULT_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(store: TemplateStore) -> Engine:
    t = templates()
    kiosk = Engine(store, threshold=DEFAULT_THRESHOLD)
    for seed in range(3):
        kiosk.enroll(f"user{seed}", [t[f"eye{seed}"]])
    return kiosk


def _other(db_url: str) -> TemplateStore:
    return TemplateStore.open(load_settings(db_url=db_url))


def test_genuine_accepted_impostor_rejected(engine: Engine) -> None:
    t = templates()
    genuine = engine.verify(t["eye1-moved"], "user1")
    impostor = engine.verify(t["eye2-moved"], "user1")
    # Synthetic trees from one generator resemble each other more than real eyes do (real
    # impostor scores are measured on RIDB and the zoo); the genuine eye must still win.
    assert genuine.accepted and genuine.score > impostor.score + 0.3
    found = engine.identify(t["eye2-moved"])
    assert found.accepted and found.user_id == "user2" and found.score >= DEFAULT_THRESHOLD
    stranger = engine.identify(t["eye4-moved"])
    assert not stranger.accepted and stranger.user_id is None


def test_unknown_and_revoked_ids(engine: Engine) -> None:
    t = templates()
    with pytest.raises(UnknownUser):
        engine.verify(t["eye1-moved"], "nobody")
    engine.store.revoke("user1")
    with pytest.raises(UserRevoked):
        engine.verify(t["eye1-moved"], "user1")
    assert engine.identify(t["eye1-moved"]).user_id != "user1"


def test_locked_id_is_never_returned_by_identify(engine: Engine) -> None:
    t = templates()
    engine.store.policy = LockoutPolicy(max_failures=2, window_s=600, lockout_s=600)
    for _ in range(2):
        assert not engine.verify(t["eye0-moved"], "user1").accepted
    with pytest.raises(UserLocked):
        engine.verify(t["eye1-moved"], "user1")
    locked = engine.identify(t["eye1-moved"])
    assert locked.user_id != "user1"
    events = [(e["event"], e["decision"]) for e in engine.store.audit_events()]
    assert ("refused", "locked") in events[-3:]
    engine.store.unlock("user1")
    assert engine.identify(t["eye1-moved"]).user_id == "user1"


def test_writes_by_another_process_are_seen(engine: Engine, db_url: str) -> None:
    t = templates()
    blob = t["eye3"].to_bytes().hex()
    code = (
        "import sys; from biometrics.settings import load_settings; "
        "from biometrics.template import Template; from biometrics.engine import Engine; "
        "from enrollment import TemplateStore; "
        f"s = TemplateStore.open(load_settings(db_url={db_url!r})); "
        f"Engine(s, threshold=0.42).enroll('late', [Template.from_bytes(bytes.fromhex({blob!r}))])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    assert engine.identify(t["eye3-moved"]).user_id == "late"  # enrolled elsewhere, seen here
    with _other(db_url) as other:
        other.delete("user2")
        other.revoke("user0")
    assert engine.identify(t["eye2-moved"]).user_id != "user2"  # deleted elsewhere
    assert engine.identify(t["eye0-moved"]).user_id != "user0"  # revoked elsewhere
    with pytest.raises(UserRevoked):
        engine.verify(t["eye0-moved"], "user0")
    with _other(db_url) as other:
        other.enroll("user2", [t["eye1"].to_bytes()])  # re-enrolled with another eye
    assert engine.verify(t["eye1-moved"], "user2").accepted
    assert (
        engine.verify(t["eye2-moved"], "user2").score
        < engine.verify(t["eye1-moved"], "user2").score
    )


def test_rotation_by_another_process_is_seen(engine: Engine, db_url: str) -> None:
    t = templates()
    with _other(db_url) as other:
        rotate(other)
    engine.store.reload_keys()
    assert engine.verify(t["eye1-moved"], "user1").accepted
    assert engine.identify(t["eye0-moved"]).user_id == "user0"


def test_features_computed_for_captures_enrolled_without_them(store: TemplateStore) -> None:
    t = templates()
    store.enroll("old", [t["eye1"].to_bytes()])  # as a store of schema 0001 holds it
    engine = Engine(store, threshold=DEFAULT_THRESHOLD)
    assert engine.identify(t["eye1-moved"]).user_id == "old"
    with store.engine.connect() as conn:
        assert conn.execute(TemplateRecord.__table__.select()).first().features is not None


def test_cached_features_are_sealed(engine: Engine, db_url: str) -> None:
    t = templates()
    with engine.store.engine.begin() as conn:
        rows = conn.execute(TemplateRecord.__table__.select().order_by(TemplateRecord.id)).all()
        flipped = bytearray(rows[1].features)
        flipped[-3] ^= 1
        conn.execute(
            update(TemplateRecord).where(TemplateRecord.id == rows[1].id).values(features=flipped)
        )
        # user2's pre-filter record moved onto user0's row: bound to another user, refused
        conn.execute(
            update(TemplateRecord)
            .where(TemplateRecord.id == rows[0].id)
            .values(features=rows[2].features)
        )
    with _other(db_url) as other:
        fresh = Engine(other, threshold=DEFAULT_THRESHOLD)
        assert set(fresh.problems) == {rows[0].id, rows[1].id}
        with pytest.raises(InvalidRecord):
            fresh.verify(t["eye1-moved"], "user1")
        with pytest.raises(InvalidRecord):
            fresh.verify(t["eye0-moved"], "user0")
        assert fresh.identify(t["eye2-moved"]).user_id == "user2"  # others still identified


def test_one_corrupt_template_record_fails_only_its_user(engine: Engine, db_url: str) -> None:
    """A damaged record is refused for its own user (exit 3) and skipped by everyone's 1:N."""
    t = templates()
    with engine.store.engine.begin() as conn:
        row = conn.execute(TemplateRecord.__table__.select().order_by(TemplateRecord.id)).first()
        flipped = bytearray(row.record)
        flipped[-5] ^= 1
        conn.execute(
            update(TemplateRecord).where(TemplateRecord.id == row.id).values(record=flipped)
        )
    with _other(db_url) as other:
        fresh = Engine(other, threshold=DEFAULT_THRESHOLD)
        for probe in ("eye0-moved", "eye1-moved", "eye2-moved"):
            fresh.identify(t[probe])  # user0's capture may be shortlisted: never fatal
        assert fresh.identify(t["eye1-moved"]).user_id == "user1"
        with pytest.raises(InvalidRecord):
            fresh.verify(t["eye0-moved"], "user0")
        assert fresh.verify(t["eye2-moved"], "user2").accepted


def test_rotation_finishes_around_a_corrupt_record(engine: Engine) -> None:
    with engine.store.engine.begin() as conn:
        row = conn.execute(TemplateRecord.__table__.select().order_by(TemplateRecord.id)).first()
        conn.execute(
            update(TemplateRecord)
            .where(TemplateRecord.id == row.id)
            .values(record=b"RTR\x01" + b"\0" * 60)
        )
    old = engine.store.keyring.primary.id.hex()
    result = rotate(engine.store)
    assert result["corrupt_rows"] == [row.id]
    # everything else moved; the corrupt row's template and pre-filter records stay behind
    assert engine.store.key_usage() == {result["key_id"]: result["reencrypted"], old: 2}


def test_prepare_loads_what_the_claim_scores(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After prepare(), the claim itself reads no template from the store: neither for a known
    id nor for an unknown one (its stand-ins), so preparing keeps the work equal."""
    t = templates()
    for user, probe in (("user1", "eye1-moved"), ("nobody", "eye2-moved")):
        cold = Engine(_other(db_url), threshold=DEFAULT_THRESHOLD, cache_size=4)
        cold.prepare(user)
        opened: list[list[int]] = []

        def counted(keys, real=cold.store.open_references, opened=opened):
            opened.append(list(keys))
            return real(keys)

        monkeypatch.setattr(cold.store, "open_references", counted)
        try:
            cold.verify(t[probe], user)
        except UnknownUser:
            assert user == "nobody"
        assert opened == [], user
        cold.store.close()
