"""Response time does not tell whether an id is enrolled, revoked or locked (in-process).

The engine scores every 1:1 claim against as many references as a typical user has (real
stand-in captures when the id has none) and settles it in one transaction; so the medians of
the four kinds of claim stay within 10 % of each other. Rounds are interleaved and compared
pairwise, so that load from other processes affects all four alike.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time

import pytest
from eyes import templates

from biometrics.engine import Engine
from biometrics.service import open_engine
from biometrics.settings import load_settings
from enrollment import LockoutPolicy, TemplateStore
from enrollment.errors import UnknownUser, UserLocked, UserRevoked
from matching import DEFAULT_THRESHOLD

pytestmark = [pytest.mark.usefixtures("isolated_env"), pytest.mark.slow]

ROUNDS = 60


def _claim(engine: Engine, probe, user: str) -> float:
    start = time.perf_counter()
    with contextlib.suppress(UnknownUser, UserRevoked, UserLocked):
        engine.verify(probe, user)
    return time.perf_counter() - start


def _engine(store: TemplateStore, kind: str) -> Engine:
    if kind == "plain":
        return Engine(store, threshold=DEFAULT_THRESHOLD)
    # Synthetic eyes resemble each other in the protected domain: a threshold no impostor
    # reaches keeps the locking claim below a failure.
    return open_engine(store, load_settings(protected_templates=True, threshold=0.99))


@pytest.mark.parametrize("kind", ["plain", "protected"])
def test_known_unknown_revoked_locked_cost_the_same(sqlite_store: TemplateStore, kind: str) -> None:
    t = templates()
    engine = _engine(sqlite_store, kind)
    # Every id holds the same two captures, so the references compared cost the same and
    # only what the engine does differently per kind of id can show.
    refs = [t["eye1"], t["eye1-moved"]]
    for user in ("user1", "gone", "user3"):
        engine.enroll(user, refs)
    sqlite_store.revoke("gone")
    engine.store.policy = LockoutPolicy(max_failures=1, window_s=3600, lockout_s=3600)
    assert not engine.verify(t["eye0-moved"], "user3").accepted  # one failure locks user3
    engine.store.policy = LockoutPolicy(max_failures=10_000, window_s=3600, lockout_s=3600)
    with pytest.raises(UserLocked):
        engine.verify(t["eye4-moved"], "user3")
    # An eye nobody enrolled: the attacker probing ids does not hold the victims' eyes.
    probe = t["eye4-moved"]
    claims = {"known": "user1", "unknown": "nobody", "revoked": "gone", "locked": "user3"}
    times: dict[str, list[float]] = {kind: [] for kind in claims}
    for _ in range(3):  # warm every cache first
        for user in claims.values():
            _claim(engine, probe, user)
    order = random.Random(0)
    for _ in range(ROUNDS):
        kinds = list(claims)
        order.shuffle(kinds)  # no kind always pays for coming first (thread wake-up, WAL)
        for kind in kinds:
            times[kind].append(_claim(engine, probe, claims[kind]))
    # Paired per round (the four claims of a round run back to back), so that load from
    # other processes, which drifts over seconds, cancels out of each ratio.
    ratios = {
        kind: statistics.median(t / k for t, k in zip(v, times["known"], strict=True))
        for kind, v in times.items()
    }
    for kind, ratio in ratios.items():
        assert abs(ratio - 1.0) <= 0.10, (kind, ratios)
