"""Operator authentication for enrolment: a shared token from a private file or the settings.

Enrolment binds a face-to-face identity check (done by a human operator) to a template, so
only the operator may trigger it. The token lives in a file that only the kiosk user can read
(mode 0600, checked at start-up) or in ``RETAUTH_OPERATOR_TOKEN`` (e.g. a systemd credential,
read by the settings resolver into ``Settings.operator_token``); requests present it in the
``X-Operator-Token`` header and it is compared in constant time.
"""

from __future__ import annotations

import hmac
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path

from biometrics.errors import InputError
from biometrics.settings import Settings, load_settings

#: Shortest token accepted: a 4-digit PIN is guessable over a loopback API in seconds.
MIN_LENGTH = 8


class OperatorToken:
    """A loaded operator token; :meth:`matches` is constant-time in the presented value."""

    def __init__(self, secret: str) -> None:
        secret = secret.strip()
        if len(secret) < MIN_LENGTH:
            raise InputError(f"operator token must be at least {MIN_LENGTH} characters")
        self._secret = secret.encode()

    def matches(self, presented: str | None) -> bool:
        # compare_digest on bytes of unequal length still takes time independent of content.
        return presented is not None and hmac.compare_digest(
            presented.strip().encode(), self._secret
        )

    def __repr__(self) -> str:  # never print the secret, even in a debugger or a traceback
        return "OperatorToken(<hidden>)"


def load_operator_token(
    path: str | Path | None = None, settings: Settings | None = None
) -> OperatorToken | None:
    """Read the token from ``path`` (must be private to its owner) or ``RETAUTH_OPERATOR_TOKEN``.

    The variable is read by the settings resolver (``settings.operator_token``, resolved now
    when ``settings`` is not given), never from the environment here. Returns ``None`` when
    neither is given: the kiosk then runs verify-only and refuses enrolment, rather than
    falling back to an unprotected operator mode.
    """
    if path is None:
        value = (settings or load_settings()).operator_token
        return OperatorToken(value) if value else None
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise InputError(f"operator token file {path.name} cannot be read") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"operator token file {path.name} is not a regular file")
    if info.st_mode & 0o077:
        raise InputError(
            f"operator token file {path.name} is readable by others; run chmod 600 on it"
        )
    return OperatorToken(path.read_text(encoding="utf-8", errors="strict"))


class OperatorGate:
    """Checks presented tokens and throttles each client after repeated wrong ones.

    Without a throttle, a loopback API answers a token guess in milliseconds; after
    ``max_failures`` wrong tokens from one client address, every check from that client fails
    (even the right token) for ``lockout_s``. Other clients are unaffected: a global lockout
    would let anyone lock the operator out with five bad guesses. A request that presents no
    token is not a guess and is not counted. At most ``max_clients`` addresses are tracked
    (the least recently seen is forgotten), so the table cannot grow without bound.
    """

    def __init__(
        self,
        token: OperatorToken,
        max_failures: int = 5,
        lockout_s: float = 60.0,
        max_clients: int = 4096,
    ) -> None:
        self._token = token
        self._max_failures = max_failures
        self._lockout_s = lockout_s
        self._max_clients = max_clients
        self._lock = threading.Lock()
        #: client → (consecutive failures, locked until), least recently seen first
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def check(self, presented: str | None, client: str) -> bool:
        """True when ``presented`` is the token and ``client`` is not throttled."""
        if presented is None:
            return False
        ok = self._token.matches(presented)
        with self._lock:
            now = time.monotonic()
            failures, locked_until = self._clients.pop(client, (0, 0.0))
            if now < locked_until:
                self._remember(client, failures, locked_until)
                return False
            if ok:
                return True  # a success forgets the client's failures
            failures += 1
            if failures >= self._max_failures:
                failures, locked_until = 0, now + self._lockout_s
            self._remember(client, failures, locked_until)
            return False

    def _remember(self, client: str, failures: int, locked_until: float) -> None:
        self._clients[client] = (failures, locked_until)
        if len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)
