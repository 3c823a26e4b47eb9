"""Files that hold secrets or biometric data: private folders and permission checks.

``Path.mkdir(mode=0o700, parents=True)`` applies the mode (minus the umask) to the last
folder only; the parents get ``0o777 & ~umask``, which is 0777 under ``umask 000``. Every
folder retauth creates for its database or key is therefore chmod-ed to 0700 explicitly.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: Permission bits that let anyone but the owner read, write or enter.
SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents, each with mode 0700 whatever the umask.

    Folders that already exist are left as they are (``/home`` is not ours to change).
    """
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        created.chmod(0o700)


def shared_mode(path: Path) -> int | None:
    """The permission bits of ``path`` if group or others have any access, else None."""
    if os.name != "posix":
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & SHARED_BITS else None
