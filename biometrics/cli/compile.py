"""``retauth compile``: build a TVM artefact from an exported M2U-Net for this CPU or a kiosk.

Needs the ``tvm`` extra (and ``g++-aarch64-linux-gnu`` for ``--target aarch64``). The result
is a directory that ``--backend tvm --weights <dir>`` runs with only the TVM runtime.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from biometrics.cli.common import console, emit, errors_to_exit_codes, line
from biometrics.errors import InputError
from biometrics.extras import require

#: Canonical-scale size of a RIDB photograph (1504×1000 → 768×511, padded to 32).
DEFAULT_SHAPE = "512x768"

EPILOG = """Examples:

\b
  retauth compile --weights segmentation/weights/m2unet_combined.onnx \\
      --shape 512x768 --out m2unet-x86
  retauth compile --weights model.onnx --target aarch64 \\
      --shape 512x768 --shape 608x576 --out m2unet-arm
  retauth compile --weights model.onnx --shape 544x544 \\
      --tune-trials 2000 --out tuned
"""


def compile_command(
    weights: str = typer.Option(..., help="Exported ONNX segmentation model."),
    target: str = typer.Option("native", help="native (this CPU) or aarch64 (cross-compiled)."),
    shape: Annotated[
        list[str] | None,
        typer.Option(
            help="Input HxW to compile, multiples of 32; repeat for several (default "
            f"{DEFAULT_SHAPE}, a canonical-scale RIDB image; DRIVE is 608x576). Other sizes "
            "are padded into a compiled shape or tiled.",
        ),
    ] = None,
    out: str = typer.Option(..., help="Artefact directory to write."),
    tune_trials: int = typer.Option(
        0, help="Meta-schedule trial budget per shape (0: built-in schedules only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON result."),
) -> None:
    """Compile an ONNX segmentation model (M2U-Net, U²-Net) with TVM into a deployable artefact
    (one library per shape)."""
    with errors_to_exit_codes(as_json=as_json):
        require("retauth compile", "tvm", "onnx")
        if tune_trials < 0:
            raise InputError("--tune-trials must be 0 or more")
        from segmentation.compile import compile_artefact, parse_shape

        shapes = [parse_shape(s) for s in shape or [DEFAULT_SHAPE]]
        start = time.perf_counter()

        def say(line: str) -> None:
            if not as_json:
                console.print(f"[{time.strftime('%H:%M:%S')}] {line}", markup=False)

        manifest = compile_artefact(
            weights, out, target=target, shapes=shapes, tune_trials=tune_trials, progress=say
        )
        seconds = time.perf_counter() - start
    result = {
        "ok": True,
        "out": out,
        "arch": manifest.arch,
        "shapes": [list(s) for s in manifest.shapes],
        "tuned": manifest.tuned,
        "notes": manifest.notes,
        "seconds": round(seconds, 1),
    }
    notes = "".join(f"\n  note: {{note{i}}}" for i in range(len(manifest.notes)))
    emit(
        result,
        line(
            "compiled {n} shape(s) for {arch} into {out} in {s:.0f} s" + notes,
            n=len(manifest.libraries),
            arch=manifest.arch,
            out=out,
            s=seconds,
            **{f"note{i}": n for i, n in enumerate(manifest.notes)},
        ),
        as_json=as_json,
    )


def register(app: typer.Typer) -> None:
    """Add ``retauth compile`` to the root app."""
    app.command("compile", epilog=EPILOG)(compile_command)
