"""The authentication service: enrol, verify (1:1) and identify (1:N) on one deployment.

One object holds the loaded segmenter (:class:`~biometrics.pipeline.Pipeline`) and the
verification engine (:class:`~biometrics.engine.Engine`, which owns the open store and the
reference cache), so the CLI, the kiosk and scripts share the same decision path. The probe
is always analysed before the claimed id is looked up, and the engine scores unknown, revoked
and locked ids exactly like known ones, so response time does not tell whether an id is
enrolled.
"""

from __future__ import annotations

import numpy as np

from biometrics.engine import Decision, Engine, Mode
from biometrics.pipeline import Analysis, Pipeline
from biometrics.settings import Settings
from enrollment.ids import normalize_user_id
from enrollment.store import TemplateStore
from matching import DEFAULT_THRESHOLD

__all__ = ["AuthService", "Decision", "Mode", "open_engine"]


def open_engine(store: TemplateStore, settings: Settings) -> Engine:
    """The engine for the deployment's kind of references, threshold and cache size.

    The store confirms (or, while empty, takes) the kind ``protected_templates`` asks for;
    a protected store's engine compares under its current transform key, with the protected
    score's own threshold unless one is configured.
    """
    generation = store.protection(settings.protected_templates)
    if generation is None:
        threshold = DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold
        return Engine(store, threshold=threshold, cache_size=settings.reference_cache)
    from biometrics.protected_engine import ProtectedEngine  # the protected scheme's kernels
    from matching.protected import PROTECTED_THRESHOLD

    threshold = PROTECTED_THRESHOLD if settings.threshold is None else settings.threshold
    return ProtectedEngine(store, key=store.transform_key(generation), threshold=threshold)


class AuthService:
    """Enrolment and verification against the configured store and segmenter."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        engine: Engine | None = None,
        terminal: str = "local",
    ) -> None:
        self.pipeline = pipeline or Pipeline(settings)
        self.engine = engine or open_engine(TemplateStore.open(settings), settings)
        self.terminal = terminal

    @property
    def store(self) -> TemplateStore:
        return self.engine.store

    @property
    def threshold(self) -> float:
        return self.engine.threshold

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
        templates = [self.analyse(rgb).template for rgb in images]
        return self.engine.enroll(user_id, templates, replace=replace)

    def verify(self, rgb: np.ndarray, user_id: str | None = None) -> Decision:
        """1:1 against ``user_id``'s references, or 1:N against everyone when it is None."""
        return self.decide(self.analyse(rgb), user_id)

    def decide(
        self, analysis: Analysis, user_id: str | None = None, *, terminal: str | None = None
    ) -> Decision:
        """Decision for an already analysed capture (callers that also draw its overlay).

        ``terminal`` names where the attempt came from (a kiosk client); failed 1:N attempts
        count against it.
        """
        where = terminal or self.terminal
        if user_id is None:
            decision = self.engine.identify(analysis.template, terminal=where)
        else:
            decision = self.engine.verify(analysis.template, user_id, terminal=where)
        decision.timings_ms.update(analysis.timings_ms)
        return decision
