"""The authentication service: enrol, verify (1:1) and identify (1:N) on one deployment.

One object holds the loaded segmenter and the open template store, so the CLI, the kiosk and
scripts share the same decision logic. It keeps no per-request state, so threads may share it. Decisions are audited by the store; 1:1 failures feed
the lockout policy. The probe is always analysed before the claimed id is looked up, so an
unknown id costs the same time as a known one: it is analysed, then compared against itself
as a decoy, so response time does not tell whether an id is enrolled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from biometrics.pipeline import Analysis, Pipeline
from biometrics.settings import Settings
from biometrics.template import Template
from enrollment.errors import UnknownUser
from enrollment.ids import normalize_user_id
from enrollment.store import TemplateStore
from matching import DEFAULT_THRESHOLD, compare
from matching.search import Gallery

Mode = Literal["1:1", "1:N"]


@dataclass(frozen=True)
class Decision:
    """Outcome of a verification; ``user_id`` is the claim (1:1) or the match (1:N, if any)."""

    accepted: bool
    mode: Mode
    user_id: str | None
    score: float
    threshold: float
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "mode": self.mode,
            "user": self.user_id,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


class AuthService:
    """Enrolment and verification against the configured store and segmenter."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        store: TemplateStore | None = None,
    ) -> None:
        self.pipeline = pipeline or Pipeline(settings)
        self.store = store or TemplateStore.open(settings)
        self.threshold = DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold

    def close(self) -> None:
        self.store.close()

    def analyse(self, rgb: np.ndarray) -> Analysis:
        """Analyse one capture; raises FailureToAcquire if it is unusable."""
        analysis = self.pipeline.analyse(rgb)
        analysis.features.quality.require()
        return analysis

    def enroll(self, user_id: str, images: list[np.ndarray], *, replace: bool = False) -> int:
        """Enrol ``user_id`` from one or more captures (all must pass the quality gate)."""
        normalize_user_id(user_id)  # refuse a bad id before spending time on the images
        templates = [self.analyse(rgb).template.to_bytes() for rgb in images]
        self.store.enroll(user_id, templates, replace=replace)
        return len(templates)

    def verify(self, rgb: np.ndarray, user_id: str | None = None) -> Decision:
        """1:1 against ``user_id``'s references, or 1:N against everyone when it is None."""
        return self.decide(self.analyse(rgb), user_id)

    def decide(self, analysis: Analysis, user_id: str | None = None) -> Decision:
        """Decision for an already analysed capture (callers that also draw its overlay)."""
        probe = analysis.template
        start = time.perf_counter()
        decision = self._identify(probe) if user_id is None else self._verify(probe, user_id)
        decision.timings_ms.update(analysis.timings_ms)
        decision.timings_ms["match_ms"] = (time.perf_counter() - start) * 1e3
        return decision

    def _verify(self, probe: Template, user_id: str) -> Decision:
        try:
            self.store.check_not_locked(user_id)
            references = [Template.from_bytes(b) for b in self.store.templates(user_id)]
        except UnknownUser:
            compare(probe, probe)  # the work of a real comparison: no timing oracle for ids
            raise
        # Multi-capture enrolment: the best-matching reference decides.
        score = max((compare(ref, probe) for ref in references), default=0.0)
        accepted = score >= self.threshold
        self.store.record_verification(user_id, accepted=accepted, score=score, mode="verify")
        return Decision(accepted, "1:1", user_id, score, self.threshold)

    def _identify(self, probe: Template) -> Decision:
        gallery = Gallery(
            [(uid, [Template.from_bytes(b) for b in blobs]) for uid, blobs in self.store.gallery()]
        )
        ranked = gallery.identify(probe)
        best = ranked[0] if ranked else None
        score = best.score if best else 0.0
        accepted = best is not None and score >= self.threshold
        matched = best.identity if accepted else None
        self.store.record_verification(matched, accepted=accepted, score=score, mode="identify")
        return Decision(accepted, "1:N", matched, score, self.threshold)
