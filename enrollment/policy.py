"""Lockout policy: too many consecutive failed 1:1 attempts within a window lock a user.

A failed 1:1 verification opens a window (``window_s``) if none is open; each further failure
inside it counts; ``max_failures`` failures lock the user for ``lockout_s`` seconds. An
accepted verification, a re-enrolment or ``retauth users unlock`` resets the count. A failed
1:N identification claims no identity, so it counts against the terminal that made it
instead (the store applies the same policy, with a larger limit, to a per-terminal counter).
Defaults follow common guidance for biometric presentation attempts (5 tries in 15 minutes,
15 minutes locked); deployments change them through the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from enrollment.models import User

if TYPE_CHECKING:
    from biometrics.settings import Settings
    from enrollment.store import Guard

_US = 1_000_000


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window_s: float = 900.0
    lockout_s: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        """Policy from :class:`~biometrics.settings.Settings` (``lockout_*`` fields)."""
        return cls(
            max_failures=settings.lockout_attempts,
            window_s=settings.lockout_window_s,
            lockout_s=settings.lockout_duration_s,
        )

    def locked_for_s(self, user: User | Guard, now_us: int) -> float:
        """Seconds the user stays locked (0 when not locked)."""
        if user.locked_until_us is None or user.locked_until_us <= now_us:
            return 0.0
        return (user.locked_until_us - now_us) / _US

    def register_failure(self, user: User | Guard, now_us: int) -> bool:
        """Count a failed 1:1 attempt; return True when it locks the user."""
        start = user.failure_window_start_us
        if start is None or now_us - start > self.window_s * _US:
            user.failure_window_start_us = now_us
            user.failed_attempts = 0
        user.failed_attempts += 1
        if user.failed_attempts >= self.max_failures:
            user.locked_until_us = now_us + int(self.lockout_s * _US)
            user.failed_attempts = 0
            user.failure_window_start_us = None
            return True
        return False

    @staticmethod
    def reset(user: User | Guard) -> None:
        user.failed_attempts = 0
        user.failure_window_start_us = None
        user.locked_until_us = None
