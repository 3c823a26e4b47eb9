"""Input amplification (issue 14 item 1): no input makes ``retauth verify`` balloon.

Every hostile photograph of :mod:`tests.security.hostile` is run through ``retauth verify``
in its own process; its peak resident memory (``ru_maxrss`` from ``wait4``, so one child
at a time) must stay within 1.5x of a verification of a capture framed like RIDB, and the
command must end with exit 2 and one line. Before the fix, ``tall_64x5000`` peaked at 5.5 GB
here (canonical scaling made it 540 x 42187 and the segmenter ran on that).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.security.hostile import capture_jpeg, hostile_images

#: ``retauth`` of this checkout (not whichever copy is installed).
ROOT = Path(__file__).resolve().parents[2]
RETAUTH = [sys.executable, "-m", "biometrics.cli"]
#: Acceptance bound of the issue: peak RSS on any input <= 1.5x that of a real capture.
MAX_RATIO = 1.5


def run_measured(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``retauth *args``; return exit code, stderr and the child's own peak RSS in MB."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*RETAUTH, *args], env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETAUTH_")}
    return {
        **clean,
        "PYTHONPATH": str(ROOT),
        "RETAUTH_HOME": str(home),
        "RETAUTH_CONFIG": str(home / "absent.toml"),
    }


@pytest.fixture(scope="module")
def baseline_mb(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> float:
    """Peak RSS of a genuine 1:1 verification of a 1504 x 1000 capture."""
    photo = tmp_path_factory.mktemp("capture") / "capture.jpg"
    photo.write_bytes(capture_jpeg())
    code, err, _ = run_measured(["enroll", "--user", "alice", str(photo)], env)
    assert code == 0, err
    code, err, peak = run_measured(["verify", "--user", "alice", str(photo)], env)
    assert code == 0, err
    return peak


@pytest.mark.parametrize("name", sorted(hostile_images()))
def test_hostile_image_is_refused_within_bounded_memory(
    name: str, env: dict[str, str], baseline_mb: float, tmp_path: Path
) -> None:
    photo = tmp_path / f"{name}.png"
    photo.write_bytes(hostile_images()[name])
    code, err, peak = run_measured(["verify", "--user", "alice", str(photo)], env)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert peak <= MAX_RATIO * baseline_mb, f"{name}: {peak:.0f} MB vs {baseline_mb:.0f} MB"
