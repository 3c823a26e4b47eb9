"""Run a TVM artefact built by ``retauth compile``: TVM *runtime* only, no compilation.

The artefact holds one static-shape library per compiled input shape (see
:mod:`segmentation.compile`). An image whose padded shape was compiled runs in one call; a
smaller one is zero-padded up to the nearest compiled shape that contains it; a larger one is
tiled with the largest compiled shape (:mod:`segmentation.tiling`), which also bounds memory.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from segmentation.backends import probability_map
from segmentation.preprocessing import PAD_MULTIPLE
from segmentation.tiling import DEFAULT_MARGIN, tiled_logits

#: The artefact's index file and its identification; bump the version when the layout changes.
MANIFEST = "manifest.json"
ARTEFACT_FORMAT = "retauth-tvm-artefact"
ARTEFACT_VERSION = 1


class TvmSegmenter:
    """M2U-Net compiled by TVM, same interface as :class:`segmentation.backends.OnnxSegmenter`.

    Parameters
    ----------
    artefact : the artefact directory (or its ``manifest.json``).
    margin : tiling context for images larger than every compiled shape (reduced if the
        largest compiled shape is too small to keep a centre).
    """

    name = "tvm"

    def __init__(self, artefact: str | Path, *, margin: int = DEFAULT_MARGIN) -> None:
        path = Path(artefact)
        directory = path.parent if path.name == MANIFEST else path
        manifest = read_manifest(directory)
        if manifest["arch"] != platform.machine():
            raise ValueError(
                f"{directory.name}: built for {manifest['arch']}, this machine is "
                f"{platform.machine()}; compile with --target native here"
            )
        self._libraries = {
            parse_shape_key(key): directory / name for key, name in manifest["libraries"].items()
        }
        self._machines: dict[tuple[int, int], object] = {}
        self.shapes = sorted(self._libraries, key=lambda s: s[0] * s[1])
        # A window must keep a centre of at least one stride after both margins.
        widest = (min(self.shapes[-1]) - PAD_MULTIPLE) // 2 // PAD_MULTIPLE * PAD_MULTIPLE
        self.margin = max(0, min(margin, widest))
        self.artefact = directory
        self._device = None

    def _run(self, shape: tuple[int, int], batch: np.ndarray) -> np.ndarray:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        machine = self._machines.get(shape)
        if machine is None:
            self._device = self._device or tvm.cpu()
            try:
                module = tvm.runtime.load_module(str(self._libraries[shape]))
            except Exception as exc:  # tvm raises its own untyped errors
                raise ValueError(
                    f"{self._libraries[shape].name}: not a loadable TVM library ({type(exc).__name__})"
                ) from None
            machine = self._machines[shape] = VirtualMachine(module, self._device)
        result = machine["main"](tvm.runtime.tensor(batch, self._device))
        return result.numpy()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (1, 1, H, W) for a float32 (1, 3, H, W) batch, H and W multiples of 32."""
        h, w = batch.shape[2:]
        if (h, w) in self._libraries:
            return self._run((h, w), batch)
        fitting = [s for s in self.shapes if s[0] >= h and s[1] >= w]
        if fitting:
            shape = fitting[0]
            padded = np.zeros((1, batch.shape[1], *shape), np.float32)
            padded[:, :, :h, :w] = batch
            return self._run(shape, padded)[:, :, :h, :w]
        window = self.shapes[-1]
        return tiled_logits(
            lambda tile: self._run(window, tile),
            batch,
            window,
            margin=self.margin,
            exact_window=True,
        )

    def predict(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """Float32 (H, W) vessel probabilities for canonical-scale RGB (0 outside ``fov``)."""
        return probability_map(self.logits, rgb, fov)


def parse_shape_key(key: str) -> tuple[int, int]:
    """``"544x544"`` → (544, 544)."""
    h, w = key.lower().split("x")
    return int(h), int(w)


def read_manifest(directory: Path) -> dict:
    """The artefact's manifest as a dict, checked; raises ValueError with a one-line message."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{directory.name}: not a TVM artefact (no readable {MANIFEST})") from None
    if manifest.get("format") != ARTEFACT_FORMAT or manifest.get("version") != ARTEFACT_VERSION:
        raise ValueError(f"{directory.name}: unsupported TVM artefact format or version")
    if not manifest.get("libraries"):
        raise ValueError(f"{directory.name}: the artefact lists no compiled shapes")
    return manifest
