"""Input amplification (issue 14 item 1): no input makes ``retauth verify`` balloon.

Every hostile photograph of :mod:`biometrics.hostile_inputs` is run through ``retauth verify``
in its own process; its peak resident memory (``ru_maxrss`` from ``wait4``, so one child
at a time) must stay within 1.5x of a verification of a capture framed like RIDB, and the
command must end with exit 2 and one line. Before the fix, ``tall_64x5000`` peaked at 5.5 GB
here (canonical scaling made it 540 x 42187 and the segmenter ran on that).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from biometrics.hostile_inputs import PACKAGE_ROOT, capture_jpeg, hostile_images, run_measured
from segmentation.imageio import InvalidImage
from segmentation.preprocessing import CANONICAL_FOV_DIAMETER, MAX_CANONICAL_AREA, to_canonical

#: Acceptance bound of the issue: peak RSS on any input <= 1.5x that of a real capture.
MAX_RATIO = 1.5


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETAUTH_")}
    return {
        **clean,
        "PYTHONPATH": str(PACKAGE_ROOT),
        "RETAUTH_HOME": str(home),
        "RETAUTH_CONFIG": str(home / "absent.toml"),
    }


@pytest.fixture(scope="module")
def baseline_mb(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> float:
    """Peak RSS of a genuine 1:1 verification of a 1504 x 1000 capture."""
    photo = tmp_path_factory.mktemp("capture") / "capture.jpg"
    photo.write_bytes(capture_jpeg())
    code, err, _ = run_measured(["enroll", "--user", "alice", str(photo)], env)
    assert code == 0, err
    code, err, peak = run_measured(["verify", "--user", "alice", str(photo)], env)
    assert code == 0, err
    return peak


@pytest.mark.parametrize("name", sorted(hostile_images()))
def test_hostile_image_is_refused_within_bounded_memory(
    name: str, env: dict[str, str], baseline_mb: float, tmp_path: Path
) -> None:
    photo = tmp_path / f"{name}.png"
    photo.write_bytes(hostile_images()[name])
    code, err, peak = run_measured(["verify", "--user", "alice", str(photo)], env)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert peak <= MAX_RATIO * baseline_mb, f"{name}: {peak:.0f} MB vs {baseline_mb:.0f} MB"


@pytest.mark.parametrize(("side", "radius"), [(3000, 500), (2000, 260), (6000, 800)])
def test_canonical_size_is_bounded_before_resampling(side: int, radius: int) -> None:
    """A FOV between 1/4 and 1/2 of the frame would be enlarged past 4x the FOV area."""
    rgb = np.zeros((side, side, 3), np.uint8)
    cv2.circle(rgb, (side // 2, side // 2), radius, (190, 80, 40), -1)
    with pytest.raises(InvalidImage, match="pixel limit"):
        to_canonical(rgb)


def test_real_framings_stay_within_the_canonical_budget() -> None:
    """RIDB-like, DRIVE-like and 3:1 frames are all accepted (budget 4x, these give <= 3x)."""
    for shape, radius in [((1000, 1504), 450), ((584, 565), 270), ((1000, 3000), 40)]:
        rgb = np.zeros((*shape, 3), np.uint8)
        cv2.circle(rgb, (shape[1] // 2, shape[0] // 2), radius, (190, 80, 40), -1)
        out = to_canonical(rgb)
        assert out.rgb.size // 3 <= MAX_CANONICAL_AREA * CANONICAL_FOV_DIAMETER**2
