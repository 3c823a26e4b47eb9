"""The real :class:`~biometrics.kiosk.backend.KioskBackend`: pipeline + template store + matcher.

Built once at start-up by :func:`load_backend`; the segmenter (ONNX Runtime, TVM or classical)
and the store connection then serve every request. The probe is always analysed *before* the
claimed id is looked up, so an unknown id costs the same extraction time as a known one.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from biometrics.features import Features
from biometrics.graph import BIFURCATION, CROSSOVER
from biometrics.kiosk.backend import Decision, Reason
from biometrics.pipeline import Pipeline
from biometrics.settings import Settings
from biometrics.template import Template
from enrollment.errors import UnknownUser, UserLocked, UserRevoked
from enrollment.store import TemplateStore
from matching import DEFAULT_THRESHOLD, compare

#: Overlay colours (RGB): vessel area tint, centreline, junctions.
VESSEL_TINT = np.array([0, 160, 255], np.float32)
CENTRELINE = (255, 255, 0)
JUNCTION = (255, 64, 255)


class LibraryBackend:
    """Verification and enrolment against the configured store, thread-safe per request."""

    def __init__(self, settings: Settings) -> None:
        self._pipeline = Pipeline(settings)
        self._store = TemplateStore.open(settings)
        self.threshold = DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold
        self.name = self._pipeline.segmenter.name

    def close(self) -> None:
        self._store.close()

    def _analyse(self, rgb: np.ndarray) -> tuple[Template, np.ndarray, dict[str, float]]:
        """Template, overlay and stage timings of one capture; FailureToAcquire if unusable."""
        canon, _, features = self._pipeline.analyse(rgb)
        timings = dict(self._pipeline.timings)
        features.quality.require()
        return features.template, draw_overlay(canon.rgb, features), timings

    def verify(self, rgb: np.ndarray, user_id: str | None) -> Decision:
        probe, overlay, timings = self._analyse(rgb)
        start = time.perf_counter()
        if user_id is None:
            decision = self._identify(probe, overlay)
        else:
            decision = self._verify(probe, user_id, overlay)
        timings["match_ms"] = (time.perf_counter() - start) * 1e3
        decision.timings_ms.update(timings)
        return decision

    def _verify(self, probe: Template, user_id: str, overlay: np.ndarray) -> Decision:
        def refused(reason: Reason) -> Decision:
            return Decision(False, "1:1", user_id, 0.0, self.threshold, reason, overlay)

        try:
            self._store.check_not_locked(user_id)
            references = self._store.templates(user_id)
        except UnknownUser:
            return refused("unknown_user")
        except UserRevoked:
            return refused("revoked")
        except UserLocked:
            return refused("locked")
        score = _best_score(probe, references)
        accepted = score >= self.threshold
        self._store.record_verification(user_id, accepted=accepted, score=score, mode="verify")
        reason = "accepted" if accepted else "no_match"
        return Decision(accepted, "1:1", user_id, score, self.threshold, reason, overlay)

    def _identify(self, probe: Template, overlay: np.ndarray) -> Decision:
        best_id, best = None, 0.0
        for user_id, references in self._store.gallery():
            score = _best_score(probe, references)
            if score > best:
                best_id, best = user_id, score
        accepted = best_id is not None and best >= self.threshold
        matched = best_id if accepted else None
        self._store.record_verification(matched, accepted=accepted, score=best, mode="identify")
        reason = "accepted" if accepted else "no_match"
        return Decision(accepted, "1:N", matched, best, self.threshold, reason, overlay)

    def enroll(self, user_id: str, images: list[np.ndarray]) -> int:
        templates = [self._analyse(rgb)[0].to_bytes() for rgb in images]
        self._store.enroll(user_id, templates)
        return len(templates)


def _best_score(probe: Template, references: list[bytes]) -> float:
    return max((compare(Template.from_bytes(ref), probe) for ref in references), default=0.0)


def draw_overlay(rgb: np.ndarray, features: Features) -> np.ndarray:
    """The capture, dimmed, with vessels tinted, the centreline and the junctions drawn on it."""
    out = rgb.astype(np.float32) * 0.6
    out[features.vessels] = 0.5 * out[features.vessels] + 0.5 * VESSEL_TINT
    out = out.astype(np.uint8)
    out[features.skeleton] = CENTRELINE
    for _, data in features.graph.nodes(data=True):
        if data.get("kind") in (BIFURCATION, CROSSOVER):
            x, y = data["pos"]
            cv2.circle(out, (int(round(x)), int(round(y))), 3, JUNCTION, -1, cv2.LINE_AA)
    return out


def load_backend(settings: Settings) -> LibraryBackend:
    """Load the model and open the store once, before the server accepts requests."""
    return LibraryBackend(settings)
