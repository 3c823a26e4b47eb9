"""Vessel graph from a centreline: junctions, endpoints and the vessel segments between them.

Nodes are junctions and endpoints with ``pos`` (x, y), ``kind`` ("bifurcation", "crossover",
"endpoint"), ``calibre`` and ``angles`` (directions of the incident vessels, radians). Edges
are vessel segments with ``polyline`` ((K, 2) float32 x, y), ``length``, ``calibre`` and
``tortuosity``. The graph is a multigraph because two junctions can be joined by two segments
(a small vessel loop): :class:`MultiGraph` below, the subset of ``networkx.MultiGraph`` this
package uses, with the same storage and iteration order (so the same templates). networkx
itself took ~120 ms to import on every ``retauth verify`` for one class.

Tracing is vectorised: junction clusters and segments come from connected-component
labelling, and each segment is ordered by walking its OpenCV contour (which follows a
one-pixel-wide curve out and back), so no Python loop visits pixels one by one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from biometrics.skeleton import neighbour_count

BIFURCATION = "bifurcation"
CROSSOVER = "crossover"
ENDPOINT = "endpoint"
#: Arc length (px) along a vessel over which its direction at a junction is measured.
ANGLE_REACH = 8.0


class _Nodes:
    """``graph.nodes``: iterate, ``nodes[n]`` for the attributes, ``nodes(data=True|"key")``."""

    def __init__(self, attrs: dict[Hashable, dict]) -> None:
        self._attrs = attrs

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def __contains__(self, node: object) -> bool:
        return node in self._attrs

    def __getitem__(self, node: Hashable) -> dict:
        return self._attrs[node]

    def __call__(self, data: bool | str = False) -> Iterator[Any]:
        if data is True:
            return iter(self._attrs.items())
        if data is False:
            return iter(self._attrs)
        return ((n, d.get(data)) for n, d in self._attrs.items())


class MultiGraph:
    """Undirected multigraph with node and edge attributes, as ``networkx.MultiGraph`` stores it.

    ``_adj[u][v]`` maps edge keys to attribute dicts and is the same dict object as
    ``_adj[v][u]``; nodes, neighbours and keys iterate in insertion order; an edge is reported
    once, from the endpoint seen first; a self-loop counts twice in the degree. Only what the
    vessel graph needs is here (``tests/biometrics/test_graph.py`` checks it against networkx).
    """

    def __init__(self) -> None:
        self._node: dict[Hashable, dict] = {}
        self._adj: dict[Hashable, dict[Hashable, dict[int, dict]]] = {}

    @property
    def nodes(self) -> _Nodes:
        return _Nodes(self._node)

    def __contains__(self, node: object) -> bool:
        return node in self._node

    def __len__(self) -> int:
        return len(self._node)

    def number_of_nodes(self) -> int:
        return len(self._node)

    def number_of_edges(self) -> int:
        loops = sum(len(self._adj[n].get(n, ())) for n in self._adj)
        return (sum(len(kd) for nbrs in self._adj.values() for kd in nbrs.values()) + loops) // 2

    def add_node(self, node: Hashable, **attrs: Any) -> None:
        if node not in self._node:
            self._adj[node] = {}
            self._node[node] = attrs
        else:
            self._node[node].update(attrs)

    def add_edge(self, u: Hashable, v: Hashable, **attrs: Any) -> int:
        """Add an edge and return its key (the smallest unused, counting from the pair's 0)."""
        for node in (u, v):
            if node not in self._node:
                self.add_node(node)
        keys = self._adj[u].get(v)
        if keys is None:
            keys = self._adj[u][v] = self._adj[v][u] = {}
        key = len(keys)
        while key in keys:
            key += 1
        keys[key] = dict(attrs)
        return key

    def has_edge(self, u: Hashable, v: Hashable, key: int | None = None) -> bool:
        keys = self._adj.get(u, {}).get(v)
        return keys is not None and (key is None or key in keys)

    def remove_edge(self, u: Hashable, v: Hashable, key: int) -> None:
        keys = self._adj[u][v]
        del keys[key]
        if not keys:
            del self._adj[u][v]
            if u != v:
                del self._adj[v][u]

    def remove_node(self, node: Hashable) -> None:
        for other in list(self._adj[node]):
            del self._adj[other][node]
        del self._adj[node]
        del self._node[node]

    def remove_nodes_from(self, nodes: Iterable[Hashable]) -> None:
        for node in nodes:
            if node in self._node:
                self.remove_node(node)

    def degree(self, node: Hashable) -> int:
        nbrs = self._adj[node]
        return sum(len(keys) for keys in nbrs.values()) + len(nbrs.get(node, ()))

    def edges(
        self, node: Hashable | None = None, *, keys: bool = False, data: bool = False
    ) -> Iterator[tuple]:
        """Edges as (u, v[, key][, attrs]), all of them or those of ``node``."""
        items = self._adj.items() if node is None else [(node, self._adj[node])]
        seen: set[Hashable] = set()
        for u, nbrs in items:
            for v, edge_keys in nbrs.items():
                if v in seen:
                    continue
                for key, attrs in edge_keys.items():
                    yield (u, v) + ((key,) if keys else ()) + ((attrs,) if data else ())
            seen.add(u)


def build_vessel_graph(skeleton: np.ndarray, calibre: np.ndarray) -> MultiGraph:
    """Trace a skeleton into a vessel graph, prune spurs and type the junctions.

    Parameters
    ----------
    skeleton : (H, W) bool, one pixel wide.
    calibre : (H, W) float32 vessel diameter map (see :func:`biometrics.skeleton.calibre_map`).

    Returns
    -------
    MultiGraph with the node and edge attributes listed in the module docstring.
    """
    if skeleton.shape != calibre.shape:
        raise ValueError("skeleton and calibre maps differ in shape")
    graph = _trace(skeleton.astype(bool), calibre)
    _prune_spurs(graph)
    _merge_close_junctions(graph)
    _contract_degree_two(graph)
    _finalise_nodes(graph)
    return graph


def _trace(skel: np.ndarray, calibre: np.ndarray) -> MultiGraph:
    graph = MultiGraph()
    count = neighbour_count(skel)
    cross = np.ones((3, 3), np.uint8)
    junction_px = cv2.dilate((count >= 3).astype(np.uint8), cross).astype(bool) & skel
    n_clusters, clusters = cv2.connectedComponents(junction_px.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(clusters)
    labels = clusters[ys, xs]
    sums = np.zeros((n_clusters, 3))
    np.add.at(sums, labels, np.stack([xs, ys, np.ones_like(xs)], 1))
    for c in range(1, n_clusters):
        graph.add_node(("j", c), pos=(sums[c, 0] / sums[c, 2], sums[c, 1] / sums[c, 2]))
    near_cluster = cv2.dilate(clusters.astype(np.float32), cross).astype(np.int32)

    segments = (skel & ~junction_px).astype(np.uint8)
    _, seg_labels = cv2.connectedComponents(segments, connectivity=8)
    ends = segments.astype(bool) & (neighbour_count(segments.astype(bool)) <= 1)
    ey, ex = np.nonzero(ends)
    by_label = _group(seg_labels[ey, ex], np.stack([ex, ey], 1))
    # One contour per segment, all at once; a one-pixel-wide curve's contour runs out along
    # the curve and back, so the stretch between its two end pixels is the ordered path.
    contours, _ = cv2.findContours(segments, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    for contour in contours:
        contour = contour[:, 0, :]
        label = seg_labels[contour[0, 1], contour[0, 0]]
        path = _ordered_path(contour, by_label.get(label))
        if path is None:
            continue  # a closed loop with no junction: no landmark to anchor it
        nodes = []
        for x, y in (path[0], path[-1]):
            c = near_cluster[y, x]
            nodes.append(("j", int(c)) if c > 0 else ("e", int(x), int(y)))
        if nodes[0] == nodes[1] and nodes[0][0] == "j" and len(path) < 2 * ANGLE_REACH:
            continue  # a pixel or two of skeleton noise beside a junction, not a vessel loop
        for node, (x, y) in zip(nodes, (path[0], path[-1]), strict=True):
            if node[0] == "e":
                graph.add_node(node, pos=(float(x), float(y)))
        pts = path.astype(np.float32)
        pts = _attach(graph, nodes[0], pts, first=True)
        pts = _attach(graph, nodes[1], pts, first=False)
        cal = float(calibre[path[:, 1], path[:, 0]].mean())
        graph.add_edge(nodes[0], nodes[1], **_edge_attrs(pts, cal))
    return graph


def _group(labels: np.ndarray, points: np.ndarray) -> dict[int, np.ndarray]:
    """Points grouped by label, via one sort instead of a mask per label."""
    if labels.size == 0:
        return {}
    order = np.argsort(labels, kind="stable")
    labels, points = labels[order], points[order]
    cuts = np.flatnonzero(np.diff(labels)) + 1
    keys = labels[np.concatenate([[0], cuts])].tolist()
    return dict(zip(keys, np.split(points, cuts), strict=True))


def _ordered_path(contour: np.ndarray, ends: np.ndarray | None) -> np.ndarray | None:
    """Pixels (x, y) of a one-pixel-wide open curve in order, from its contour and end pixels."""
    if ends is None or len(ends) == 0:
        return None
    n = len(contour)
    if n == 1:
        return contour
    code = contour[:, 1].astype(np.int64) * 65536 + contour[:, 0]
    end_codes = ends[:, 1].astype(np.int64) * 65536 + ends[:, 0]
    hits = np.flatnonzero(code == end_codes[0])
    first = int(hits[0]) if hits.size else 0
    # The walk from one end reaches the other end halfway round the contour. (Segments have
    # two or three ends: a broadcast comparison is cheaper than setting up np.isin.)
    others = np.flatnonzero((code[:, None] == end_codes[None, 1:]).any(axis=1))
    stop = int(((others - first) % n).min()) if len(others) else n // 2
    return contour[(first + np.arange(stop + 1)) % n]


def _attach(graph: MultiGraph, node: tuple, pts: np.ndarray, *, first: bool) -> np.ndarray:
    """Extend a segment polyline to the junction centre it touches."""
    if node[0] != "j":
        return pts
    centre = np.asarray(graph.nodes[node]["pos"], np.float32)[None]
    return np.concatenate([centre, pts]) if first else np.concatenate([pts, centre])


def _edge_attrs(pts: np.ndarray, calibre: float) -> dict:
    d = np.diff(pts, axis=0)
    length = float(np.sqrt((d * d).sum(axis=1)).sum())
    chord = math.hypot(*(pts[-1] - pts[0]).tolist())
    return {
        "polyline": pts,
        "length": length,
        "calibre": calibre,
        "tortuosity": length / chord if chord > 1e-6 else 1.0,
    }


def _prune_spurs(graph: MultiGraph, rounds: int = 2) -> None:
    """Remove short terminal branches: skeletonisation artefacts of thick or bumpy vessels."""
    for _ in range(rounds):
        degree = {n: graph.degree(n) for n in graph.nodes}
        spurs = [
            (u, v, k)
            for u, v, k, d in graph.edges(keys=True, data=True)
            if (degree[u] == 1) != (degree[v] == 1) and d["length"] < max(10.0, 2.5 * d["calibre"])
        ]
        for u, v, k in spurs:
            if graph.has_edge(u, v, k):
                graph.remove_edge(u, v, k)
        graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
        _contract_degree_two(graph)


def _merge_close_junctions(graph: MultiGraph) -> None:
    """Two 3-way junctions joined by a segment shorter than the local calibre are one crossover."""
    short = [
        (u, v, k)
        for u, v, k, d in graph.edges(keys=True, data=True)
        if u != v
        and graph.degree(u) == 3
        and graph.degree(v) == 3
        and d["length"] < max(6.0, 1.5 * d["calibre"])
    ]
    merged: set = set()
    for u, v, k in short:
        if u in merged or v in merged or not graph.has_edge(u, v, k):
            continue
        graph.remove_edge(u, v, k)
        pu, pv = np.asarray(graph.nodes[u]["pos"]), np.asarray(graph.nodes[v]["pos"])
        centre = tuple(((pu + pv) / 2).tolist())
        graph.nodes[u]["pos"] = centre
        for _, w, data in list(graph.edges(v, data=True)):
            pts = data["polyline"]
            if np.linalg.norm(pts[0] - pv) > np.linalg.norm(pts[-1] - pv):
                pts = pts[::-1]
            pts = np.concatenate([np.asarray([centre], np.float32), pts[1:]])
            graph.add_edge(u, u if w == v else w, **_edge_attrs(pts, data["calibre"]))
        graph.remove_node(v)
        merged.update((u, v))


def _contract_degree_two(graph: MultiGraph) -> None:
    """A node with exactly two vessel segments is no junction: join the segments."""
    for node in [n for n in graph.nodes if graph.degree(n) == 2]:
        if graph.degree(node) != 2 or node not in graph:
            continue
        edges = list(graph.edges(node, keys=True, data=True))
        if len(edges) != 2 or any(w == node for _, w, _, _ in edges):
            continue
        (_, a, _, da), (_, b, _, db) = edges
        pos = np.asarray(graph.nodes[node]["pos"], np.float32)
        pa, pb = da["polyline"], db["polyline"]
        if np.linalg.norm(pa[-1] - pos) > np.linalg.norm(pa[0] - pos):
            pa = pa[::-1]  # now ends at node
        if np.linalg.norm(pb[0] - pos) > np.linalg.norm(pb[-1] - pos):
            pb = pb[::-1]  # now starts at node
        pts = np.concatenate([pa, pb[1:]])
        length = da["length"] + db["length"]
        cal = (da["calibre"] * da["length"] + db["calibre"] * db["length"]) / max(length, 1e-6)
        graph.remove_node(node)
        graph.add_edge(a, b, **_edge_attrs(pts, cal))


def _finalise_nodes(graph: MultiGraph) -> None:
    """Set ``kind``, ``calibre`` and branch ``angles`` on every node; drop isolated nodes."""
    graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
    for node, attrs in graph.nodes(data=True):
        degree = graph.degree(node)
        attrs["kind"] = ENDPOINT if degree == 1 else BIFURCATION if degree == 3 else CROSSOVER
        if degree == 2:
            attrs["kind"] = BIFURCATION  # a self-loop junction; rare
        pos = np.asarray(attrs["pos"], np.float32)
        angles, calibres = [], []
        for _, _, data in graph.edges(node, data=True):
            pts = data["polyline"]
            if np.linalg.norm(pts[-1] - pos) < np.linalg.norm(pts[0] - pos):
                pts = pts[::-1]
            angles.append(_direction(pts))
            calibres.append(data["calibre"])
        attrs["angles"] = sorted(angles)
        attrs["calibre"] = float(max(calibres)) if calibres else 0.0


def _direction(pts: np.ndarray) -> float:
    """Direction (radians) of a polyline leaving its first point, measured ANGLE_REACH px out."""
    head = pts[: int(2 * ANGLE_REACH) + 2]  # enough points: pixel steps are at least 1 px
    d = np.diff(head, axis=0)
    arc = np.cumsum(np.sqrt((d * d).sum(axis=1)))
    idx = min(int(np.searchsorted(arc, ANGLE_REACH)) + 1, len(head) - 1)
    dx, dy = (head[idx] - head[0]).tolist()
    return math.atan2(dy, dx)
