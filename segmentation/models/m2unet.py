"""M2U-Net: MobileNetV2 encoder + contracting-bottleneck decoder (Laibacher et al., 2019).

Mirrors bob.ip.binseg's ``m2unet``: ``nn.Sequential(backbone, head)`` with about 0.55 M
parameters, RGB input in [0, 1] (H, W multiples of 16; 32 is used for margin), one logit per
pixel. The decoder upsamples bilinearly and fuses each skip connection with an inverted
residual block whose expansion is 0.15, i.e. it *contracts* the concatenated channels before
the depthwise convolution; that is what makes the decoder nearly free.
"""

from __future__ import annotations

import copy
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
        self.up_in = up_in
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.ir1 = InvertedResidual(up_in + skip_in, out, stride=1, expand_ratio=expand_ratio)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ir1(torch.cat([self.upsample(up), skip], dim=1))


class ProjectedDecoderBlock(nn.Module):
    """The inference form of a trained :class:`DecoderBlock`: the same function, less memory.

    The block's first layer is a 1×1 convolution + batch norm over ``cat(up(u), skip)``. Both
    are affine per pixel, and bilinear upsampling is a per-channel average whose weights sum
    to one, so the two commute:  ``BN(W·cat(up(u), s)) = up(W_u·u + b) + W_s·s``. Projecting
    ``u`` *before* upsampling means the wide concatenation is never built at the higher
    resolution. For the last block that is 33 channels at full resolution (99 MB of live
    activations at 512×768) replaced by 5; the 1×1 convolution also runs on a quarter of the
    pixels. Equal to the training form up to float rounding (tested, and checked by the ONNX
    export's parity test against the training model). The block's later layers are taken
    over, not copied: build it from a copy of the model (:func:`inference_form` does).
    """

    def __init__(self, block: DecoderBlock):
        super().__init__()
        expand, *rest = block.ir1.conv
        if block.ir1.use_residual or not isinstance(expand[0], nn.Conv2d):
            raise ValueError("expected a decoder block whose first layer is a 1×1 ConvBNReLU")
        conv, bn, act = expand
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale[:, None, None, None]
        hidden = weight.shape[0]
        self.project_up = nn.Conv2d(block.up_in, hidden, 1, bias=True)
        self.project_skip = nn.Conv2d(weight.shape[1] - block.up_in, hidden, 1, bias=False)
        with torch.no_grad():
            self.project_up.weight.copy_(weight[:, : block.up_in])
            self.project_up.bias.copy_(bn.bias - bn.running_mean * scale)
            self.project_skip.weight.copy_(weight[:, block.up_in :])
        self.upsample = block.upsample
        self.act = act
        self.rest = nn.Sequential(*rest)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        fused = self.upsample(self.project_up(up)) + self.project_skip(skip)
        return self.rest(self.act(fused))


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


def inference_form(model: nn.Sequential) -> nn.Sequential:
    """A copy of a trained M2U-Net in eval mode with every decoder block in its projected form
    (:class:`ProjectedDecoderBlock`): what is exported to ONNX and compiled for deployment."""
    model = copy.deepcopy(model).eval()
    head = model.head
    for name in ("decode4", "decode3", "decode2", "decode1"):
        setattr(head, name, ProjectedDecoderBlock(getattr(head, name)))
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
