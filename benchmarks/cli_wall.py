"""Wall time of ``retauth verify --user alice probe.jpg`` as a user sees it, and where it goes.

    python benchmarks/cli_wall.py [--repeat 7] [--source DIR ...] [--json]

Each run is a fresh process of the real command (interpreter start, imports, model load,
store open, the pipeline, the decision), against a store in a temporary ``RETAUTH_HOME``
where ``alice`` was enrolled from the shipped samples ``biometrics/samples/eye_a_1/2.jpg``;
the probe is ``eye_a_3.jpg``. The median of ``--repeat`` runs is printed, after one warm-up
run that fills the OS page cache. Each checkout's runtime packages are byte-compiled first,
as an installed package is (:func:`compile_sources`).

``--source DIR`` (repeatable) runs the same command with another checkout of the code first
on ``sys.path`` (e.g. ``git archive <rev> | tar -x -C /tmp/before``): that is how the
before/after figures are printed side by side on the same machine, minutes apart.
``--source DIR::PYTHON`` runs that checkout with another interpreter, for a change that
moved a dependency too (a virtual environment with the old checkout's requirements).

The per-phase breakdown runs the phases one after another in a fresh process (the command
itself overlaps model loading and analysis with the store's import and open, in two
threads), so each figure is only what that phase adds: interpreter start, ``import`` of the
CLI, typer building and parsing the command (which builds a pydantic validator per option),
the verify path (with the slowest modules from ``python -X importtime``), ONNX Runtime
session creation, store open (key, engine, schema/migrations check), the pipeline on the
probe and the decision.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "biometrics" / "samples"
PROBE = SAMPLES / "eye_a_3.jpg"
ENROL = (SAMPLES / "eye_a_1.jpg", SAMPLES / "eye_a_2.jpg")

#: What ``retauth verify`` imports from a checkout (byte-compiled before measuring).
RUNTIME_PACKAGES = ("biometrics", "segmentation", "matching", "enrollment", "db_migrations")
#: Issue 16's target for the median wall time on the development VM (2 shared cores).
TARGET_S = 0.7

#: Runs the real console-script entry point with ``source`` first on ``sys.path``.
_ENTRY = "import sys; sys.path.insert(0, sys.argv.pop(1)); from biometrics.cli import main; main()"

#: One verification, step by step, in a fresh interpreter; prints {phase: seconds} as JSON.
#: The steps are those of ``retauth verify`` (biometrics/cli/identity.py), timed one by one.
_PHASES = """
import gc, json, sys, time
gc.disable()  # as retauth does for one-shot commands (biometrics/cli/__init__.py)
sys.path.insert(0, {source!r})
laps, last = {{}}, time.perf_counter()
def lap(name):
    global last
    now = time.perf_counter(); laps[name] = now - last; last = now
import biometrics.cli
lap("import biometrics.cli (typer, rich)")
import segmentation.imageio
lap("import the image decoders (numpy, OpenCV, Pillow)")
class Parsed(BaseException):  # not an Exception: the command's error mapping lets it through
    pass
def parsed(path):
    raise Parsed
read_image, segmentation.imageio.read_image = segmentation.imageio.read_image, parsed
sys.argv = ["retauth", "verify", "--user", "alice", {probe!r}]
try:
    biometrics.cli.main()  # stops where the command reads the probe
except Parsed:
    segmentation.imageio.read_image = read_image
lap("build and parse the command (typer)")
import biometrics.service
lap("import the verify path (service, pipeline, store)")
from biometrics.settings import load_settings
settings = load_settings()
rgb = segmentation.imageio.read_image({probe!r})
lap("decode the probe")
from biometrics.pipeline import Pipeline
pipeline = Pipeline(settings)
lap("load the segmenter (ONNX Runtime session)")
from enrollment.db import ensure_schema, make_engine
engine = make_engine(settings.resolved_db_url()); ensure_schema(engine); engine.dispose()
lap("schema/migrations check (on its own engine)")
from enrollment import TemplateStore
store = TemplateStore.open(settings)
lap("store open (engine, schema check, key, unlock)")
# the engine as this checkout's CLI builds it (older checkouts passed the store)
opener = getattr(biometrics.service, "open_engine", None)
built = {{"engine": opener(store, settings)}} if opener else {{"store": store}}
service = biometrics.service.AuthService(settings, pipeline=pipeline, **built)
analysis = service.analyse(rgb)
lap("pipeline on the probe (canonical, segment, features)")
service.decide(analysis, "alice")
lap("decision (store read, decrypt, compare, audit write)")
service.close()
lap("close")
print(json.dumps(laps))
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAUTH_")}
    env |= {"RETAUTH_HOME": str(home), "RETAUTH_CONFIG": str(home / "absent.toml")}
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Source:
    """A checkout to measure and the interpreter (environment) that runs it."""

    path: Path
    python: str = sys.executable

    @classmethod
    def parse(cls, text: str) -> Source:
        path, _, python = text.partition("::")
        return cls(Path(path).resolve(), python or sys.executable)

    def __str__(self) -> str:
        return str(self.path) + ("" if self.python == sys.executable else f" ({self.python})")


def _retauth(
    source: Source, home: Path, *args: str
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run one command; returns its wall seconds, its CPU seconds (user + system) and it."""
    start, cpu = time.perf_counter(), _cpu()
    proc = subprocess.run(
        [source.python, "-c", _ENTRY, str(source.path), *args],
        env=_env(home),
        capture_output=True,
        text=True,
        cwd=home,
    )
    return time.perf_counter() - start, _cpu() - cpu, proc


def compile_sources(source: Source) -> None:
    """Byte-compile the runtime packages of ``source``, as ``pip install`` does.

    A fresh ``git archive`` checkout has no ``__pycache__``, and under
    ``PYTHONDONTWRITEBYTECODE`` (set in this development container) no run ever writes one,
    so every run would compile the whole package and a before/after comparison would
    measure that instead of the command.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    packages = [str(source.path / p) for p in RUNTIME_PACKAGES if (source.path / p).is_dir()]
    subprocess.run(
        [source.python, "-m", "compileall", "-q", *packages],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def wall_times(sources: list[Source], repeat: int) -> dict[Source, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``retauth verify --user alice`` in fresh processes.

    The sources take turns run by run, so that a machine shared with other jobs loads them
    alike; each source has one warm-up run first.
    """
    out: dict[Source, list[tuple[float, float]]] = {s: [] for s in sources}
    with tempfile.TemporaryDirectory(prefix="retauth-wall-") as tmp:
        homes = {s: Path(tmp) / str(i) for i, s in enumerate(sources)}
        for source, home in homes.items():
            home.mkdir()
            *_, proc = _retauth(source, home, "enroll", "--user", "alice", *map(str, ENROL))
            if proc.returncode != 0:
                raise SystemExit(f"enrolment failed ({source}): {proc.stderr.strip()}")
        for i in range(repeat + 1):
            for source, home in homes.items():
                wall, cpu, proc = _retauth(source, home, "verify", "--user", "alice", str(PROBE))
                if proc.returncode != 0:
                    raise SystemExit(f"verify exited {proc.returncode}: {proc.stderr.strip()}")
                if i:
                    out[source].append((wall, cpu))
    return out


def phase_times(source: Source, repeat: int) -> dict[str, float]:
    """Median seconds of each step of one verification, each sample in a fresh interpreter."""
    samples: dict[str, list[float]] = {"interpreter start (python -c pass)": []}
    with tempfile.TemporaryDirectory(prefix="retauth-phase-") as tmp:
        home = Path(tmp)
        _retauth(source, home, "enroll", "--user", "alice", *map(str, ENROL))
        code = _PHASES.format(source=str(source.path), probe=str(PROBE))
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([source.python, "-c", "pass"], env=_env(home), check=True)
            samples["interpreter start (python -c pass)"].append(time.perf_counter() - start)
            proc = subprocess.run(
                [source.python, "-c", code], env=_env(home), capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise SystemExit(f"phase run failed: {proc.stderr.strip()[-600:]}")
            for name, seconds in json.loads(proc.stdout).items():
                samples.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def slowest_imports(source: Source, top: int = 12) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time on the verify path (``-X importtime``)."""
    code = f"import sys; sys.path.insert(0, {str(source.path)!r}); import biometrics.cli, biometrics.service, segmentation.imageio"
    proc = subprocess.run(
        [source.python, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    # Lines come in post-order, indented by depth; walked backwards they are in pre-order,
    # so a stack gives each module's importer. A package's cost is the sum of its subtrees
    # that were imported from another package (biometrics -> networkx counts for networkx).
    seen: dict[str, float] = {}
    stack: list[tuple[int, str]] = []
    for line in reversed(proc.stderr.splitlines()):
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        depth = len(name) - len(name.lstrip())
        package = name.strip().split(".")[0]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack or stack[-1][1] != package:
            seen[package] = seen.get(package, 0.0) + int(cumulative) / 1e6
        stack.append((depth, package))
    return sorted(seen.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--source",
        type=Source.parse,
        action="append",
        help="checkout to measure, DIR or DIR::PYTHON (repeatable; default: this one)",
    )
    parser.add_argument("--no-phases", action="store_true", help="only the wall times")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sources = args.source or [Source(ROOT)]
    report = {}
    for source in sources:
        compile_sources(source)
    measured = wall_times(sources, args.repeat)
    for source in sources:
        times = [wall for wall, _ in measured[source]]
        entry: dict[str, object] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "cpu_median_s": statistics.median(cpu for _, cpu in measured[source]),
            "runs": len(times),
        }
        if not args.no_phases:
            entry["phases_s"] = phase_times(source, max(3, args.repeat // 2))
            entry["imports_s"] = dict(slowest_imports(source))
        report[str(source)] = entry
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"retauth verify --user alice {PROBE.name}  (fresh process each, {args.repeat} runs; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)"
    )
    for source, entry in report.items():
        print(
            f"\n{source}: median {entry['median_s']:.3f} s wall "
            f"(min {entry['min_s']:.3f}, max {entry['max_s']:.3f}), "
            f"median {entry['cpu_median_s']:.3f} s CPU (user + system); target {TARGET_S} s "
            + ("met" if entry["median_s"] <= TARGET_S else "missed")
        )
        for name, seconds in entry.get("phases_s", {}).items():
            print(f"  {name:<62} {seconds * 1e3:7.0f} ms")
        if entry.get("imports_s"):
            print("  slowest imports on the verify path (cumulative, one run):")
            for package, seconds in entry["imports_s"].items():
                print(f"    {package:<30} {seconds * 1e3:7.0f} ms")


if __name__ == "__main__":
    main()
