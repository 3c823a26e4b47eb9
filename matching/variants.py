"""Geometric variants of a template: mirrored, rotated, shifted and cropped copies.

Realistic distractors for 1:N tests and benchmarks. Real vessel trees are few (a few hundred
public captures), so large galleries are filled with copies of them as another camera or
operator would have taken them: the other eye's mirror image, a tilted head, a shifted gaze,
a smaller field of view. Each variant stays a plausible eye with the statistics of a real one,
which synthetic trees do not have. Coordinates are in the template's eye-anchored frame, so a
rotation turns the eye about its optic disc.
"""

from __future__ import annotations

import numpy as np

from biometrics.template import Template


def variant(
    template: Template,
    *,
    rotation_deg: float = 0.0,
    mirror: bool = False,
    shift: tuple[float, float] = (0.0, 0.0),
    crop: tuple[float, float, float] | None = None,
) -> Template:
    """A moved copy of ``template``; ``crop = (cx, cy, radius)`` keeps only nodes inside that
    disc (and the edges between them), as a smaller or off-centre field of view would."""
    theta = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    flip = np.float32([-1.0 if mirror else 1.0, 1.0])
    offset = np.float32(shift)

    def move(points: np.ndarray) -> np.ndarray:
        return ((points * flip) @ rot.T + offset).astype(np.float32)

    angles = np.pi - template.node_angles if mirror else template.node_angles
    angles = ((angles + theta + np.pi) % (2 * np.pi) - np.pi).astype(np.float32)
    xy = move(template.node_xy)
    keep = np.ones(len(xy), bool)
    if crop is not None:
        cx, cy, radius = crop
        keep = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) <= radius
    edges = keep[template.edge_nodes].all(axis=1) if len(template.edge_nodes) else np.zeros(0, bool)
    renumber = np.cumsum(keep) - 1
    side = (
        {"left": "right", "right": "left"}.get(template.side, template.side)
        if mirror
        else template.side
    )
    return Template(
        node_xy=xy[keep],
        node_kind=template.node_kind[keep],
        node_calibre=template.node_calibre[keep],
        node_angles=angles[keep],
        edge_nodes=renumber[template.edge_nodes[edges]].astype(np.int32).reshape(-1, 2),
        edge_calibre=template.edge_calibre[edges],
        polylines=tuple(move(p) for p, k in zip(template.polylines, edges, strict=True) if k),
        side=side,
    )


def distractor_pairs(
    bases: list[Template], count: int, *, seed: int = 0, start: int = 0
) -> list[tuple[Template, Template]]:
    """Distractor identities ``start .. start + count - 1``, two captures each, from a few
    real eyes.

    Identity ``i`` is base ``i % len(bases)``, mirrored every other cycle, turned by a random
    angle in ±180° and shifted; its two captures differ by a few degrees, pixels and a
    different crop, as two captures of one eye do. Each identity has its own random stream,
    so a gallery grown in steps holds the same identities as one built at once.
    """
    out = []
    for i in range(start, start + count):
        rng = np.random.default_rng([seed, i])
        base = bases[i % len(bases)]
        mirror = (i // len(bases)) % 2 == 1
        turn = 0.0 if i < 2 * len(bases) else float(rng.uniform(-180, 180))
        shift = rng.uniform(-30, 30, 2)
        captures = []
        for _ in range(2):
            crop = None
            if rng.random() < 0.5:
                crop = (*rng.uniform(-120, 120, 2), float(rng.uniform(260, 340)))
            captures.append(
                variant(
                    base,
                    rotation_deg=turn + float(rng.normal(0, 3)),
                    mirror=mirror,
                    shift=tuple(shift + rng.normal(0, 8, 2)),
                    crop=crop,
                )
            )
        out.append((captures[0], captures[1]))
    return out
