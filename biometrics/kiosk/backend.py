"""What the kiosk needs from the biometric library, as one small interface.

The web layer only calls :class:`KioskBackend`; :func:`load_backend` builds the real one from
:class:`biometrics.settings.Settings`, and tests pass a fake. Keeping the seam here means the
web code never learns how templates are extracted, stored or compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:  # the web layer needs only the name, not the engine's imports
    from biometrics.engine import Mode

#: Why a probe was not accepted. The page shows the same words for all of them, so that a
#: stranger cannot learn whether an id is enrolled, revoked or locked; metrics count them.
Reason = Literal["accepted", "no_match", "unknown_user", "locked", "revoked"]


@dataclass(frozen=True)
class KioskOutcome:
    """What the page shows for one verification or identification: the engine's
    :class:`~biometrics.engine.Decision` plus why it was refused and the probe's overlay.

    ``user_id`` is the claimed id in 1:1 mode and the matched id in 1:N mode when accepted;
    it is ``None`` for a rejected identification, so the page can never show a near miss.
    ``overlay`` is the probe with its vessel tree drawn on it (RGB uint8), for the person in
    front of the scanner to see what was captured.
    """

    accepted: bool
    mode: Mode
    user_id: str | None
    score: float
    threshold: float
    reason: Reason
    overlay: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class KioskBackend(Protocol):
    """The library as the kiosk sees it. Implementations must be safe to call from threads."""

    name: str

    def verify(self, rgb: np.ndarray, user_id: str | None) -> KioskOutcome:
        """Compare a probe with ``user_id``'s references (1:1), or with everyone (1:N).

        Raises ``FailureToAcquire`` for unusable captures and ``InputError`` for a malformed id.
        """
        ...

    def enroll(self, user_id: str, images: list[np.ndarray]) -> int:
        """Enrol ``user_id`` from one or more captures; return the number of references kept."""
        ...
