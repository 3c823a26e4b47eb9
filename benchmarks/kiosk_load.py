"""Bounded load test of ``retauth kiosk`` on loopback: latency, 503s, failures, peak RSS.

Starts the kiosk as a separate process (so its memory is measured alone) with a throw-away
store, enrols ``--identities`` RIDB eyes through the operator API, then sends ``--requests``
1:1 verify requests (genuine and impostor claims alternately) from ``--clients`` threads,
with the lockout policy relaxed so that impostor claims never lock an eye.
A 503 is the kiosk refusing work beyond its queue: the client counts it, waits for the
``Retry-After`` and tries again, so every request is eventually served. Anything else that
is not a 200 is a failure and makes the script exit 1.

Usage::

    python benchmarks/kiosk_load.py --data ../shared/data [--backend onnxruntime --weights m.onnx]

Prints p50/p95 latency of served requests, p95 of 503 answers (they must be quick), the
counts, throughput, and the server's idle and peak resident memory (``VmHWM``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

TOKEN = "load-test-operator-token"
console = Console(highlight=False, soft_wrap=True)


@dataclass
class Tally:
    """Outcome counters shared by the client threads."""

    served_s: list[float] = field(default_factory=list)
    busy_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, float]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    elapsed = time.perf_counter() - start
    try:
        return status, json.loads(raw), elapsed
    except json.JSONDecodeError:
        return status, {"error": raw[:80].decode(errors="replace")}, elapsed


def _peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of ``pid`` in MB, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _ridb(data: Path, identities: int) -> dict[int, list[bytes]]:
    """Captures 1..5 of eyes 1..``identities`` (``IM00000C_N.jpg``), as encoded bytes."""
    folder = data / "RIDB"
    captures = {
        eye: [(folder / f"IM00000{c}_{eye}.jpg").read_bytes() for c in range(1, 6)]
        for eye in range(1, identities + 1)
    }
    return captures


def _provision(home: Path, data: Path, identities: int) -> None:
    """Fill the kiosk's store with ``identities`` distractor identities (two captures each),
    mirrored/turned/cropped variants of the DRIVE captures, before the kiosk starts: a kiosk
    with a realistic gallery, not an empty one."""
    from biometrics.pipeline import Pipeline
    from biometrics.settings import load_settings
    from enrollment.store import TemplateStore
    from matching.prefilter import Prefilter
    from matching.variants import distractor_pairs
    from segmentation.imageio import read_image

    pipeline = Pipeline()
    bases = [
        pipeline.extract(read_image(p)) for p in sorted((data / "DRIVE").glob("*/images/*.tif"))
    ]
    settings = load_settings(
        db_url=f"sqlite:///{home / 'retauth.db'}", key_file=str(home / "retauth.key")
    )
    with TemplateStore.open(settings) as store, Progress(console=console, transient=True) as bar:
        task = bar.add_task("enrolling distractors", total=identities)
        for n, pair in enumerate(distractor_pairs(bases, identities, seed=2)):
            store.enroll(
                f"distractor{n}",
                [t.to_bytes() for t in pair],
                features=[Prefilter.of(t).to_bytes() for t in pair],
            )
            bar.advance(task)


def _start_server(args: argparse.Namespace, home: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, RETAUTH_HOME=str(home), RETAUTH_OPERATOR_TOKEN=TOKEN)
    env.pop("RETAUTH_CONFIG", None)
    # Every eye receives impostor claims. Under the real policy, five in a row (which the
    # clients' interleaving produces now and then) lock that id, and its later genuine claims
    # are refused as they should be; that is tested in tests/enrollment, and here it would
    # only blur the decision counts of a throughput test.
    env["RETAUTH_LOCKOUT_ATTEMPTS"] = "1000000"
    cli = [sys.executable, "-c", "from biometrics.cli import main; main()"]
    # Provision the store first, as deploy/README.md does at installation: the service then
    # starts on an up-to-date schema and never loads the migration machinery.
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    command = [
        *cli, "kiosk",
        "--port", str(port), "--workers", str(args.workers), "--max-queue", str(args.max_queue),
    ]  # fmt: skip
    if args.backend:
        command += ["--backend", args.backend]
    if args.weights:
        command += ["--weights", args.weights]
    if args.no_low_memory:
        command += ["--no-low-memory"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"kiosk exited early:\n{server.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                health = json.loads(r.read())
                console.print(f"kiosk up: backend={health['backend']} pid={server.pid}")
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("kiosk did not answer /healthz within 120 s")


def _client(url: str, jobs: list[tuple[bytes, str, bool]], tally: Tally, advance) -> None:  # noqa: ANN001
    for image, user_id, genuine in jobs:
        while True:
            query = f"?user_id={user_id}" if user_id else ""  # none: 1:N identification
            status, body, elapsed = _post(
                f"{url}/api/verify{query}",
                image,
                {"Content-Type": "application/octet-stream"},
            )
            with tally.lock:
                if status == 503:
                    tally.busy_s.append(elapsed)
                elif status == 200:
                    tally.served_s.append(elapsed)
                    key = f"{'genuine' if genuine else 'impostor'}-{body['decision']}"
                    tally.decisions[key] = tally.decisions.get(key, 0) + 1
                else:
                    tally.failures.append(f"{status}: {body.get('error')}")
            if status != 503:
                break
            time.sleep(1.0)
        advance()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("RETAUTH_DATA"))
    parser.add_argument("--backend", default=None, help="auto, onnxruntime, tvm, classical")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--identities", type=int, default=5)
    parser.add_argument(
        "--distractors",
        type=int,
        default=0,
        help="distractor identities (2 captures each) enrolled before the kiosk starts",
    )
    parser.add_argument(
        "--identify-every",
        type=int,
        default=0,
        metavar="N",
        help="make every Nth request a 1:N identification (0: all 1:1)",
    )
    parser.add_argument(
        "--no-low-memory", action="store_true", help="keep ONNX Runtime's arena (faster, ~2x RSS)"
    )
    args = parser.parse_args()
    if args.data is None:
        parser.error("give --data or set RETAUTH_DATA (the folder holding RIDB/)")
    captures = _ridb(args.data, args.identities)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kiosk-load-") as home:
        if args.distractors:
            _provision(Path(home), args.data, args.distractors)
        server = _start_server(args, Path(home), port)
        try:
            idle_rss, _ = _peak_rss_mb(server.pid)
            for eye, shots in captures.items():
                payload = {"user_id": f"eye{eye}", "images": [base64.b64encode(shots[0]).decode()]}
                status, body, _ = _post(
                    f"{url}/api/enrol",
                    json.dumps(payload).encode(),
                    {"Content-Type": "application/json", "X-Operator-Token": TOKEN},
                )
                if status != 200:
                    raise SystemExit(f"enrolment of eye{eye} failed: {status} {body}")
            # Alternate genuine claims (captures 2-5 of the same eye) and impostor claims.
            eyes = sorted(captures)
            jobs = []
            for i in range(args.requests):
                eye = eyes[i % len(eyes)]
                genuine = i % 2 == 0
                claim = f"eye{eye if genuine else eyes[(i + 1) % len(eyes)]}"
                if args.identify_every and i % args.identify_every == 0:
                    claim, genuine = "", True  # the probe's own eye is enrolled
                jobs.append((captures[eye][1 + (i // len(eyes)) % 4], claim, genuine))
            tally = Tally()
            start = time.perf_counter()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("verify requests", total=len(jobs))
                with ThreadPoolExecutor(args.clients) as pool:
                    for c in range(args.clients):
                        pool.submit(
                            _client, url, jobs[c :: args.clients], tally,
                            lambda: progress.advance(task),
                        )  # fmt: skip
            wall = time.perf_counter() - start
            rss, peak_rss = _peak_rss_mb(server.pid)
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
                metrics = r.read().decode()
        finally:
            server.terminate()
            server.wait(timeout=30)

    served = np.array(tally.served_s) * 1e3
    busy = np.array(tally.busy_s) * 1e3
    console.print(
        f"requests={args.requests} clients={args.clients} workers={args.workers} "
        f"max_queue={args.max_queue} identities={args.identities} "
        f"distractors={args.distractors} identify_every={args.identify_every}"
    )
    console.print(
        f"served={served.size} latency_ms p50={np.percentile(served, 50):.0f} "
        f"p95={np.percentile(served, 95):.0f} max={served.max():.0f}  "
        f"throughput={served.size / wall:.2f} req/s over {wall:.1f} s"
    )
    busy_p95 = f"{np.percentile(busy, 95):.1f}" if busy.size else "n/a"
    console.print(f"503_answers={busy.size} (p95 {busy_p95} ms)  failed={len(tally.failures)}")
    console.print(f"decisions={json.dumps(tally.decisions, sort_keys=True)}")
    console.print(f"server_rss_mb idle={idle_rss:.0f} end={rss:.0f} peak={peak_rss:.0f}")
    for line in metrics.splitlines():
        if line.startswith("retauth_kiosk_latency_seconds"):
            console.print(f"  {line}")
    for failure in sorted(set(tally.failures))[:5]:
        console.print(f"[red]failure:[/] {failure}")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
