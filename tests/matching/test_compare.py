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


def test_other_eye_scores_low():
    """Real photographs: the other bundled eye, and every capture's mirror image (an eye no
    rotation maps onto the original), stay well below the threshold in both roles.

    (The synthetic eyes are not used here: one generator draws trees so alike that some
    pairs score near the threshold, which says nothing about real eyes.)"""
    from biometrics.demo import sample_images
    from matching.zoo import mirrored

    pipeline = Pipeline()
    eyes = {name: pipeline.extract_file(path) for name, path in sample_images().items()}
    others = [(eyes[a], eyes["eye_b_1"]) for a in eyes if a.startswith("eye_a")]
    others += [(t, mirrored(t)) for t in eyes.values()]
    scores = [compare(x, y) for pair in others for x, y in (pair, pair[::-1])]
    assert max(scores) < DEFAULT_THRESHOLD - 0.1


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


def test_rescoring_fully_scores_only_the_strongest_votes(templates):
    """The cascade: the first candidate is scored, the others voted and only the ``full``
    strongest of them scored."""
    from matching.registration import hypotheses

    refs = {1: templates["b"], 2: templates["a"], 3: templates["c"]}  # mate not first in line
    probe = templates["a_moved"]
    votes = {k: hypotheses(probe, t).strength for k, t in refs.items()}
    assert max(votes, key=votes.get) == 2
    fetch = lambda ks: {k: refs[k] for k in ks}  # noqa: E731
    one = rescore(probe, [1, 2, 3], int, fetch, full=1, early_accept=2.0)
    assert [s.owner for s in one] == [2, 1]  # the first in line, then the strongest vote
    first = rescore(probe, [2, 1, 3], int, fetch, full=3)  # the mate first: accepted at once
    assert [s.owner for s in first] == [2]
    every = rescore(probe, [1, 2, 3], int, fetch, full=3, early_accept=2.0)
    assert len(every) == 3 and every[0] == one[0]


def test_shortlist_grows_with_the_square_root_of_the_gallery():
    from matching.search import SHORTLIST, shortlist_size

    assert shortlist_size(10) == shortlist_size(10_000) == SHORTLIST
    assert shortlist_size(100_000) == 26 and shortlist_size(1_000_000) == 80


def test_agreement_map_answers_the_score_tests_as_exact_distances_would(templates):
    """Near (< POINT_TOL): exactly the Euclidean test on the query's pixel; covered
    (< COVER_TOL): the same except within a coverage cell of the border."""
    import numpy as np

    from matching.score import COVER_CELL, COVER_TOL, POINT_TOL, AgreementMap

    points = templates["a"].points
    amap = AgreementMap(points)
    rng = np.random.default_rng(0)
    queries = points[rng.integers(len(points), size=3000)] + rng.uniform(-60, 60, (3000, 2))
    queries = queries.astype(np.float32)
    cell = np.rint(queries - amap.frame.offset)
    pixels = np.rint(points - amap.frame.offset)
    exact = np.sqrt(((cell[:, None] - pixels[None]) ** 2).sum(-1)).min(1)
    clear = np.abs(exact - COVER_TOL) > 1.5 * COVER_CELL  # not within a cell of the border
    covered, near = amap.count(queries)
    assert near == int((exact < POINT_TOL).sum())
    assert amap.count(queries[clear]) == (
        int((exact[clear] < COVER_TOL).sum()),
        int((exact[clear] < POINT_TOL).sum()),
    )
    assert 200 < near < covered < 3000
    assert amap.count(queries + 10_000) == (0, 0)  # off the grid: neither


def test_probe_lookup_finds_the_nearest_centreline_pixel(templates):
    import numpy as np

    from matching.registration import Raster

    points = templates["a"].points
    raster = Raster(points)
    query = points[::50] + np.float32([1.6, -0.7])
    dist, near = raster.lookup(query)
    # In grid cells: the query's cell against every centreline pixel.
    cell = np.rint(query - raster.frame.offset)
    pixels = np.rint(points - raster.frame.offset)
    brute = np.sqrt(((cell[:, None] - pixels[None]) ** 2).sum(-1)).min(1)
    found = np.sqrt(((cell - (near - raster.frame.offset)) ** 2).sum(1))
    assert np.allclose(found, brute, atol=0.5)
    assert np.all(np.abs(dist - brute) < 0.3)
