"""Lightweight U²-Nets (Siebert & Rostalski, SPIE Medical Imaging 2022) for vessel segmentation.

U²-Net (Qin et al., "U²-Net: Going deeper with nested U-structure for salient object
detection", Pattern Recognition 2020) is a U-Net of *residual U-blocks* (RSU): each block is
itself a small U-Net whose output is added to its input projection. Six encoder stages
(RSU-7, -6, -5, -4 and two dilated RSU-4F), a mirrored five-stage decoder, a side output at
every depth and a 1×1 convolution fusing the six side outputs.

Widths (:data:`WIDTHS`). Every stage of the original "small" U²-Net (U²-Net†) has 64
input/output and 16 middle channels, 1.13 M parameters: the seed paper's **M**. Its Table 1
was not reachable here; **S** and **XS** are derived by halving the widths once and twice
(32/8 and 16/4 channels), which gives the seed's parameter counts (0.29 M and 0.07 M, within
a few per cent; :func:`summary` prints them and a test pins them).

``depthwise=True`` gives the seed's M*, S*, XS*: every 3×3 convolution except each RSU
block's first (its input projection) and the final fusing 1×1 convolution becomes a
depthwise-separable one (depthwise 3×3 with the same dilation, then pointwise 1×1).

In training mode the network returns ``(fused, sides)``: the fused logit at full resolution
and the six side logits *at their own depth's resolution* (1, 1/2, …, 1/32), so that deep
supervision compares them with down-scaled targets (:func:`training.loss.deep_supervision`).
In eval mode it returns the fused logit only, (N, 1, H, W), like M2U-Net; that is what is
exported to ONNX. Input: RGB in [0, 1], (N, 3, H, W); H and W multiples of 32 (pooling uses
``ceil_mode`` and upsampling goes to the skip's size, so any size works, with the pipeline's
32-px grid as the contract).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Widths:
    """Channels of every RSU stage: ``out`` (input/output features) and ``mid`` (inside)."""

    out: int
    mid: int


#: Seed-paper sizes. M = the original U²-Net† ("small") widths; S and XS halve them.
WIDTHS = {"m": Widths(64, 16), "s": Widths(32, 8), "xs": Widths(16, 4)}
#: Parameter counts reported by the seed paper (Siebert & Rostalski 2022).
SEED_PARAMETERS = {"m": 1.13e6, "s": 0.29e6, "xs": 0.07e6}


class ConvBNReLU(nn.Module):
    """3×3 (dilated) convolution + batch norm + ReLU; depthwise-separable when asked."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, depthwise: bool = False):
        super().__init__()
        if depthwise:
            self.conv = nn.Sequential(
                nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of ``x`` to ``like``'s spatial size."""
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-L); ``dilated=True`` is RSU-4F.

    ``x_in = conv(x)`` (always a full convolution), then a U-Net of ``height`` levels on
    ``mid`` channels (max-pool down, bilinear up; RSU-4F replaces pooling by dilation 1, 2,
    4, 8), and the result is added to ``x_in``.
    """

    def __init__(
        self,
        height: int,
        cin: int,
        mid: int,
        cout: int,
        *,
        dilated: bool = False,
        depthwise: bool = False,
    ):
        super().__init__()
        if height < 2:
            raise ValueError("an RSU block needs a height of at least 2")
        self.height, self.dilated = height, dilated
        dw = depthwise
        self.conv_in = ConvBNReLU(cin, cout)  # each block's first convolution stays full
        dil = [2**i if dilated else 1 for i in range(height)]
        self.enc = nn.ModuleList(
            [ConvBNReLU(cout, mid, dil[0], dw)]
            + [ConvBNReLU(mid, mid, dil[i], dw) for i in range(1, height - 1)]
        )
        self.bottom = ConvBNReLU(mid, mid, dil[-1] if dilated else 2, dw)
        self.dec = nn.ModuleList(
            [ConvBNReLU(2 * mid, mid, dil[i], dw) for i in range(height - 2, 0, -1)]
            + [ConvBNReLU(2 * mid, cout, dil[0], dw)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips, h = [], x_in
        for i, layer in enumerate(self.enc):
            if i > 0 and not self.dilated:
                h = _pool(h)
            h = layer(h)
            skips.append(h)
        h = self.bottom(h)
        for i, (layer, skip) in enumerate(zip(self.dec, reversed(skips), strict=True)):
            # the bottom is not pooled, so the first skip has its size; the others are one
            # level up (structural, not a shape test, so the exported graph is the same
            # whatever the input size; where ceil-mode pooling left a size unchanged the
            # resize is the identity)
            if i > 0 and not self.dilated:
                h = _up_to(h, skip)
            h = layer(torch.cat([h, skip], dim=1))
        return h + x_in


class SideOutput(nn.Module):
    """3×3 convolution to one logit (depthwise-separable in the * variants)."""

    def __init__(self, cin: int, depthwise: bool = False):
        super().__init__()
        if depthwise:
            self.conv = nn.Sequential(
                nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                nn.Conv2d(cin, 1, 1),
            )
        else:
            self.conv = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class U2Net(nn.Module):
    """U²-Net with every stage at ``widths``; see the module docstring for the outputs."""

    #: (height, dilated) of the six encoder stages; the decoder mirrors stages 1–5.
    STAGES = ((7, False), (6, False), (5, False), (4, False), (4, True), (4, True))

    def __init__(self, widths: Widths, *, depthwise: bool = False):
        super().__init__()
        c, m = widths.out, widths.mid
        self.widths, self.depthwise = widths, depthwise
        self.encoder = nn.ModuleList(
            [
                RSU(h, 3 if i == 0 else c, m, c, dilated=d, depthwise=depthwise)
                for i, (h, d) in enumerate(self.STAGES)
            ]
        )
        self.decoder = nn.ModuleList(
            [RSU(h, 2 * c, m, c, dilated=d, depthwise=depthwise) for h, d in self.STAGES[4::-1]]
        )
        self.sides = nn.ModuleList([SideOutput(c, depthwise) for _ in self.STAGES])
        self.fuse = nn.Conv2d(len(self.STAGES), 1, 1)  # the final output conv stays full

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats, h = [], x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = _pool(h)
            h = stage(h)
            feats.append(h)
        decoded = [h]  # stage 6 (deepest) feeds the decoder directly
        for stage, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            h = stage(torch.cat([_up_to(h, skip), skip], dim=1))
            decoded.append(h)
        decoded.reverse()  # d1 (full resolution) … d6 (1/32)
        sides = [side(d) for side, d in zip(self.sides, decoded, strict=True)]
        fused = self.fuse(torch.cat([sides[0]] + [_up_to(s, x) for s in sides[1:]], dim=1))
        if self.training:
            return fused, sides
        return fused


def u2net(size: str = "xs", *, depthwise: bool = False) -> U2Net:
    """Build a lightweight U²-Net (random init): ``size`` m, s or xs; ``depthwise`` for M*…"""
    if size not in WIDTHS:
        raise ValueError(f"unknown U²-Net size {size!r}; choose {', '.join(WIDTHS)}")
    model = U2Net(WIDTHS[size], depthwise=depthwise)
    model.name = f"u2net-{size}{'-dw' if depthwise else ''}"
    return model


def count_macs(model: nn.Module, hw: tuple[int, int] = (512, 512)) -> int:
    """Multiply–accumulates of one forward pass (batch 1, eval mode) at ``hw``: convolutions
    only (the usual convention; batch norm, ReLU, pooling and resizing are not counted)."""
    total = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *hw))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def summary(hw: tuple[int, int] = (512, 512), *, print_fn=print) -> list[dict]:
    """Parameters and MACs at ``hw`` of every size and variant, against the seed's counts;
    printed as a table (``python -m segmentation.models.u2net``) and returned as rows."""
    from segmentation.models.m2unet import m2unet

    rows = []
    for size in WIDTHS:
        for dw in (False, True):
            model = u2net(size, depthwise=dw)
            params = sum(p.numel() for p in model.parameters())
            seed = SEED_PARAMETERS[size] if not dw else None
            rows.append(
                {
                    "arch": model.name,
                    "parameters": params,
                    "macs": count_macs(model, hw),
                    "seed": seed,
                }
            )
    base = m2unet()
    rows.append(
        {
            "arch": "m2unet",
            "parameters": sum(p.numel() for p in base.parameters()),
            "macs": count_macs(base, hw),
            "seed": None,
        }
    )
    macs_title = f"GMACs @ {hw[0]}x{hw[1]}"
    print_fn(f"{'arch':<12} {'parameters':>11} {'seed':>7} {macs_title:>15}")
    for r in rows:
        seed = f"{r['seed'] / 1e6:.2f} M" if r["seed"] else "—"
        print_fn(f"{r['arch']:<12} {r['parameters']:>11,} {seed:>7} {r['macs'] / 1e9:>15.2f}")
    return rows


if __name__ == "__main__":
    summary()
