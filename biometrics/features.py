"""Feature extraction: probability map → vessel mask → centreline → graph → template.

One function, :func:`extract_features`, with every intermediate kept in :class:`Features`
so that ``retauth inspect`` can draw them and benchmarks can time them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biometrics.eyeframe import Disc, locate_disc
from biometrics.graph import MultiGraph, build_vessel_graph
from biometrics.quality import Quality, assess
from biometrics.skeleton import calibre_map, centreline, vessel_mask
from biometrics.template import Template


@dataclass(frozen=True)
class Features:
    """All intermediates of one capture at canonical scale."""

    vessels: np.ndarray  # (H, W) bool
    skeleton: np.ndarray  # (H, W) bool
    graph: MultiGraph  # node/edge attributes: see biometrics.graph
    disc: Disc
    quality: Quality
    template: Template


def extract_features(
    rgb: np.ndarray, fov: np.ndarray, prob: np.ndarray, *, threshold: float = 0.5
) -> Features:
    """Build the template of a canonical-scale capture from its vessel probability map.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 canonical-scale photograph.
    fov : (H, W) bool field of view.
    prob : (H, W) float32 vessel probability in [0, 1].
    threshold : the segmenter's a-priori vessel threshold; hysteresis keeps weaker pixels
        (down to 0.7 of it) where they connect to confident ones.
    """
    if prob.shape != fov.shape or rgb.shape[:2] != fov.shape:
        raise ValueError("image, FOV and probability map must have the same height and width")
    vessels = vessel_mask(prob, fov, high=threshold, low=0.7 * threshold)
    skeleton = centreline(vessels)
    graph = build_vessel_graph(skeleton, calibre_map(vessels))
    disc = locate_disc(rgb, fov, vessels)
    junctions = sum(1 for _, kind in graph.nodes(data="kind") if kind != "endpoint")
    quality = assess(rgb, fov, vessels, junctions)
    template = Template.from_graph(graph, (disc.x, disc.y), disc.side)
    return Features(vessels, skeleton, graph, disc, quality, template)
