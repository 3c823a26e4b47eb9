"""Fixtures for the kiosk tests: synthetic fundus photographs and a fake biometric backend.

The fake stands in for the real pipeline so these tests exercise the web layer (routing,
admission, errors, privacy of the page) in milliseconds; the real backend is covered by the
library's own tests and by ``benchmarks/kiosk_load.py``.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from biometrics.errors import FailureToAcquire, InputError
from biometrics.kiosk.backend import KioskOutcome

SIZE = 256
#: Demo captures shipped with the package (RIDB): eye_a_* are one eye, eye_b_1 another.
SAMPLES = Path(str(resources.files("biometrics") / "samples"))


def synthetic_fundus(person: int, capture: int = 0) -> np.ndarray:
    """A red disc on black with a dark branching vessel tree that depends on ``person``.

    ``capture`` adds a small shift and sensor noise, as two photographs of one eye differ.
    """
    rng = np.random.default_rng(person)
    centre, radius = SIZE // 2, SIZE // 2 - 8
    disc = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(disc, (centre, centre), radius, 1, -1)
    vessels = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(6):
        x, y = centre + rng.integers(-20, 20), centre + rng.integers(-20, 20)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            angle += rng.normal(0, 0.5)
            nx, ny = int(x + 16 * np.cos(angle)), int(y + 16 * np.sin(angle))
            cv2.line(vessels, (int(x), int(y)), (nx, ny), 1, 3)
            x, y = nx, ny
    img = np.where(vessels[..., None] > 0, (90, 20, 10), (190, 80, 40)).astype(np.uint8)
    img *= disc[..., None]
    noise = np.random.default_rng(1000 + capture)
    shift = np.float32([[1, 0, noise.integers(-2, 3)], [0, 1, noise.integers(-2, 3)]])
    img = cv2.warpAffine(img, shift, (SIZE, SIZE))
    img = np.clip(img + noise.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img


def encode(rgb: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


class FakeBackend:
    """Template = normalised 32x32 high-pass green channel; score = correlation; threshold 0.7."""

    name = "fake"
    threshold = 0.7

    def __init__(self, delay_s: float = 0.0) -> None:
        self.gallery: dict[str, list[np.ndarray]] = {}
        self.delay_s = delay_s
        self.locked: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _template(rgb: np.ndarray) -> np.ndarray:
        if rgb[..., 0].mean() < 20:
            raise FailureToAcquire("no retina visible in the capture")
        green = rgb[..., 1].astype(np.float32)
        vessels = cv2.GaussianBlur(green, (0, 0), 8) - green  # dark lines, disc removed
        small = cv2.resize(vessels, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
        small -= small.mean()
        return small / (np.linalg.norm(small) + 1e-9)

    def _score(self, probe: np.ndarray, user_id: str) -> float:
        return max(float(np.dot(probe.ravel(), ref.ravel())) for ref in self.gallery[user_id])

    def verify(self, rgb: np.ndarray, user_id: str | None) -> KioskOutcome:
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        if user_id is not None and not user_id.replace("-", "").isalnum():
            raise InputError("user id may contain only letters, digits and -")
        probe = self._template(rgb)
        overlay = (rgb * 0.6).astype(np.uint8)
        overlay[(rgb[..., 1] < 50) & (rgb[..., 0] > 50)] = (0, 200, 255)  # vessels, as the real one
        with self._lock:
            if user_id is not None:
                if user_id not in self.gallery:
                    return KioskOutcome(
                        False, "1:1", user_id, 0.0, self.threshold, "unknown_user", overlay
                    )
                score = self._score(probe, user_id)
                reason = (
                    "locked"
                    if user_id in self.locked
                    else ("accepted" if score >= self.threshold else "no_match")
                )
                return KioskOutcome(
                    reason == "accepted", "1:1", user_id, score, self.threshold, reason, overlay
                )
            scores = {uid: self._score(probe, uid) for uid in self.gallery}
        best = max(scores, key=scores.get, default=None)
        score = scores.get(best, 0.0)
        if best is not None and score >= self.threshold:
            return KioskOutcome(True, "1:N", best, score, self.threshold, "accepted", overlay)
        return KioskOutcome(False, "1:N", None, score, self.threshold, "no_match", overlay)

    def enroll(self, user_id: str, images: list[np.ndarray]) -> int:
        templates = [self._template(rgb) for rgb in images]
        with self._lock:
            if user_id in self.gallery:
                raise InputError(f"{user_id} is already enrolled")
            self.gallery[user_id] = templates
        return len(templates)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()
