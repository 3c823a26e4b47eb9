"""Errors raised by the template store, each mapped to a CLI exit code by its base class.

Input problems (bad or unknown user id, duplicate enrolment) are :class:`InputError` (exit 2)
and never touch the database. Anything that means the store cannot be trusted or reached
(wrong key, tampered record, database failure) is :class:`StoreError` (exit 3). Messages are
one line and never contain key material, template bytes or SQL parameters.
"""

from __future__ import annotations

from biometrics.errors import InputError, RetauthError, StoreError


class InvalidUserId(InputError):
    """A user id that fails validation (length, characters, path separators)."""


class UserExists(InputError):
    """Enrolment of an id that is already enrolled, without ``replace``."""


class UnknownUser(InputError):
    """The user id is not enrolled."""


class UserRevoked(InputError):
    """The user's reference was revoked; it must be re-enrolled before use."""


class KeyInUse(InputError):
    """A key cannot be retired while a record is still encrypted under it."""


class UserLocked(RetauthError):
    """Too many failed 1:1 attempts: the claim is refused like a rejection (exit 1).

    Exit 1 rather than 2 because the request itself was well formed; scripts that treat
    non-zero as "no access" behave the same, and the message says why.
    """

    exit_code = 1


class InvalidRecord(StoreError):
    """An encrypted record failed to parse, authenticate or decrypt.

    Like Fernet's ``InvalidToken``, every failure (bad magic, version, key id, tag) raises this
    one class, so callers cannot be tricked into accepting partial data.
    """


class StaleReferences(StoreError):
    """The references a claim was scored against changed before it could be recorded.

    The service reloads and scores again; only if that keeps happening does it reach the
    user, as a store error (exit 3).
    """


class KeyConfigError(StoreError):
    """The key source is missing, malformed or insecure (e.g. a world-readable key file)."""
