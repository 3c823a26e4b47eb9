"""kill -9 during claims: the lockout count and the audit chain stay consistent.

A child process makes failed 1:1 claims in a loop and is killed at an arbitrary moment, several
times. Because a claim's lock check, failure count and audit event are one transaction, the
user's failure counter afterwards equals the number of audited rejections, the chain verifies,
and the user's authenticated state still opens.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from claims import settle
from eyes import templates
from sqlalchemy import select

from biometrics.engine import Engine
from enrollment import LockoutPolicy
from enrollment.models import AuditEvent, User
from matching import DEFAULT_THRESHOLD

pytestmark = [pytest.mark.usefixtures("isolated_env"), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from biometrics.engine import Engine
from biometrics.settings import load_settings
from biometrics.template import Template
from enrollment import LockoutPolicy, TemplateStore
store = TemplateStore.open(load_settings(db_url=sys.argv[1]),
                           policy=LockoutPolicy(max_failures=10**6, window_s=10**6, lockout_s=1))
engine = Engine(store, threshold=0.42)
probe = Template.from_bytes(open(sys.argv[2], "rb").read())
n = 0
while True:
    engine.verify(probe, "alice")
    n += 1
    print(n, flush=True)
"""


def test_killed_claims_leave_count_and_chain_consistent(store, db_url, tmp_path) -> None:
    t = templates()
    store.policy = LockoutPolicy(max_failures=10**6, window_s=10**6, lockout_s=1)
    Engine(store, threshold=DEFAULT_THRESHOLD).enroll("alice", [t["eye0"], t["eye0-moved"]])
    probe = tmp_path / "probe.bin"
    probe.write_bytes(t["eye2-moved"].to_bytes())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(7)
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, str(script), db_url, str(probe)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for _ in range(2):  # let it settle a couple of claims, then kill it mid-way
            assert child.stdout.readline(), "the child died on its own"
        time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert store.audit_verify().ok
    with store.engine.connect() as conn:
        failed = conn.execute(select(User.failed_attempts)).scalar_one()
        subject = conn.execute(select(User.pseudonym)).scalar_one()
        rejects = conn.execute(
            select(AuditEvent.seq).where(
                AuditEvent.subject == subject, AuditEvent.decision == "reject"
            )
        ).all()
    assert failed == len(rejects) >= 8
    assert settle(store, "alice", accepted=True).decision == "accept"
