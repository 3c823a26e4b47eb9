"""M2U-Net: MobileNetV2 encoder + contracting-bottleneck decoder (Laibacher et al., 2019).

Mirrors bob.ip.binseg's ``m2unet``: ``nn.Sequential(backbone, head)`` with about 0.55 M
parameters, RGB input in [0, 1] (H, W multiples of 16; 32 is used for margin), one logit per
pixel. The decoder upsamples bilinearly and fuses each skip connection with an inverted
residual block whose expansion is 0.15, i.e. it *contracts* the concatenated channels before
the depthwise convolution; that is what makes the decoder nearly free.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from segmentation.models.backbones.mobilenetv2 import InvertedResidual, MobileNetV2Features

#: Decoder expansion ratio of the paper.
EXPAND_RATIO = 0.15


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the skip, fuse with a contracting inverted residual."""

    def __init__(self, up_in: int, skip_in: int, out: int, expand_ratio: float = EXPAND_RATIO):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.ir1 = InvertedResidual(up_in + skip_in, out, stride=1, expand_ratio=expand_ratio)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ir1(torch.cat([self.upsample(up), skip], dim=1))


class M2UNetHead(nn.Module):
    """Decoder over the trunk outputs [input, s2 16ch, s4 24ch, s8 32ch, s16 96ch] → 1 logit."""

    def __init__(self, expand_ratio: float = EXPAND_RATIO):
        super().__init__()
        self.decode4 = DecoderBlock(96, 32, (96 + 32) // 2, expand_ratio)  # → 64 @ s8
        self.decode3 = DecoderBlock(64, 24, (64 + 24) // 2, expand_ratio)  # → 44 @ s4
        self.decode2 = DecoderBlock(44, 16, (44 + 16) // 2, expand_ratio)  # → 30 @ s2
        self.decode1 = DecoderBlock(30, 3, 1, expand_ratio)  # → 1 @ s1
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        d4 = self.decode4(x[4], x[3])
        d3 = self.decode3(d4, x[2])
        d2 = self.decode2(d3, x[1])
        return self.decode1(d2, x[0])


def m2unet(pretrained_backbone: bool = False) -> nn.Sequential:
    """Build M2U-Net (random init). No ImageNet weights are reachable here, so asking for a
    pretrained backbone is an error rather than a silent no-op."""
    if pretrained_backbone:
        raise ValueError("no pretrained MobileNetV2 weights are available; train from scratch")
    return nn.Sequential(
        OrderedDict(backbone=MobileNetV2Features((1, 3, 6, 13)), head=M2UNetHead())
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
