"""Exception hierarchy shared by all packages; each class carries its CLI exit code.

Packages raise these (or subclasses); the CLI maps ``exit_code`` to the process status.
"""

from __future__ import annotations


class RetauthError(Exception):
    """Base of all retauth errors; the message is a single user-facing line."""

    exit_code = 3


class InputError(RetauthError, ValueError):
    """Bad input or usage (unreadable image, unknown user, failure to acquire...): exit 2."""

    exit_code = 2


class FailureToAcquire(InputError):
    """The capture is too poor to yield a reliable template (ISO/IEC 19795-1 FTA)."""


class StoreError(RetauthError):
    """The template store cannot be read or written safely (wrong key, tampering, I/O): exit 3."""

    exit_code = 3
