"""The real :class:`~biometrics.kiosk.backend.KioskBackend`: :class:`biometrics.service.AuthService`.

The service holds the segmenter (loaded once) and the template store, and makes the same
decisions as the CLI. This adapter adds what the kiosk page needs on top: the vessel overlay
of the probe, and one uniform rejection for unknown, revoked and locked ids (the reason is kept
for the operator and the metrics, never shown on the public page).
"""

from __future__ import annotations

import numpy as np

from biometrics.kiosk.backend import KioskOutcome, Reason
from biometrics.overlay import render_overlay
from biometrics.service import AuthService
from biometrics.settings import Settings
from enrollment.errors import UnknownUser, UserLocked, UserRevoked

#: Claims that are refused like a wrong eye, and the reason recorded for each.
_REFUSALS: dict[type[Exception], Reason] = {
    UnknownUser: "unknown_user",
    UserRevoked: "revoked",
    UserLocked: "locked",
}


class LibraryBackend:
    """Verification and enrolment through one :class:`AuthService`.

    The service keeps no per-request state (each capture's analysis is returned to the
    caller, which draws its overlay), so kiosk workers may call it concurrently.
    """

    def __init__(self, settings: Settings, service: AuthService | None = None) -> None:
        self._service = service or AuthService(settings, terminal="kiosk")
        self.name = self._service.pipeline.segmenter.name

    def close(self) -> None:
        self._service.close()

    def verify(self, rgb: np.ndarray, user_id: str | None) -> KioskOutcome:
        analysis = self._service.analyse(rgb)
        overlay = render_overlay(analysis.canonical.rgb, analysis.features)
        try:
            outcome = self._service.decide(analysis, user_id)  # the engine's Decision
            reason: Reason = "accepted" if outcome.accepted else "no_match"
        except tuple(_REFUSALS) as exc:
            outcome, reason = None, _REFUSALS[type(exc)]
        if outcome is None:
            return KioskOutcome(
                False, "1:1", user_id, 0.0, self._service.threshold, reason, overlay
            )
        return KioskOutcome(
            outcome.accepted,
            outcome.mode,
            outcome.user_id,
            outcome.score,
            outcome.threshold,
            reason,
            overlay,
            dict(outcome.timings_ms),
        )

    def enroll(self, user_id: str, images: list[np.ndarray]) -> int:
        return self._service.enroll(user_id, images)


def load_backend(settings: Settings) -> LibraryBackend:
    """Load the model and open the store once, before the server accepts requests."""
    return LibraryBackend(settings)
