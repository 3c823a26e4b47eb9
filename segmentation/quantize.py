"""Optional int8 M2U-Net: ONNX Runtime static post-training quantisation (QDQ format).

Weights become int8 per output channel and activations uint8 with ranges calibrated on a few
canonical-scale fundus images. The result runs through the unchanged
:class:`segmentation.backends.OnnxSegmenter`. Post-training int8 costs segmentation quality on
this small network (see ``benchmarks/RESULTS_backends.md`` for the Dice change on DRIVE), so
it is an option for slow kiosks, not the default. Offline tool: needs the ``onnx`` package
(``train`` extra); the runtime only loads the quantised file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from segmentation.preprocessing import pad_to_multiple, to_model_input


class _Calibration:
    """``CalibrationDataReader`` over canonical-scale RGB images (padded to 32)."""

    def __init__(self, input_name: str, images: Iterable[np.ndarray]) -> None:
        self._input = input_name
        self._batches: Iterator[np.ndarray] = (
            to_model_input(pad_to_multiple(rgb)[0]) for rgb in images
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}


def quantize_int8(model: str | Path, out: str | Path, calibration: Iterable[np.ndarray]) -> Path:
    """Write a static-int8 (QDQ) copy of ``model`` to ``out``.

    Parameters
    ----------
    model : fp32 M2U-Net ONNX file.
    out : path of the int8 ONNX file to write.
    calibration : canonical-scale RGB uint8 images (H, W, 3) representative of deployment;
        10–20 fundus photographs are enough for min/max ranges.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model, out = Path(model), Path(out)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reader = _Calibration(session.get_inputs()[0].name, calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(model),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out
