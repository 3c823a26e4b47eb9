"""Run a TVM artefact built by ``retauth compile``: TVM *runtime* only, no compilation.

The artefact holds one static-shape library per compiled input shape (see
:mod:`segmentation.compile`). An image whose padded shape was compiled runs in one call; a
smaller one is zero-padded up to the nearest compiled shape that contains it; a larger one is
tiled with the largest compiled shape (:mod:`segmentation.tiling`), which also bounds memory.

Loading goes through ``tvm_ffi`` and ``libtvm_runtime.so`` (3 MB) directly; ``import tvm``
would also load the 260 MB compiler library and its Python packages. (``tvm_ffi`` imports
torch eagerly *if it is installed*; kiosks do not install it.)
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import platform
from functools import cache
from pathlib import Path

import numpy as np

from biometrics.errors import InputError, MissingExtra
from biometrics.settings import load_settings
from segmentation.card import ModelCard, card_from_manifest
from segmentation.inference import probability_map
from segmentation.preprocessing import PAD_MULTIPLE
from segmentation.tiling import DEFAULT_MARGIN, tiled_logits

#: The artefact's index file and its identification; bump the version when the layout changes.
MANIFEST = "manifest.json"
ARTEFACT_FORMAT = "retauth-tvm-artefact"
#: Version 2 added the model card (threshold, FOV diameter, provenance) to the manifest.
ARTEFACT_VERSION = 2
#: Byte alignment TVM assumes for tensor data (its kernels may use aligned vector loads).
_ALIGNMENT = 64
#: kDLCPU device type, device 0, pooled allocator: the Relax VM's initialisation arguments.
_VM_CPU_POOLED = (1, 0, 2)


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
            raise InputError(
                f"{directory.name}: built for {manifest['arch']}, this machine is "
                f"{platform.machine()}; compile with --target native here"
            )
        self._libraries = {
            parse_shape_key(key): directory / name for key, name in manifest["libraries"].items()
        }
        self._machines: dict[tuple[int, int], tuple[object, np.ndarray]] = {}
        self.shapes = sorted(self._libraries, key=lambda s: s[0] * s[1])
        # A window must keep a centre of at least one stride after both margins.
        widest = (min(self.shapes[-1]) - PAD_MULTIPLE) // 2 // PAD_MULTIPLE * PAD_MULTIPLE
        self.margin = max(0, min(margin, widest))
        self.card: ModelCard = card_from_manifest(manifest, directory.name)
        self.threshold = self.card.threshold
        self.diameter = self.card.diameter
        self.artefact = directory

    def _run(self, shape: tuple[int, int], batch: np.ndarray) -> np.ndarray:
        machine = self._machines.get(shape)
        if machine is None:
            machine = self._machines[shape] = _load_machine(self._libraries[shape], shape)
        main, staging = machine
        np.copyto(staging, batch)
        ffi = _runtime()
        result = main(ffi.from_dlpack(staging, require_alignment=_ALIGNMENT))
        return np.from_dlpack(result).copy()  # the VM reuses its output buffer

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
        raise InputError(f"{directory.name}: not a TVM artefact (no readable {MANIFEST})") from None
    if manifest.get("format") == ARTEFACT_FORMAT and manifest.get("version") == 1:
        raise InputError(
            f"{directory.name}: TVM artefact of format 1 (no model card, so its FOV diameter "
            "is unknown); compile it again with retauth compile"
        )
    if manifest.get("format") != ARTEFACT_FORMAT or manifest.get("version") != ARTEFACT_VERSION:
        raise InputError(f"{directory.name}: unsupported TVM artefact format or version")
    if not manifest.get("libraries"):
        raise InputError(f"{directory.name}: the artefact lists no compiled shapes")
    return manifest


def runtime_library() -> Path:
    """Path of ``libtvm_runtime.so``: ``$RETAUTH_TVM_RUNTIME``, else the one in the installed
    ``tvm`` package (found without importing it, which would load the 260 MB compiler)."""
    override = load_settings().tvm_runtime  # the settings resolver reads the environment
    if override:
        return Path(override)
    spec = importlib.util.find_spec("tvm")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("the tvm backend", "tvm", "tvm")
    return Path(next(iter(spec.submodule_search_locations))) / "lib" / "libtvm_runtime.so"


@cache
def _runtime():
    """``tvm_ffi`` with the TVM runtime library loaded (once per process), compiler-free."""
    try:
        import tvm_ffi
    except ImportError:
        raise MissingExtra("the tvm backend", "tvm", "tvm_ffi") from None
    library = runtime_library()
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        raise InputError(f"{library.name}: the TVM runtime library could not be loaded") from None
    return tvm_ffi


def _load_machine(library: Path, shape: tuple[int, int]) -> tuple[object, np.ndarray]:
    """Load one compiled shape into a Relax VM; returns its ``main`` and an aligned input buffer."""
    ffi = _runtime()
    try:
        module = ffi.load_module(str(library))
    except Exception as exc:  # tvm_ffi raises its own untyped errors
        raise InputError(
            f"{library.name}: not a loadable TVM library ({type(exc).__name__})"
        ) from None
    machine = module["vm_load_executable"]()
    machine["vm_initialization"](*_VM_CPU_POOLED)
    return machine["main"], _aligned_empty((1, 3, *shape))


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous float32 array whose data starts on an :data:`_ALIGNMENT` boundary."""
    count = int(np.prod(shape))
    raw = np.empty(count + _ALIGNMENT // 4, np.float32)
    offset = (-raw.ctypes.data % _ALIGNMENT) // 4
    return raw[offset : offset + count].reshape(shape)
