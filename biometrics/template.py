"""The biometric template: a compact, versioned serialisation of the vessel graph.

Layout of :meth:`Template.to_bytes` (big-endian)::

    magic "RTPL" | version u8 | side u8 | n_nodes u16 | n_edges u16 | n_points u32 | zlib(body)

    body = node_xy int16[n_nodes, 2]    (half-pixels, canonical scale, origin at the optic disc)
           node_kind u8[n_nodes]        (0 endpoint, 1 bifurcation, 2 crossover)
           node_calibre u8[n_nodes]     (eighth-pixels)
           node_angles u8[n_nodes, 4]   (direction / 2π · 254; 255 = no branch)
           edge_nodes u16[n_edges, 2]
           edge_calibre u8[n_edges]     (eighth-pixels)
           edge_sizes u16[n_edges]      (points per polyline)
           poly int16[n_points, 2]      (first point of each polyline absolute, then deltas)

No image, no mask: only landmark geometry (≈2–4 KB). Polylines are simplified
(Douglas–Peucker, 1 px) before storage; the matcher resamples them densely on load.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from biometrics.errors import StoredDataError
from biometrics.graph import BIFURCATION, CROSSOVER, ENDPOINT, MultiGraph
from biometrics.ranges import ranges

MAGIC = b"RTPL"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBBHHI")
_KINDS = (ENDPOINT, BIFURCATION, CROSSOVER)
_SIDES = ("unknown", "right", "left")
#: Spacing (canonical pixels) of the dense centreline points the matcher works on.
SAMPLE_STEP = 2.0
#: Largest |coordinate| (canonical pixels, from the disc) a template may hold. A canonical
#: frame is at most ~1,900 px on its longer side (segmentation.preprocessing bounds its area
#: and aspect), so real templates stay far inside; the matcher draws each template on a grid
#: the size of its extent, which this bounds (a record with a polyline summed out to 10^6 px
#: would otherwise ask for terabytes).
COORD_LIMIT = 4096.0


class InvalidTemplate(StoredDataError):
    """A template blob is truncated, corrupt or of an unsupported version (exit 3).

    Templates come from the store (or the evaluation cache), never from the user, so a bad one
    is stored data this installation cannot use, not bad input.
    """


class UnsupportedTemplateVersion(InvalidTemplate):
    """A template written by another (usually newer) retauth: upgrade, do not re-enrol."""


@dataclass(frozen=True, eq=False)
class Template:
    """Vessel-graph landmarks of one capture, in the eye-anchored frame (origin: optic disc)."""

    node_xy: np.ndarray  # (N, 2) float32
    node_kind: np.ndarray  # (N,) uint8, index into _KINDS
    node_calibre: np.ndarray  # (N,) float32
    node_angles: np.ndarray  # (N, 4) float32, NaN where the node has fewer branches
    edge_nodes: np.ndarray  # (E, 2) int32
    edge_calibre: np.ndarray  # (E,) float32
    polylines: tuple[np.ndarray, ...]  # E arrays (K, 2) float32
    side: str = "unknown"
    version: int = FORMAT_VERSION

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_graph(cls, graph: MultiGraph, origin: tuple[float, float], side: str) -> Template:
        """Freeze a vessel graph into a template, translating coordinates to ``origin``."""
        nodes = list(graph.nodes)
        index = {n: i for i, n in enumerate(nodes)}
        ox, oy = origin
        xy = np.array([graph.nodes[n]["pos"] for n in nodes], np.float32).reshape(-1, 2)
        xy -= np.float32([ox, oy])
        kinds = np.array([_KINDS.index(graph.nodes[n]["kind"]) for n in nodes], np.uint8)
        cal = np.array([graph.nodes[n]["calibre"] for n in nodes], np.float32)
        angles = np.full((len(nodes), 4), np.nan, np.float32)
        for i, n in enumerate(nodes):
            a = graph.nodes[n]["angles"][:4]
            angles[i, : len(a)] = a
        edges, ecal, polys = [], [], []
        for u, v, data in graph.edges(data=True):
            edges.append((index[u], index[v]))
            ecal.append(data["calibre"])
            pts = cv2.approxPolyDP(data["polyline"].reshape(-1, 1, 2), 1.0, False).reshape(-1, 2)
            polys.append(pts.astype(np.float32) - np.float32([ox, oy]))
        return cls(
            node_xy=xy,
            node_kind=kinds,
            node_calibre=cal,
            node_angles=angles,
            edge_nodes=np.array(edges, np.int32).reshape(-1, 2),
            edge_calibre=np.array(ecal, np.float32),
            polylines=tuple(polys),
            side=side if side in _SIDES else "unknown",
        )

    def to_graph(self) -> MultiGraph:
        """Rebuild the vessel graph (coordinates in the eye frame)."""
        graph = MultiGraph()
        for i, (xy, kind, cal, ang) in enumerate(
            zip(self.node_xy, self.node_kind, self.node_calibre, self.node_angles, strict=True)
        ):
            graph.add_node(
                i,
                pos=(float(xy[0]), float(xy[1])),
                kind=_KINDS[kind],
                calibre=float(cal),
                angles=[float(a) for a in ang if not np.isnan(a)],
            )
        for (u, v), cal, pts in zip(
            self.edge_nodes, self.edge_calibre, self.polylines, strict=True
        ):
            length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
            graph.add_edge(int(u), int(v), polyline=pts, calibre=float(cal), length=length)
        return graph

    # -- derived views used by the matcher -----------------------------------------------
    @cached_property
    def junctions(self) -> np.ndarray:
        """(J, 2) float32 positions of bifurcations and crossovers."""
        return self.node_xy[self.node_kind != 0]

    @cached_property
    def junction_angles(self) -> np.ndarray:
        """(J, 4) branch directions of :attr:`junctions` (NaN-padded)."""
        return self.node_angles[self.node_kind != 0]

    @cached_property
    def points(self) -> np.ndarray:
        """(P, 2) float32 centreline points resampled every :data:`SAMPLE_STEP` pixels."""
        return _resample(self.polylines, SAMPLE_STEP)

    @property
    def counts(self) -> dict[str, int]:
        return {k: int((self.node_kind == i).sum()) for i, k in enumerate(_KINDS)}

    # -- serialisation -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        sizes = np.array([len(p) for p in self.polylines], np.uint16)
        if self.polylines:
            half = [np.rint(p * 2).astype(np.int32) for p in self.polylines]
            poly = np.concatenate([np.diff(h, axis=0, prepend=0) for h in half])
        else:
            poly = np.zeros((0, 2), np.int32)
        body = b"".join(
            [
                _q(self.node_xy * 2, np.int16).tobytes(),
                self.node_kind.astype(np.uint8).tobytes(),
                _q(self.node_calibre * 8, np.uint8).tobytes(),
                _quantise_angles(self.node_angles).tobytes(),
                self.edge_nodes.astype(">u2").tobytes(),
                _q(self.edge_calibre * 8, np.uint8).tobytes(),
                sizes.astype(">u2").tobytes(),
                _q(poly, np.int16).tobytes(),
            ]
        )
        head = _HEADER.pack(
            MAGIC,
            self.version,
            _SIDES.index(self.side),
            len(self.node_xy),
            len(self.edge_nodes),
            len(poly),
        )
        return head + zlib.compress(body, 9)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Template:
        """Parse :meth:`to_bytes` output; every defect raises :class:`InvalidTemplate`."""
        if len(blob) < _HEADER.size:
            raise InvalidTemplate("template is truncated")
        magic, version, side, n, e, p = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise InvalidTemplate("not a retauth template")
        if version != FORMAT_VERSION:
            raise UnsupportedTemplateVersion(
                f"template format version {version} is not supported by this retauth "
                f"(it reads version {FORMAT_VERSION})"
                + ("; upgrade retauth" if version > FORMAT_VERSION else "")
            )
        if side >= len(_SIDES):
            raise InvalidTemplate("template header is corrupt")
        try:
            body = zlib.decompress(blob[_HEADER.size :])
        except zlib.error:
            raise InvalidTemplate("template body is corrupt") from None
        expected = n * 4 + n + n + n * 4 + e * 4 + e + e * 2 + p * 4
        if len(body) != expected:
            raise InvalidTemplate("template body has the wrong size")
        reader = _Reader(body)
        xy = reader.take(">i2", n * 2).reshape(n, 2).astype(np.float32) / 2
        kind = reader.take("u1", n)
        cal = reader.take("u1", n).astype(np.float32) / 8
        ang = reader.take("u1", n * 4).reshape(n, 4)
        edges = reader.take(">u2", e * 2).reshape(e, 2).astype(np.int32)
        ecal = reader.take("u1", e).astype(np.float32) / 8
        sizes = reader.take(">u2", e).astype(np.int64)
        poly = reader.take(">i2", p * 2).reshape(p, 2).astype(np.int32)
        if kind.size and kind.max() >= len(_KINDS) or edges.size and edges.max() >= n:
            raise InvalidTemplate("template body is corrupt")
        if sizes.sum() != p:
            raise InvalidTemplate("template body is corrupt")
        # Each polyline is stored as deltas from its first point: one running sum over all of
        # them, minus the sum reached before each polyline starts (no loop over ~200 edges).
        total = np.concatenate([np.zeros((1, 2), np.int64), np.cumsum(poly, axis=0)])
        ends = np.cumsum(sizes)
        before = total[np.concatenate([[0], ends[:-1]])]
        coords = (total[1:] - np.repeat(before, sizes, axis=0)).astype(np.float32) / 2
        if (
            np.abs(coords).max(initial=0.0) > COORD_LIMIT
            or np.abs(xy).max(initial=0.0) > COORD_LIMIT
        ):
            raise InvalidTemplate("template coordinates are out of range")
        polys = tuple(coords[a:b] for a, b in zip(ends - sizes, ends, strict=True))  # views
        angles = np.where(ang == 255, np.nan, ang.astype(np.float32) / 254 * 2 * np.pi - np.pi)
        return cls(
            xy, kind.copy(), cal, angles.astype(np.float32), edges, ecal, polys, _SIDES[side]
        )


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, dtype: str, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        out = np.frombuffer(self.data, dt, count, self.offset)
        self.offset += dt.itemsize * count
        return out.astype(dt.newbyteorder("="))


def _q(values: np.ndarray, dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return out.astype(out.dtype.newbyteorder(">")) if out.dtype.itemsize > 1 else out


def _quantise_angles(angles: np.ndarray) -> np.ndarray:
    q = np.rint((np.nan_to_num(angles) + np.pi) / (2 * np.pi) * 254) % 254
    return np.where(np.isnan(angles), 255, q).astype(np.uint8)


def _resample(polylines: tuple[np.ndarray, ...], step: float) -> np.ndarray:
    """Points every ``step`` pixels along each polyline, all polylines in one vectorised pass.

    A polyline shorter than ``step`` contributes its first point. Matching loads a shortlist of
    templates per 1:N request, so this runs without a Python loop over the ~100-300 edges.
    """
    sizes = np.array([len(p) for p in polylines], np.int64)
    keep = sizes > 0
    if not keep.any():
        return np.zeros((0, 2), np.float32)
    sizes = sizes[keep]
    pts = np.concatenate([p for p in polylines if len(p)]).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    seg[starts[1:] - 1] = 0.0  # no segment joins the end of one polyline to the next
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    arc -= np.repeat(arc[starts], sizes)  # arc length from each polyline's first point
    length = arc[starts + sizes - 1]
    count = np.where(length < step, 1, np.floor((length + 1e-6) / step).astype(np.int64) + 1)
    owner = np.repeat(np.arange(len(sizes)), count)
    s = ranges(count) * step
    # Index of the segment end after s, within the owning polyline (s = 0 maps to segment 1).
    key = np.repeat(np.cumsum(length + 1.0) - length - 1.0, sizes) + arc
    query = np.cumsum(length + 1.0)[owner] - length[owner] - 1.0 + s
    end = np.searchsorted(key, query, side="right")
    end = np.clip(end, starts[owner] + 1, starts[owner] + sizes[owner] - 1)
    single = sizes[owner] == 1
    end[single] = starts[owner][single]
    begin = np.where(single, end, end - 1)
    span = arc[end] - arc[begin]
    t = np.where(span > 0, (s - arc[begin]) / np.where(span > 0, span, 1.0), 0.0)
    out = pts[begin] + (pts[end] - pts[begin]) * np.clip(t, 0.0, 1.0)[:, None]
    return out.astype(np.float32)
