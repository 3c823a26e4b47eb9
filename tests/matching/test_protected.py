"""Protected templates: record format, key handling, accuracy, renewal, 1:N and invariance.

Real captures come from the bundled demo samples (eye A three times, eye B once); the five
synthetic eyes of ``tests/eyes.py`` (each with a moved capture) give more identities. The
synthetic trees resemble one another more than real eyes do, so on them only the ranking
is asserted, not the deployment threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from eyes import templates

from biometrics.demo import sample_images
from biometrics.pipeline import Pipeline
from matching.protected import (
    BITS,
    PROTECTED_THRESHOLD,
    RECORD_SIZE,
    REFERENCE_ROWS,
    InvalidProtectedRecord,
    ProtectedGallery,
    ProtectedTemplate,
    TransformKey,
    compare_protected,
    cylinders,
    protect,
    protect_probe,
)
from matching.variants import variant

KEY = TransformKey(b"k" * 32)
RENEWED = TransformKey(b"n" * 32, generation=1)


@pytest.fixture(scope="module")
def samples():
    pipeline = Pipeline()
    return {name: pipeline.extract_file(path) for name, path in sample_images().items()}


def _ref(template, key=KEY, seed=0):
    return protect(template, key, np.random.default_rng(seed))


# -- record ------------------------------------------------------------------------------


def test_record_has_one_size_whatever_the_eye(samples):
    small = templates()["eye1-moved"]  # 48 descriptors: filled up with chaff rows
    assert len(cylinders(small).values) < REFERENCE_ROWS < len(cylinders(samples["eye_a_1"]).values)
    sizes = {len(_ref(t).to_bytes()) for t in (small, samples["eye_a_1"], samples["eye_b_1"])}
    assert sizes == {RECORD_SIZE}


def test_record_round_trip_keeps_bits_and_generation(samples):
    ref = _ref(samples["eye_a_1"], RENEWED)
    back = ProtectedTemplate.from_bytes(ref.to_bytes())
    assert back.generation == 1
    assert np.array_equal(back.bits, ref.bits)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated
        lambda b: b + b"\0",  # extended
        lambda b: b"XPT" + b[3:],  # magic
        lambda b: b[:3] + bytes([2]) + b[4:],  # version
        lambda b: b[:4] + (64).to_bytes(2, "big") + b[6:],  # bits per row
        lambda b: b[:6] + (REFERENCE_ROWS - 1).to_bytes(2, "big") + b[8:],  # row count
    ],
)
def test_damaged_record_is_refused(samples, damage):
    blob = _ref(samples["eye_a_1"]).to_bytes()
    with pytest.raises(InvalidProtectedRecord):
        ProtectedTemplate.from_bytes(damage(blob))


def test_probe_is_never_serialised(samples):
    probe = protect_probe(samples["eye_a_2"], KEY)
    assert len(probe.bits) > REFERENCE_ROWS
    with pytest.raises(ValueError, match="only a reference"):
        probe.to_bytes()


def test_rows_are_sorted_so_junction_order_is_lost(samples):
    rows = _ref(samples["eye_a_1"]).bits
    keys = [bytes(r) for r in rows]
    assert keys == sorted(keys)


# -- key ---------------------------------------------------------------------------------


def test_projection_is_a_fixed_function_of_the_key():
    """Stored references depend on it: a change of expansion must fail here, not in the field."""
    p = TransformKey(b"k" * 32).projection
    assert p.shape == (256, BITS) and p.dtype == np.float32
    assert np.array_equal(p, TransformKey(b"k" * 32).projection)
    assert np.allclose(p[0, :3], [-0.3007881, 0.5793041, -0.0671966], atol=1e-6)
    assert abs(float(p.mean())) < 0.02 and abs(float(p.std()) - 1.0) < 0.02
    other = TransformKey(b"k" * 32, generation=1).projection
    assert abs(float(np.corrcoef(p.ravel(), other.ravel())[0, 1])) < 0.02


def test_key_repr_hides_the_secret():
    text = repr(TransformKey(b"s3cr3t-s3cr3t-s3cr3t"))
    assert "s3cr3t" not in text and "generation=0" in text


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        TransformKey(b"short")


# -- accuracy and renewal ----------------------------------------------------------------


def test_real_genuine_accepted_and_impostor_rejected(samples):
    ref = _ref(samples["eye_a_1"])
    for name in ("eye_a_2", "eye_a_3"):
        assert compare_protected(ref, protect_probe(samples[name], KEY)) >= PROTECTED_THRESHOLD
    assert compare_protected(ref, protect_probe(samples["eye_b_1"], KEY)) < PROTECTED_THRESHOLD


def test_moved_synthetic_eye_ranks_first():
    eyes = templates()
    names = [n for n in eyes if not n.endswith("-moved")]
    refs = [_ref(eyes[n]) for n in names]
    for i, name in enumerate(names):
        probe = protect_probe(eyes[f"{name}-moved"], KEY)
        scores = [compare_protected(r, probe) for r in refs]
        assert int(np.argmax(scores)) == i
        assert scores[i] - sorted(scores)[-2] > 0.03


def test_rotation_and_shift_do_not_change_the_descriptors(samples):
    """Descriptors are turned by their own branch: an eye turned 40° about its disc and
    shifted (as a tilted head or another disc estimate gives) still matches like itself."""
    template = samples["eye_a_1"]
    moved = variant(template, rotation_deg=40.0, shift=(25.0, -15.0))
    ref = _ref(template)
    same = compare_protected(ref, protect_probe(template, KEY))
    assert compare_protected(ref, protect_probe(moved, KEY)) > same - 0.01


def test_renewed_reference_is_unlinkable_to_the_old(samples):
    """After renewal (a new key), the old reference no longer matches, not even the same
    capture, while the new reference works; cross-key mated scores look like non-mated."""
    old = _ref(samples["eye_a_1"], KEY)
    new = _ref(samples["eye_a_1"], RENEWED, seed=1)  # one seed would repeat the chaff rows
    probe = protect_probe(samples["eye_a_2"], RENEWED)
    assert compare_protected(new, probe) >= PROTECTED_THRESHOLD
    assert compare_protected(old, probe) < PROTECTED_THRESHOLD
    leaked = compare_protected(new, old)  # the same capture, two keys
    stranger = compare_protected(new, _ref(samples["eye_b_1"], KEY, seed=2))
    assert leaked < PROTECTED_THRESHOLD
    assert abs(leaked - stranger) < 0.03


def test_two_references_of_one_capture_differ(samples):
    """Each enrolment draws its own rows: two records of one capture are not byte twins."""
    a = _ref(samples["eye_a_1"], seed=1).bits
    b = _ref(samples["eye_a_1"], seed=2).bits
    assert not np.array_equal(a, b)


# -- 1:N ---------------------------------------------------------------------------------


def test_gallery_finds_the_mate_among_distractors(samples):
    eyes = templates()
    enrolled = [samples["eye_a_1"], samples["eye_b_1"]] + [
        eyes[n] for n in eyes if not n.endswith("-moved")
    ]
    rng = np.random.default_rng(0)
    # Distractors: further random draws of the synthetic eyes' rows, as a bigger gallery
    # holds more records with the same row statistics.
    extra = [protect(eyes[f"eye{i % 5}"], KEY, rng) for i in range(20)]
    gallery = ProtectedGallery([_ref(t) for t in enrolled] + extra)
    top, scores = gallery.search(protect_probe(samples["eye_a_2"], KEY), shortlist=8)
    assert top[0] == 0 and scores[0] >= PROTECTED_THRESHOLD
    assert list(scores) == sorted(scores, reverse=True)
    votes = gallery.votes(protect_probe(samples["eye_a_3"], KEY))
    assert int(np.argmax(votes)) == 0


def test_empty_gallery_is_refused():
    with pytest.raises(ValueError):
        ProtectedGallery([])
