"""The impostor-zoo protocol on a generated data root (synthetic eyes in DRIVE/RIDB layout)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import fundus

from biometrics.pipeline import Pipeline
from matching import DEFAULT_THRESHOLD, compare
from matching.evaluation import read_four_column
from matching.zoo import Eye, evaluate_zoo, mirrored, zoo_design


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """DRIVE-like: one eye; RIDB-like: eye 1 twice (moved), eye 2 once; a stray file."""
    root = tmp_path_factory.mktemp("zoo")
    _write(root / "DRIVE" / "test" / "images" / "01_test.tif", fundus(2)[0])
    _write(root / "RIDB" / "IM000001_1.jpg", fundus(0)[0])
    _write(root / "RIDB" / "IM000002_1.jpg", fundus(0, angle=8, shift=(6, -4))[0])
    _write(root / "RIDB" / "IM000001_2.jpg", fundus(1)[0])
    (root / "RIDB" / "README.txt").write_text("not a capture")
    return root


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


def test_design_counts_ordered_impostors_and_genuine_pairs_once():
    eyes = [Eye("S", i, f"k{n}", n, False) for n, i in enumerate(["a", "a", "b", "c"])]
    pairs, genuine = zoo_design(eyes)
    assert genuine.sum() == 1 and (~genuine).sum() == 4 * 3 - 2
    ids = np.array([e.identity for e in eyes])
    assert (ids[pairs[~genuine, 0]] != ids[pairs[~genuine, 1]]).all()


def test_mirror_is_an_involution_and_a_different_eye(pipeline):
    t = pipeline.extract(fundus(0)[0])
    back = mirrored(mirrored(t))
    np.testing.assert_allclose(back.node_xy, t.node_xy)
    np.testing.assert_allclose(
        np.exp(1j * np.nan_to_num(back.node_angles)),
        np.exp(1j * np.nan_to_num(t.node_angles)),
        atol=1e-5,
    )
    assert mirrored(t).side != t.side
    np.testing.assert_allclose(mirrored(t).points[:, 0], -t.points[:, 0], atol=1e-4)


def test_zoo_runs_end_to_end(root, pipeline, tmp_path):
    result = evaluate_zoo(
        root,
        pipeline.extract_file,
        compare,
        tmp_path / "zoo",
        threshold=DEFAULT_THRESHOLD,
        progress=False,
    )
    s = result.summary
    # 4 captures + 4 mirrors = 8 entries; eye 1 and its mirror have 2 captures each.
    assert s["captures"] == 4 and s["mirrored_entries"] == 4 and s["eyes"] == 6
    assert s["impostor_comparisons"] == 8 * 7 - 4 and s["impostor_eye_pairs"] == (8 * 7 - 4) // 2
    assert s["genuine"]["comparisons"] == 2 and s["genuine"]["false_non_matches"] == 0
    # The synthetic trees branch symmetrically, so a tree and its mirror image can look alike;
    # what is checked here is the bookkeeping, against the score file.
    scores = read_four_column(result.files["scores"])
    impostor = scores.scores[~scores.genuine]
    assert s["false_matches"] == int((impostor >= DEFAULT_THRESHOLD).sum())
    assert s["impostor_max"] == pytest.approx(impostor.max())
    if s["false_matches"] == 0:
        assert s["fmr_upper_95"] == pytest.approx(3 / 52)
    else:
        assert s["fmr"] == pytest.approx(s["false_matches"] / 52)
    assert set(s["by_source_pair"]) == {"DRIVE×DRIVE", "DRIVE×RIDB", "RIDB×RIDB"}
    assert sum(v["comparisons"] for v in s["by_source_pair"].values()) == 52
    assert len(s["top_impostors"]) == 4
    assert s["top_impostors"][0]["score"] == pytest.approx(s["impostor_max"])
    assert len(scores.scores) == 54 and scores.genuine.sum() == 2
    for name in ("histogram", "top_pairs"):
        assert result.files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = cv2.imread(str(result.files["top_pairs"]))
    assert top.shape[0] == 4 * 360 and top.shape[1] == 3 * 360
    assert json.loads(result.files["summary"].read_text())["false_matches"] == s["false_matches"]
