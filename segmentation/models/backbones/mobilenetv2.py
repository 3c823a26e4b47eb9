"""MobileNetV2 trunk (Sandler et al., 2018) written out in plain torch, as M2U-Net's encoder.

M2U-Net (Laibacher et al., 2019) uses the first 14 layers of MobileNetV2 and taps four of
them. The blocks are written here rather than imported from torchvision so that the runtime
dependency set stays torch-only and the layer indices match bob.ip.binseg exactly.
"""

from __future__ import annotations

import torch
from torch import nn

#: (expansion t, output channels c, repeats n, first stride s) for MobileNetV2's stages.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))


class ConvBNReLU(nn.Sequential):
    """Convolution, batch norm, ReLU6: the unit every MobileNetV2 layer is built from."""

    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise 3×3 → project (1×1, linear), with a skip when shapes match.

    ``expand_ratio`` < 1 makes it a *contracting* bottleneck, which is how M2U-Net's decoder
    keeps its parameter count tiny.
    """

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: float):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def mobilenetv2_features(n_layers: int = 14) -> nn.Sequential:
    """The first ``n_layers`` entries of MobileNetV2's ``features`` (stem + inverted residuals)."""
    layers: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
    inp = 32
    for t, c, n, s in _STAGES:
        for i in range(n):
            layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
            inp = c
    return nn.Sequential(*layers[:n_layers])


class MobileNetV2Features(nn.Module):
    """MobileNetV2 trunk returning the input followed by the tapped feature maps.

    With the default taps ``(1, 3, 6, 13)`` the outputs are the input (3 ch, stride 1) and
    maps of 16, 24, 32 and 96 channels at strides 2, 4, 8 and 16: the skip connections of a
    U-Net decoder.
    """

    def __init__(self, return_features: tuple[int, ...] = (1, 3, 6, 13), n_layers: int = 14):
        super().__init__()
        self.return_features = tuple(return_features)
        self.features = mobilenetv2_features(n_layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.return_features:
                outputs.append(x)
        return outputs
