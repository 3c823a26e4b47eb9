"""Vessel-segmentation networks (torch only; never imported on the verify path).

:func:`build` makes any architecture by name (``retauth train --arch``); :func:`deploy_form`
is what gets exported: the network in eval mode returning one logit map (N, 1, H, W).
Importing this package imports no torch; ``build`` and ``deploy_form`` do.
"""

from __future__ import annotations

#: Architectures ``retauth train --arch`` accepts: M2U-Net, and the seed's lightweight
#: U²-Nets (M, S, XS) with their depthwise-separable variants (M*, S*, XS* = ``-dw``).
ARCHS = (
    "m2unet",
    "u2net-xs",
    "u2net-xs-dw",
    "u2net-s",
    "u2net-s-dw",
    "u2net-m",
    "u2net-m-dw",
)


def build(arch: str = "m2unet"):
    """A freshly initialised network of architecture ``arch`` (one of :data:`ARCHS`)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "m2unet":
        from segmentation.models.m2unet import m2unet

        return m2unet()
    from segmentation.models.u2net import u2net

    _, size, *variant = arch.split("-")
    return u2net(size, depthwise=bool(variant))


def deploy_form(model):
    """A copy of a trained network in eval mode, in the form that is exported and deployed:
    M2U-Net with its projected decoder (:func:`segmentation.models.m2unet.inference_form`),
    U²-Net as is (in eval mode it returns the fused logit only), an ensemble member by member."""
    import copy

    from segmentation.models.ensemble import Ensemble
    from segmentation.models.m2unet import M2UNetHead, inference_form

    if isinstance(model, Ensemble):
        return Ensemble([deploy_form(m) for m in model.members]).eval()
    if isinstance(getattr(model, "head", None), M2UNetHead):
        return inference_form(model)
    return copy.deepcopy(model).eval()


def arch_of(model) -> str:
    """The :data:`ARCHS` name of a network built by :func:`build` (``ensemble`` for one)."""
    from segmentation.models.ensemble import Ensemble
    from segmentation.models.m2unet import M2UNetHead

    if isinstance(model, Ensemble):
        return "ensemble"
    if isinstance(getattr(model, "head", None), M2UNetHead):
        return "m2unet"
    return model.name
