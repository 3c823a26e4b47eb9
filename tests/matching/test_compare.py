"""Registration and scoring on synthetic eyes: a moved copy matches, another eye does not."""

import pytest
from synthetic import fundus

from biometrics.pipeline import Pipeline
from matching import DEFAULT_THRESHOLD, compare
from matching.prefilter import Prefilter
from matching.registration import register
from matching.search import Gallery, rescore


@pytest.fixture(scope="module")
def templates():
    pipeline = Pipeline()
    return {
        "a": pipeline.extract(fundus(0)[0]),
        "a_moved": pipeline.extract(fundus(0, angle=10, shift=(20, -12))[0]),
        "b": pipeline.extract(fundus(1)[0]),
        "c": pipeline.extract(fundus(2)[0]),
    }


def test_self_match_is_near_one(templates):
    assert compare(templates["a"], templates["a"]) > 0.95


def test_rotated_shifted_copy_scores_high(templates):
    assert compare(templates["a"], templates["a_moved"]) > DEFAULT_THRESHOLD + 0.2


def test_other_eye_scores_low(templates):
    assert compare(templates["a"], templates["b"]) < DEFAULT_THRESHOLD - 0.1
    assert compare(templates["b"], templates["c"]) < DEFAULT_THRESHOLD - 0.1


def test_score_is_symmetric(templates):
    ab = compare(templates["a"], templates["a_moved"])
    ba = compare(templates["a_moved"], templates["a"])
    assert abs(ab - ba) < 0.05


def test_registration_recovers_the_rotation(templates):
    sim = register(templates["a_moved"], templates["a"])
    assert sim.rotation_deg == pytest.approx(10, abs=2.5)
    assert sim.scale == pytest.approx(1.0, abs=0.04)


def test_score_in_unit_interval(templates):
    for x in templates.values():
        for y in templates.values():
            assert 0.0 <= compare(x, y) <= 1.0


def test_prefilter_keeps_the_moved_copy_closest(templates):
    gallery = Gallery()
    gallery.add([1, 2, 3], [1, 2, 3], [Prefilter.of(templates[k]) for k in ("a", "b", "c")])
    keys = gallery.shortlist(Prefilter.of(templates["a_moved"]), k=1)
    assert keys[0] == 1


def test_gallery_identifies_the_right_eye(templates):
    refs = {1: templates["a"], 2: templates["b"], 3: templates["c"]}
    gallery = Gallery()
    gallery.add(list(refs), list(refs), [Prefilter.of(t) for t in refs.values()])
    keys = gallery.shortlist(Prefilter.of(templates["a_moved"]), k=2)
    ranked = rescore(templates["a_moved"], keys.tolist(), int, lambda ks: {k: refs[k] for k in ks})
    assert ranked[0].owner == 1
    assert ranked[0].score > DEFAULT_THRESHOLD
    assert len(Gallery().shortlist(Prefilter.of(templates["a"]))) == 0
