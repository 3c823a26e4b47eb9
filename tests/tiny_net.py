"""A tiny M2U-Net look-alike built with ``onnx.helper`` (no torch), for backend tests.

It has every operator kind M2U-Net has, at a few channels: a 3×3 stride-2 stem, a depthwise
3×3 stride-2 convolution, a pointwise projection with bias only plus a residual add (the
linear bottleneck), ReLU6 as Clip, bilinear ×2 upsampling (half-pixel) and concatenation
with skips, and a 1-channel pointwise head. Its receptive field is ~20 px, so tiling with a
32-pixel margin must reproduce whole-image inference to float precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_model(path: Path, seed: int = 0) -> Path:
    """Write the tiny network as ONNX (opset 17, dynamic H and W) to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        inits.append(
            onnx.numpy_helper.from_array(
                (rng.standard_normal(shape) * 0.5).astype(np.float32), name
            )
        )
        return name

    def conv(name, x, cin, cout, k, stride=1, group=1, relu6=True):
        w = weight(f"{name}.w", (cout, cin // group, k, k))
        b = weight(f"{name}.b", (cout,))
        out = f"{name}.y"
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=group,
            )
        )
        if not relu6:
            return out
        nodes.append(helper.make_node("Clip", [out, "zero", "six"], [f"{name}.r"]))
        return f"{name}.r"

    def up2(name, x):
        nodes.append(
            helper.make_node(
                "Resize",
                [x, "", "scales"],
                [f"{name}.u"],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
            )
        )
        return f"{name}.u"

    def concat(name, a, b):
        nodes.append(helper.make_node("Concat", [a, b], [f"{name}.c"], axis=1))
        return f"{name}.c"

    inits += [
        onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        onnx.numpy_helper.from_array(np.array(6.0, np.float32), "six"),
        onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    s2 = conv("stem", "image", 3, 8, 3, stride=2)  # s2, 8 ch
    s4 = conv("dw", s2, 8, 8, 3, stride=2, group=8)  # s4, depthwise
    s4 = conv("expand", s4, 8, 24, 1)  # pointwise + ReLU6
    proj = conv("project", s4, 24, 8, 1, relu6=False)  # linear bottleneck
    nodes.append(helper.make_node("Add", [proj, "dw.r"], ["res"]))  # residual
    d2 = conv("dec2", concat("cat2", up2("up2", "res"), s2), 16, 6, 1)
    logits = conv("head", concat("cat1", up2("up1", d2), "image"), 9, 1, 1, relu6=False)
    graph = helper.make_graph(
        nodes,
        "tiny_m2unet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, 1, "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
