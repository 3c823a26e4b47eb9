"""Encrypted, audited template storage (see ``enrollment/SECURITY.md`` for the threat model).

The public API is :class:`~enrollment.store.TemplateStore` and the errors in
:mod:`enrollment.errors`; key rotation lives in :mod:`enrollment.rotation`.
"""

from enrollment.errors import (
    InvalidRecord,
    InvalidUserId,
    KeyConfigError,
    KeyInUse,
    UnknownUser,
    UserExists,
    UserLocked,
    UserRevoked,
)
from enrollment.policy import LockoutPolicy
from enrollment.store import TemplateStore

__all__ = [
    "InvalidRecord",
    "InvalidUserId",
    "KeyConfigError",
    "KeyInUse",
    "LockoutPolicy",
    "TemplateStore",
    "UnknownUser",
    "UserExists",
    "UserLocked",
    "UserRevoked",
]
