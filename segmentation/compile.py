"""Compile an exported M2U-Net (ONNX) into a TVM artefact for this CPU or an aarch64 kiosk.

An *artefact* is a directory: one shared library per input shape (TVM Relax VM executables
with static shapes, which is what lets TVM plan all memory and specialise every loop) and a
``manifest.json`` that says which shapes, which target and which weights it was built from.
:class:`segmentation.tvm_backend.TvmSegmenter` loads it with only the TVM runtime; shapes
that were not compiled are served by tiling with the largest compiled shape.

Compilation goes ONNX → ``tvm.relax.frontend.onnx.from_onnx`` → inference-only decomposition
(BatchNorm folded) → the hand-written CPU schedules of :mod:`segmentation.tvm_schedules` →
``tvm.compile``. Optional meta-schedule tuning runs in a child process because it crashes
(segfault) in apache-tvm 0.27 on some inputs; when it fails the hand schedules are used and
the manifest says so. Requires the ``tvm`` extra; nothing on the verify path imports this.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from biometrics.errors import InputError
from biometrics.hashing import file_sha256
from segmentation.card import read_card
from segmentation.preprocessing import PAD_MULTIPLE
from segmentation.tvm_backend import (
    ARTEFACT_FORMAT,
    ARTEFACT_VERSION,
    MANIFEST,
    parse_shape_key,
    read_manifest,
)

#: Supported ``--target`` names.
TARGETS = ("native", "aarch64")
#: Cross compiler (Debian package ``g++-aarch64-linux-gnu``) used to link aarch64 artefacts.
AARCH64_CXX = "aarch64-linux-gnu-g++"


@dataclass(frozen=True)
class Manifest:
    """What an artefact directory holds; written as ``manifest.json`` next to the libraries.

    ``card`` is the ONNX model's card (:class:`segmentation.card.ModelCard` as a dict:
    threshold, FOV diameter, architecture, provenance), carried over so that a TVM artefact
    segments exactly like the ONNX model it was compiled from and the pipeline's scale check
    sees its FOV diameter; ``threshold`` repeats the card's for older readers.
    """

    arch: str
    target: dict
    input_name: str
    libraries: dict[str, str]
    weights_sha256: str
    tvm_version: str
    threshold: float = 0.5
    card: dict = field(default_factory=dict)
    tuned: bool = False
    notes: list[str] = field(default_factory=list)
    format: str = ARTEFACT_FORMAT
    version: int = ARTEFACT_VERSION

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Compiled (H, W) input shapes, smallest first."""
        return sorted(parse_shape_key(key) for key in self.libraries)

    def save(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """Read and check ``manifest.json``; raises ValueError with a one-line message."""
        return cls(**read_manifest(directory))


def parse_shape(text: str) -> tuple[int, int]:
    """``"544x544"`` → (544, 544). Both sides must be positive multiples of 32 (the network's
    total stride plus margin), so that no compiled shape needs further padding."""
    try:
        h, w = parse_shape_key(text)
    except ValueError:
        raise InputError(f"shape {text!r} is not HxW (e.g. 544x544)") from None
    if h <= 0 or w <= 0 or h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise InputError(f"shape {text!r}: H and W must be positive multiples of {PAD_MULTIPLE}")
    return h, w


def shape_key(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def resolve_target(name: str) -> dict:
    """The TVM target for ``native`` (this host's CPU model) or ``aarch64`` (NEON).

    TVM 0.27 takes targets in dict form; ``"mcpu": "native"`` silently falls back to a
    generic CPU, so the host's own CPU name is asked from LLVM.
    """
    if name == "native":
        from tvm.target.codegen import llvm_get_system_cpu

        return {"kind": "llvm", "mcpu": llvm_get_system_cpu(), "num-cores": os.cpu_count() or 1}
    if name == "aarch64":
        return {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    raise InputError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def import_onnx(weights: Path, shape: tuple[int, int]):
    """ONNX → Relax IRModule with a static (1, 3, H, W) input and BatchNorm folded away."""
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(weights))
    name = model.graph.input[0].name
    mod = from_onnx(model, shape_dict={name: (1, 3, *shape)}, keep_params_in_input=False)
    return relax.transform.DecomposeOpsForInference()(mod), name


def lower(mod, target: dict, tuning_dir: Path | None = None):
    """Legalise, fuse and schedule every operator; tuned schedules first when a database exists."""
    import tvm
    from tvm import relax

    from segmentation.tvm_schedules import schedule_passes

    passes = schedule_passes()
    if tuning_dir is not None:
        fuse_end = len(passes) - 1  # apply the database after fusion, before the hand rules
        passes.insert(fuse_end, relax.transform.MetaScheduleApplyDatabase(str(tuning_dir)))
    with tvm.target.Target(target):
        return tvm.transform.Sequential(passes)(mod)


def build(mod, target: dict, tuning_dir: Path | None = None):
    """Lower and compile a Relax module; returns a TVM executable (``export_library``-able)."""
    import tvm

    return tvm.compile(lower(mod, target, tuning_dir), tvm.target.Target(target))


def _tune_worker(weights: str, shape: tuple[int, int], target: dict, trials: int, work_dir: str):
    """Child-process body of :func:`tune`: meta-schedule search over the fused operators."""
    import tvm
    from tvm import relax

    mod, _ = import_onnx(Path(weights), shape)
    with tvm.target.Target(target):
        mod = tvm.transform.Sequential(
            [
                relax.transform.LegalizeOps(),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FoldConstant(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
                relax.transform.MetaScheduleTuneIRMod(
                    params={}, work_dir=work_dir, max_trials_global=trials
                ),
            ]
        )(mod)


def tune(
    weights: Path, shape: tuple[int, int], target: dict, trials: int, work_dir: Path
) -> str | None:
    """Run meta-schedule tuning in a child process; returns None on success, else why not.

    A crash (apache-tvm 0.27 segfaults in its tuning-record serialisation) or a missing
    optional dependency (``xgboost`` for the cost model) must not kill the compile, so the
    search is isolated and its failure becomes a note in the manifest.
    """
    proc = multiprocessing.get_context("spawn").Process(
        target=_tune_worker, args=(str(weights), shape, target, trials, str(work_dir))
    )
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return f"tuning {shape_key(shape)} failed (exit {proc.exitcode}); used built-in schedules"
    if not any(work_dir.glob("*.json")):
        return f"tuning {shape_key(shape)} produced no records; used built-in schedules"
    return None


def compile_artefact(
    weights: str | Path,
    out: str | Path,
    *,
    target: str = "native",
    shapes: Sequence[tuple[int, int]] = ((512, 768),),
    tune_trials: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Compile ``weights`` (ONNX) for every shape into the artefact directory ``out``.

    Parameters
    ----------
    weights : path of the exported M2U-Net ONNX model (dynamic or matching H, W).
    out : artefact directory; created, and replaced if it holds an older artefact.
    target : ``"native"`` (this CPU) or ``"aarch64"`` (cross-compiled, needs
        ``aarch64-linux-gnu-g++`` on PATH).
    shapes : (H, W) input shapes, each a multiple of 32 (default: a canonical RIDB image).
    tune_trials : meta-schedule trial budget per shape; 0 = built-in schedules only.
    progress : called with a short line before each step (the CLI shows it).

    Returns
    -------
    The :class:`Manifest` written to ``out/manifest.json``.
    """
    import tvm

    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise InputError(f"{weights.name}: model file not found")
    card = read_card(weights)  # before compiling: a broken card fails fast
    if not shapes:
        raise InputError("give at least one --shape")
    spec = resolve_target(target)
    if target == "aarch64" and shutil.which(AARCH64_CXX) is None:
        raise InputError(
            f"{AARCH64_CXX} not found; install Debian's g++-aarch64-linux-gnu to cross-compile"
        )
    say = progress or (lambda _line: None)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise InputError(f"{out.name}: exists and is not an artefact; refusing to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a failed rebuild must not look complete
    for old in out.glob("*.so"):
        old.unlink()

    libraries, notes, tuned = {}, [], False
    input_name = "image"
    for shape in dict.fromkeys(shapes):
        key = shape_key(shape)
        start = time.perf_counter()
        tuning_dir = None
        with tempfile.TemporaryDirectory(prefix="retauth-tune-") as tmp:
            if tune_trials > 0:
                say(f"tuning {key} ({tune_trials} trials)")
                failure = tune(weights, shape, spec, tune_trials, Path(tmp))
                if failure:
                    notes.append(failure)
                else:
                    tuning_dir, tuned = Path(tmp), True
            say(f"compiling {key} for {target}")
            mod, input_name = import_onnx(weights, shape)
            executable = build(mod, spec, tuning_dir)
        library = f"segmenter_{key}.so"
        if target == "aarch64":
            executable.export_library(str(out / library), cc=AARCH64_CXX)
        else:
            executable.export_library(str(out / library))
        libraries[key] = library
        say(f"{key}: {time.perf_counter() - start:.1f} s")

    manifest = Manifest(
        arch="aarch64" if target == "aarch64" else os.uname().machine,
        target=spec,
        input_name=input_name,
        libraries=libraries,
        weights_sha256=file_sha256(weights),
        tvm_version=tvm.__version__,
        threshold=card.threshold,
        card=card.to_dict(),
        tuned=tuned,
        notes=notes,
    )
    manifest.save(out)
    return manifest
