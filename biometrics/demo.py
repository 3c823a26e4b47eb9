"""The bundled demo captures and the demo scenario behind ``retauth demo``.

Library code, so that the first-run check a README promises (enrol one eye, accept its
genuine capture, reject an impostor, identify it 1:N) can be run by scripts and tests without
the CLI, and the CLI only renders the steps. The captures (RIDB, CC BY 4.0) are package data
in ``biometrics/samples/``; tests and benchmarks read them through :func:`sample_images`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from biometrics.errors import InternalError

if TYPE_CHECKING:
    import numpy as np

    from biometrics.engine import Decision

#: The captures the scenario uses: eye A three times, eye B once (the impostor).
DEMO_SAMPLES = ("eye_a_1", "eye_a_2", "eye_a_3", "eye_b_1")
#: What a correct installation decides for the three claims, in order.
EXPECTED = (True, False, True)


def sample_images() -> dict[str, Path]:
    """Bundled demo captures (RIDB, CC BY 4.0), keyed by file stem."""
    folder = Path(str(resources.files("biometrics") / "samples"))
    return {p.stem: p for p in sorted(folder.glob("*.jpg"))}


@dataclass(frozen=True)
class DemoStep:
    """One step of the scenario: its label, the decision (``None`` for the enrolment), time."""

    label: str
    decision: Decision | None
    ms: float


@dataclass(frozen=True)
class DemoRun:
    """The scenario's outcome: which segmenter ran, and each step in order."""

    segmenter: str
    steps: list[DemoStep]

    @property
    def ok(self) -> bool:
        """Whether the genuine probe was accepted, the impostor rejected, the eye identified."""
        return tuple(s.decision.accepted for s in self.steps[1:] if s.decision) == EXPECTED


def _read(paths: list[Path]) -> list[np.ndarray]:
    from segmentation.imageio import read_image

    return [read_image(p) for p in paths]


def run_demo(backend: str | None = None, weights: str | None = None) -> DemoRun:
    """Enrol eye A as ``alice`` in a temporary store, verify a genuine and an impostor
    capture against her, and identify the genuine one 1:N.

    The store and its key live in a temporary folder removed afterwards, so the demo never
    touches the user's own store or announces a key file.
    """
    samples = sample_images()
    if any(n not in samples for n in DEMO_SAMPLES):
        raise InternalError("demo samples are missing from this installation")
    from biometrics.service import AuthService
    from biometrics.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="retauth-demo-"))
    steps = []
    try:
        settings = load_settings(
            db_url=f"sqlite:///{home / 'demo.db'}",
            key_file=str(home / "demo.key"),
            backend=backend,
            weights=weights,
        )
        service = AuthService(settings)
        try:
            t = time.perf_counter()
            service.enroll("alice", _read([samples["eye_a_1"], samples["eye_a_2"]]))
            ms = (time.perf_counter() - t) * 1e3
            steps.append(DemoStep("enrol alice  (eye A, captures 1+2)", None, ms))
            for label, name, claim in (
                ("verify alice (eye A, capture 3)", "eye_a_3", "alice"),
                ("verify alice (eye B, impostor) ", "eye_b_1", "alice"),
                ("identify     (eye A, capture 3)", "eye_a_3", None),
            ):
                t = time.perf_counter()
                decision = service.verify(_read([samples[name]])[0], claim)
                steps.append(DemoStep(label, decision, (time.perf_counter() - t) * 1e3))
        finally:
            service.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return DemoRun(service.pipeline.segmenter.name, steps)
