"""Pictures of what the pipeline saw: the capture with vessels, centreline, junctions and disc.

Used by ``retauth inspect`` (a PNG for a person to check a capture) and by the kiosk result
page. Colours are fixed so that pictures are comparable across captures.
"""

from __future__ import annotations

import cv2
import numpy as np

from biometrics.errors import InputError, InternalError
from biometrics.features import Features
from biometrics.graph import BIFURCATION, CROSSOVER, ENDPOINT

#: RGB colours of each layer.
VESSEL_TINT = np.array([0, 160, 255], np.float32)
CENTRELINE = (255, 255, 255)
COLOURS = {BIFURCATION: (0, 255, 0), CROSSOVER: (255, 0, 255), ENDPOINT: (255, 200, 0)}
DISC = (255, 255, 0)


def render_overlay(rgb: np.ndarray, features: Features, *, endpoints: bool = False) -> np.ndarray:
    """Canonical-scale capture (dimmed) with the feature layers drawn on it; RGB uint8."""
    out = rgb.astype(np.float32) * 0.6
    out[features.vessels] = 0.5 * out[features.vessels] + 0.5 * VESSEL_TINT
    out = out.astype(np.uint8)
    out[features.skeleton] = CENTRELINE
    for _, data in features.graph.nodes(data=True):
        kind = data["kind"]
        if kind == ENDPOINT and not endpoints:
            continue
        x, y = (int(round(v)) for v in data["pos"])
        cv2.circle(out, (x, y), 4 if kind != ENDPOINT else 2, COLOURS[kind], -1, cv2.LINE_AA)
    disc = features.disc
    cv2.circle(out, (int(disc.x), int(disc.y)), int(disc.radius), DISC, 2, cv2.LINE_AA)
    return out


#: File formats an overlay can be written in, by file-name suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def encode_image(rgb: np.ndarray, suffix: str = ".png") -> bytes:
    """An RGB image encoded in the format its file suffix names (PNG or JPEG).

    One encoder for the CLI and the kiosk, so ``--out x.jpg`` really writes a JPEG: a file
    whose bytes disagree with its name is refused by strict viewers and upload forms.
    """
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"cannot write {suffix or 'files without a suffix'}: use .png or .jpg")
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix != ".png" else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays
        raise InternalError(f"internal error: could not encode {suffix}")
    return buf.tobytes()
