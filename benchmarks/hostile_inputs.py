"""Memory under hostile photographs: ``retauth verify`` peak RSS per input class, and the
kiosk's resident memory after a round of hostile uploads (issue 14 item 1).

1. CLI: a genuine 1:1 verification of a RIDB capture is the baseline; every input of
   :mod:`biometrics.hostile_inputs` then runs through ``retauth verify`` in its own process.
   Prints exit code, peak RSS (``wait4``) and its ratio to the baseline (acceptance: <= 1.5).
2. Kiosk: starts ``retauth kiosk`` as ``benchmarks/kiosk_load.py`` does, enrols one eye,
   settles with genuine verifications, then uploads every hostile input ``--rounds`` times
   and prints the resident memory (``VmRSS``) before and after (acceptance: within 20 MB).

Usage::

    python benchmarks/hostile_inputs.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout, and the sibling benchmark

from kiosk_load import TOKEN, _free_port, _peak_rss_mb, _post, _start_server  # noqa: E402

from biometrics.hostile_inputs import hostile_images, run_measured  # noqa: E402


def cli_peaks(capture: Path, probe: Path) -> int:
    """Print the CLI table; return the number of inputs over the 1.5x bound or not exit 2."""
    with tempfile.TemporaryDirectory(prefix="hostile-cli-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETAUTH_")}
        env.update(PYTHONPATH=str(ROOT), RETAUTH_HOME=home, RETAUTH_CONFIG=f"{home}/absent")
        code, err, _ = run_measured(["enroll", "--user", "eye1", str(capture)], env)
        if code != 0:
            raise SystemExit(f"enrolment failed: {err}")
        code, err, baseline = run_measured(["verify", "--user", "eye1", str(probe)], env)
        if code != 0:
            raise SystemExit(f"genuine verification failed: {err}")
        print(f"retauth verify, genuine RIDB capture: exit 0, peak {baseline:.0f} MB")
        print(f"{'input':<22} {'bytes':>8} {'exit':>4} {'peak MB':>8} {'ratio':>6}  message")
        bad = 0
        for name, data in hostile_images().items():
            path = Path(home) / f"{name}.png"
            path.write_bytes(data)
            code, err, peak = run_measured(["verify", "--user", "eye1", str(path)], env)
            ratio = peak / baseline
            bad += code != 2 or ratio > 1.5
            message = err.strip().splitlines()[0][:70] if err.strip() else ""
            print(f"{name:<22} {len(data):>8} {code:>4} {peak:>8.0f} {ratio:>6.2f}  {message}")
        return bad


def kiosk_residency(args: argparse.Namespace, capture: bytes, probe: bytes) -> int:
    """Print idle/after RSS of a kiosk fed hostile uploads; return 1 if over the 20 MB bound."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="hostile-kiosk-") as home:
        server = _start_server(args, Path(home), port)
        try:
            enrol = {"user_id": "eye1", "images": [base64.b64encode(capture).decode()]}
            status, body, _ = _post(
                f"{url}/api/enrol",
                json.dumps(enrol).encode(),
                {"Content-Type": "application/json", "X-Operator-Token": TOKEN},
            )
            if status != 200:
                raise SystemExit(f"enrolment failed: {status} {body}")
            image = {"Content-Type": "application/octet-stream"}
            for _ in range(5):  # settle the allocator on genuine work first
                _post(f"{url}/api/verify?user_id=eye1", probe, image)
            idle, _ = _peak_rss_mb(server.pid)
            statuses: dict[int, int] = {}
            worst_ms = 0.0
            for _ in range(args.rounds):
                for data in hostile_images().values():
                    status, _, seconds = _post(f"{url}/api/verify?user_id=eye1", data, image)
                    statuses[status] = statuses.get(status, 0) + 1
                    worst_ms = max(worst_ms, seconds * 1e3)
            after, peak = _peak_rss_mb(server.pid)
            status, body, _ = _post(f"{url}/api/verify?user_id=eye1", probe, image)
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"kiosk: {sum(statuses.values())} hostile uploads, statuses {statuses}, slowest "
        f"{worst_ms:.0f} ms; RSS idle {idle:.0f} MB, after {after:.0f} MB "
        f"({after - idle:+.0f} MB), peak {peak:.0f} MB; genuine verify afterwards: "
        f"{status} {body.get('decision')}"
    )
    return int(after - idle > 20 or status != 200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("RETAUTH_DATA"))
    parser.add_argument("--rounds", type=int, default=3, help="hostile rounds sent to the kiosk")
    args = parser.parse_args()
    if args.data is None:
        parser.error("give --data or set RETAUTH_DATA (the folder holding RIDB/)")
    # what kiosk_load's _start_server reads: one worker, default queue, default backend
    args.workers, args.max_queue, args.backend, args.weights = 1, 4, None, None
    args.no_low_memory = False
    capture, probe = args.data / "RIDB/IM000001_1.jpg", args.data / "RIDB/IM000002_1.jpg"
    bad = cli_peaks(capture, probe)
    bad += kiosk_residency(args, capture.read_bytes(), probe.read_bytes())
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
