"""Protected templates (ISO/IEC 24745): keyed, renewable, alignment-free vessel descriptors.

A decrypted :class:`~biometrics.template.Template` is a vessel map in the eye's own frame:
it can be redrawn, it matches every later enrolment of the eye, and two deployments'
templates of one eye link. The protected reference stored instead keeps none of its
coordinates. It is built in two steps, after Minutia Cylinder-Code and its two-factor
protected variant 2P-MCC (Ferrara, Maltoni, Cappelli 2012/2014), adapted to vessels:

1. **Local descriptors** (:func:`cylinders`): around every junction, once per branch leaving
   it, the centreline inside a disc of :data:`RADIUS` canonical pixels is binned on a
   :data:`GRID` × :data:`GRID` grid by :data:`DIRECTIONS` vessel orientations, in a frame
   turned so that the branch points along +x. The frame moves with the junction and its
   branch, not with the optic disc, so a descriptor does not change when the eye is
   rotated or shifted, or when the disc is found in another place; nothing in it says where
   in the eye the junction lies.
2. **Keyed binarisation** (:func:`protect`): every descriptor is projected on
   :data:`BITS` keyed Gaussian directions (:class:`TransformKey`) and only the signs are
   kept (random-hyperplane hashing): the fraction of equal bits estimates the angle between
   two descriptors under the same key, 256 real values become 256 signs (a many-to-one
   map: magnitudes are lost), and two keys give independent bits. A stored reference has
   :data:`REFERENCE_ROWS` rows, descriptors drawn at random plus random chaff, so every
   record has the same number of rows, and rows are sorted by their bit pattern, so not
   even the order of the junctions in the graph survives. A probe (:func:`protect_probe`)
   keeps all of its own descriptors.

Comparison (:func:`compare_protected`) is the local similarity sort of MCC: every descriptor
of one side takes its best Hamming similarity among the other side's, and the score is the
mean of the best of them (a share :data:`LSS_FRACTION` of the smaller record), averaged
over both directions. The same batched kernel scores a shortlist in 1:N
(:class:`ProtectedGallery`), whose shortlist comes from locality-sensitive buckets of the
protected bits themselves (no unprotected vector is needed at identification time).

Renewal issues a new :class:`TransformKey` (a new generation): references made under
another key score like strangers (measured by :mod:`matching.protected_metrics` and
``benchmarks/protected_templates.py``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from biometrics.errors import StoredDataError
from biometrics.ranges import ranges
from biometrics.template import Template

#: Radius (canonical pixels; the FOV is 540 px across) of the neighbourhood a descriptor
#: covers: RIDB scored 0 % EER for 48, 72 and 96 px unprotected; 72 px keeps the widest gap.
RADIUS = 72.0
#: Spatial cells per side and orientation bins (over a half turn: vessels have no sense).
GRID = 8
DIRECTIONS = 4
DIMENSION = GRID * GRID * DIRECTIONS
#: Signs kept per descriptor. 64 left RIDB pairs in error (EER 0.3 %); 128 none, but zoo
#: impostors (DRIVE/HRF/CHASE_DB1 and mirror images) reached 0.792 against a weakest RIDB
#: genuine 0.769; 256 (one sign per descriptor value: quantisation, no reduction) kept every
#: zoo impostor (max 0.755) under the weakest genuine (0.760), d' 6.9 -> 7.5.
BITS = 256  # a multiple of 64: rows are compared as 64-bit words
#: Descriptors a stored reference keeps, drawn at random from the capture's (RIDB captures
#: carry 127-317, one per junction branch). Every reference has exactly this many rows, so
#: their number, which no key changes, cannot link two references of one eye
#: (``benchmarks/protected_templates.py`` measured D↔sys 0.29 from counts alone); RIDB
#: stays at 0 % EER with 96 or 128 random rows.
REFERENCE_ROWS = 128
#: Fewest of those rows that are descriptors; the rest, a random number per record, is chaff.
#: The angles between one record's own rows survive any key, so their distribution linked
#: two references of one eye across keys (D↔sys 0.15 with every row a descriptor); a random
#: share of chaff brought that to 0.04 on RIDB, for a weakest genuine 0.758 -> 0.754.
MIN_DESCRIPTOR_ROWS = 96
#: A probe is never stored and keeps all its descriptors, up to this many (most vessel first).
PROBE_ROWS = 384
#: Share of the smaller record's rows whose best local similarities are averaged (MCC's
#: local similarity sort): over three keys, 0.2 gave RIDB genuine/impostor d' 6.1-6.8 and
#: EER 0-0.5 %, 0.3 d' 5.6-6.1, 0.5 d' 5.1.
LSS_FRACTION = 0.2
#: Spacing (canonical pixels) of the centreline samples that fill a descriptor.
STEP = 2.0

#: Mean descriptor of DRIVE, CHASE_DB1 and HRF captures, written by
#: ``benchmarks/protected_templates.py --fit-centre`` (RIDB, the test set, is not used).
CENTRE_FILE = Path(__file__).with_name("protected_centre.npy")

MAGIC = b"RPT"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">3sBHHI")
RECORD_SIZE = _HEADER.size + REFERENCE_ROWS * BITS // 8

#: Locality-sensitive buckets of the 1:N shortlist: the bits are cut into TABLES words of
#: HASH_BITS. RIDB probes against 10 references and 700 variants of other eyes ranked their
#: mate at most 3rd with 12-bit words (8 bits: 639th; 16 bits: 13th).
HASH_BITS = 12
#: Tables of the index, on the first TABLES * HASH_BITS bits (more would only grow it).
TABLES = 10
#: Accept threshold of a protected comparison (not the plain matcher's 0.42). Chosen on the
#: evaluation data itself (``benchmarks/protected_templates.py``, two runs of five keys):
#: RIDB impostors reached 0.742, genuine pairs fell to 0.736, zoo impostors reached 0.752.
PROTECTED_THRESHOLD = 0.75
#: References whose bit comparisons are computed together (bounds temporaries).
_GROUP = 8
#: Records the exact comparison scores after the shortlist: with 32, one RIDB mate of 40
#: ranked 33rd among 236 distinct eyes (three of 40 outside it in the 10k redrawn gallery).
SHORTLIST = 64


class InvalidProtectedRecord(StoredDataError):
    """A protected record is truncated, corrupt, of another version or of another key."""


@dataclass(frozen=True, repr=False)
class TransformKey:
    """The per-deployment secret that keys the projection, and its renewal generation.

    ``secret`` never appears in ``repr`` or logs. The projection is expanded from it with
    SHAKE-256 (Box-Muller onto Gaussians) rather than a NumPy generator, whose streams are
    not promised to stay the same across NumPy releases: an upgrade must not change every
    stored reference.
    """

    secret: bytes
    generation: int = 0

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("a transform key needs at least 16 bytes of secret")
        if not 0 <= self.generation < 2**32:
            raise ValueError("transform key generation must fit in 32 bits")

    def __repr__(self) -> str:
        return f"TransformKey(generation={self.generation})"

    @cached_property
    def projection(self) -> np.ndarray:
        """(DIMENSION, BITS) float32 Gaussian matrix, a deterministic function of the key."""
        label = b"retauth protected projection v1" + self.generation.to_bytes(4, "big")
        raw = hashlib.shake_256(label + self.secret).digest(DIMENSION * BITS * 8)
        words = np.frombuffer(raw, ">u4").reshape(2, -1).astype(np.float64)
        u1 = (words[0] + 1.0) / 2.0**32  # (0, 1]: the logarithm stays finite
        u2 = words[1] / 2.0**32
        gauss = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return gauss.reshape(DIMENSION, BITS).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ProtectedTemplate:
    """Protected descriptors of one capture: signs, rows sorted by bit pattern, packed."""

    bits: np.ndarray  # (C, BITS // 8) uint8: REFERENCE_ROWS for a reference, more for a probe
    generation: int

    @property
    def signs(self) -> np.ndarray:
        """(C, BITS) float32 ±1 view, for the attack metrics' projections (not cached)."""
        return np.unpackbits(self.bits, axis=1).astype(np.float32) * 2.0 - 1.0

    def to_bytes(self) -> bytes:
        """The stored record: header and exactly REFERENCE_ROWS rows, whatever the eye."""
        if len(self.bits) != REFERENCE_ROWS:
            raise ValueError("only a reference (protect(), not protect_probe()) is stored")
        head = _HEADER.pack(MAGIC, FORMAT_VERSION, BITS, len(self.bits), self.generation)
        return head + self.bits.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ProtectedTemplate:
        """Parse :meth:`to_bytes`; every defect raises :class:`InvalidProtectedRecord`."""
        if len(blob) != RECORD_SIZE:
            raise InvalidProtectedRecord("protected record has the wrong size")
        magic, version, bits, rows, generation = _HEADER.unpack_from(blob)
        if magic != MAGIC or version != FORMAT_VERSION or (bits, rows) != (BITS, REFERENCE_ROWS):
            raise InvalidProtectedRecord("protected record has an unknown format or version")
        body = np.frombuffer(blob, np.uint8, offset=_HEADER.size).reshape(rows, BITS // 8)
        return cls(body.copy(), generation)


def _samples(polylines: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centreline points every ~STEP px with the direction of the segment each lies on.

    All polylines in one pass: segments are the consecutive point pairs of the concatenated
    polylines, less the pairs that would join one polyline's end to the next one's start.
    """
    sizes = np.array([len(p) for p in polylines], np.int64)
    if (sizes >= 2).sum() == 0:
        return np.zeros((0, 2)), np.zeros(0)
    pts = np.concatenate([p for p in polylines if len(p)]).astype(np.float64)
    ends = np.cumsum(sizes[sizes > 0]) - 1
    start = np.ones(len(pts) - 1, bool)
    start[ends[:-1]] = False  # segment from the last point of a polyline to the next one
    a, d = pts[:-1][start], np.diff(pts, axis=0)[start]
    length = np.hypot(d[:, 0], d[:, 1])
    keep = length > 1e-6
    a, d, length = a[keep], d[keep], length[keep]
    count = np.maximum(1, np.rint(length / STEP).astype(np.int64))
    owner = np.repeat(np.arange(len(a)), count)
    t = (ranges(count) + 0.5) / count[owner]
    return a[owner] + d[owner] * t[:, None], np.arctan2(d[owner, 1], d[owner, 0])


@dataclass(frozen=True)
class Descriptors:
    """Unprotected local descriptors of one capture (never stored: the input of protect)."""

    values: np.ndarray  # (C, DIMENSION) float32 unit rows, one per junction branch
    mass: np.ndarray  # (C,) vessel in each neighbourhood: what a capped record keeps
    centre: np.ndarray  # (C, 2) junction of each row, eye frame: for the attack benchmarks


def cylinders(template: Template, *, centred: bool = True) -> Descriptors:
    """The local descriptors of ``template``: one per branch leaving each junction.

    Each centreline sample near a junction is spread over the 2×2×2 neighbouring (x, y,
    orientation) cells by trilinear weights, so a vessel that moves by a fraction of a cell
    between captures changes the descriptor smoothly instead of jumping bins. Square roots
    keep a thick, densely sampled trunk from drowning the finer vessels; centring and unit
    length make the Hamming similarity of the signs an estimate of the descriptors' angle.
    ``centred`` also removes the part all eyes share (:func:`population_centre`).
    """
    pts, ang = _samples(template.polylines)
    junctions = template.junctions.astype(np.float64)
    angles = template.junction_angles.astype(np.float64)
    branches = ~np.isnan(angles)  # (J, 4): one descriptor per branch
    count = int(branches.sum())
    if not count or not len(pts):
        return Descriptors(np.zeros((0, DIMENSION), np.float32), np.zeros(0), np.zeros((0, 2)))
    number = np.cumsum(branches.ravel()).reshape(branches.shape) - 1  # descriptor of (j, k)
    j, p, dx, dy = _neighbourhoods(pts, junctions)
    has = branches[j]  # (pairs, 4): the neighbourhood is shared by the junction's branches
    pair, slot = np.nonzero(has)
    j, p, dx, dy = j[pair], p[pair], dx[pair], dy[pair]
    c, ref = number[j, slot], angles[j, slot]
    cos, sin = np.cos(ref), np.sin(ref)
    x = dx * cos + dy * sin  # turned by -ref: the branch runs along +x
    y = dy * cos - dx * sin
    u = (x / RADIUS + 1.0) * GRID / 2 - 0.5
    v = (y / RADIUS + 1.0) * GRID / 2 - 0.5
    w = ((ang[p] - ref) % np.pi) / np.pi * DIRECTIONS - 0.5
    cells = np.zeros(count * DIMENSION)
    # Per axis and corner side, the cell index part and the weight; a cell outside the grid
    # gets weight 0 (at index part 0) instead of being masked out: adding 0.0 changes no
    # sum, and eight boolean gathers cost more than the zeros.
    parts = []
    for q, stride, wrap in ((u, 1, False), (v, GRID, False), (w, GRID * GRID, True)):
        q0 = np.floor(q).astype(np.int64)
        f = q - q0
        sides = []
        for k, weight in ((0, 1.0 - f), (1, f)):
            i = q0 + k
            if wrap:  # orientation is circular
                sides.append((i % DIRECTIONS * stride, weight))
            else:
                ok = (i >= 0) & (i < GRID)
                sides.append((np.where(ok, i, 0) * stride, np.where(ok, weight, 0.0)))
        parts.append(sides)
    base = c * (DIRECTIONS * GRID * GRID)
    for ku, kv, kw in np.ndindex(2, 2, 2):
        (iu, fu), (iv, fv), (iw, fw) = parts[0][ku], parts[1][kv], parts[2][kw]
        cells += np.bincount(base + iw + iv + iu, fu * fv * fw, minlength=cells.size)
    raw = cells.reshape(count, DIMENSION)
    desc = _unit(np.sqrt(raw) - np.sqrt(raw).mean(axis=1, keepdims=True))
    if centred:
        desc = _unit(desc - population_centre())
    centre = np.repeat(junctions, branches.sum(axis=1), axis=0)
    return Descriptors(desc.astype(np.float32), raw.sum(axis=1), centre)


def _neighbourhoods(
    pts: np.ndarray, junctions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (junction, sample) pair closer than RADIUS, ordered by junction then sample,
    with the sample's offset from the junction.

    Candidates come from each junction's window of samples sorted by x (a few percent of all
    pairs), then the exact test; the coordinates stay apart, since a reduction over a 2-long
    last axis is ~10x slower than two arrays.
    """
    order = np.argsort(pts[:, 0], kind="stable")
    xs = pts[order, 0]
    start = np.searchsorted(xs, junctions[:, 0] - RADIUS, side="left")
    stop = np.searchsorted(xs, junctions[:, 0] + RADIUS, side="right")
    counts = stop - start
    j = np.repeat(np.arange(len(junctions)), counts)
    p = order[ranges(counts, start)]
    dx = pts[p, 0] - junctions[j, 0]
    dy = pts[p, 1] - junctions[j, 1]
    near = dx * dx + dy * dy < RADIUS * RADIUS
    j, p, dx, dy = j[near], p[near], dx[near], dy[near]
    ranked = np.argsort(j * len(pts) + p, kind="stable")
    return j[ranked], p[ranked], dx[ranked], dy[ranked]


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


@cache
def population_centre() -> np.ndarray:
    """The mean descriptor of eyes outside RIDB (``CENTRE_FILE``, see :func:`fit_centre`).

    Every descriptor shares a large common part: the branch it is turned by always runs
    along +x, and vessels fan out from the junction alike in every eye. Sparse captures are
    little more than that part, so before it was removed they matched any eye: HRF captures
    scored up to 0.807 against RIDB probes, above RIDB's weakest genuine pair (0.802); with
    it removed, the highest such impostor fell to 0.756, under the weakest genuine (0.768).
    """
    return np.load(CENTRE_FILE).astype(np.float64)


def fit_centre(templates: list[Template]) -> np.ndarray:
    """Mean uncentred descriptor over ``templates`` (shipped: DRIVE, CHASE_DB1 and HRF)."""
    return np.concatenate([cylinders(t, centred=False).values for t in templates]).mean(axis=0)


def protect_descriptors(
    desc: np.ndarray, key: TransformKey, chaff: np.ndarray | None = None
) -> ProtectedTemplate:
    """Signs of the keyed projections of ``desc`` (plus packed ``chaff`` rows), sorted."""
    if not len(desc):
        raise ValueError("a template without junction branches cannot be protected")
    packed = np.packbits(desc @ key.projection > 0, axis=1)
    if chaff is not None:
        packed = np.concatenate([packed, chaff])
    order = np.lexsort(packed.T[::-1])
    return ProtectedTemplate(packed[order], key.generation)


def protect(
    template: Template, key: TransformKey, rng: np.random.Generator | None = None
) -> ProtectedTemplate:
    """The stored reference of ``template`` under ``key``: REFERENCE_ROWS rows.

    Between MIN_DESCRIPTOR_ROWS and REFERENCE_ROWS of the rows (a random number) are
    descriptors drawn at random, fresh at every enrolment (``rng`` only for reproducible
    tests), so two references of one capture do not even share their choice of junctions.
    The rest is chaff: random bit rows, never repeats (a repeated row would count twice
    among the best matches, and small references, of cropped or sparse captures, then
    outscored genuine pairs). A random row is about half similar to anything and never
    among the best. The record is as long as any; whoever opens it and can tell chaff
    (unbiased bits) from descriptors learns a lower bound of the capture's descriptors.
    """
    return reference_from(cylinders(template).values, key, rng)


def reference_from(
    desc: np.ndarray, key: TransformKey, rng: np.random.Generator | None = None
) -> ProtectedTemplate:
    """A reference from descriptors already computed (:func:`protect` does the rest)."""
    rng = rng or np.random.default_rng()
    pick = rng.permutation(len(desc))[: rng.integers(MIN_DESCRIPTOR_ROWS, REFERENCE_ROWS + 1)]
    chaff = rng.integers(0, 256, (REFERENCE_ROWS - len(pick), BITS // 8), dtype=np.uint8)
    return protect_descriptors(desc[pick], key, chaff)


def protect_probe(template: Template, key: TransformKey) -> ProtectedTemplate:
    """A probe under ``key``: every descriptor (up to PROBE_ROWS), compared, never stored."""
    desc = cylinders(template)
    keep = np.argsort(-desc.mass, kind="stable")[:PROBE_ROWS]
    return protect_descriptors(desc.values[keep], key)


def _words(records: list[ProtectedTemplate]) -> tuple[np.ndarray, np.ndarray]:
    """(n, C_max, BITS / 64) packed rows of several records as uint64, zero-padded; counts."""
    counts = np.array([len(r.bits) for r in records], np.int64)
    out = np.zeros((len(records), int(counts.max()), BITS // 64), np.uint64)
    mask = np.arange(out.shape[1]) < counts[:, None]
    out[mask] = np.concatenate([r.bits for r in records]).view(np.uint64)
    return out, counts


def _equal_bits(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(n, C, C') fraction of equal bits of every (reference row, probe row) pair.

    XOR and popcount on 64-bit words, not a float product: a multi-threaded BLAS waits for
    its second thread, which on a busy core cost a 1:1 comparison 16 ms instead of 0.4 ms.
    References go in groups of :data:`_GROUP` to bound the temporary arrays (~25 MB).
    """
    out = np.empty((len(words), words.shape[1], len(query)), np.float32)
    for start in range(0, len(words), _GROUP):
        part = words[start : start + _GROUP]
        distance = np.zeros(out[start : start + _GROUP].shape, np.uint16)
        for w in range(words.shape[2]):
            distance += np.bitwise_count(part[:, :, None, w] ^ query[None, None, :, w])
        out[start : start + _GROUP] = 1.0 - distance / np.float32(BITS)
    return out


def _top_mean(best: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Mean of each row's best ``LSS_FRACTION · pairs`` values (padding is -inf, last)."""
    ordered = -np.sort(-best, axis=1)
    k = np.maximum(1, (pairs * LSS_FRACTION).astype(np.int64))
    sums = np.cumsum(np.where(np.isfinite(ordered), ordered, 0.0), axis=1)
    return sums[np.arange(len(k)), k - 1] / k


def similarity(references: list[ProtectedTemplate], probe: ProtectedTemplate) -> np.ndarray:
    """Local-similarity-sort score in [0, 1] of ``probe`` against each reference.

    The local similarity of two descriptors is their fraction of equal bits.
    """
    words, counts = _words(references)
    query = np.ascontiguousarray(probe.bits).view(np.uint64)
    local = _equal_bits(words, query)
    pad = np.arange(words.shape[1]) >= counts[:, None]
    local[pad] = -np.inf
    # As MCC's n_P: both sides average the same number of best matches, a share of the
    # smaller record, since at most that many descriptors can have a counterpart.
    pairs = np.minimum(counts, len(query))
    probe_side = _top_mean(local.max(axis=1), pairs)
    reference_side = _top_mean(local.max(axis=2), pairs)
    return ((probe_side + reference_side) / 2.0).astype(np.float32)


def compare_protected(reference: ProtectedTemplate, probe: ProtectedTemplate) -> float:
    """1:1 score of two protected records; records of different keys score like strangers."""
    return float(similarity([reference], probe)[0])


def _bucket_codes(bits: np.ndarray) -> np.ndarray:
    """(C, TABLES) bucket of every descriptor in every table: its word, tagged by table."""
    words = np.unpackbits(bits, axis=1)[:, : TABLES * HASH_BITS]
    words = words.reshape(len(bits), TABLES, HASH_BITS).astype(np.int64)
    return words @ (1 << np.arange(HASH_BITS)) + (np.arange(TABLES) << HASH_BITS)


class ProtectedGallery:
    """1:N over protected records: a bucket-vote shortlist, then the exact score on it.

    An inverted index maps every (table, word) bucket to the records with a descriptor in
    it. A probe's descriptors vote for the records sharing their buckets, each vote weighted
    by the bucket's inverse document frequency, log(N / records in the bucket): a bucket
    that many records hit says little. Every reference has the same number of rows, so the
    vote needs no normalisation by size. Only the :data:`SHORTLIST` best voted records are
    compared exactly. The index is built from the protected bits alone.
    """

    def __init__(self, records: list[ProtectedTemplate]) -> None:
        if not records:
            raise ValueError("an empty gallery has nothing to search")
        self.records = records
        n = len(records)
        codes = np.stack([_bucket_codes(r.bits) for r in records]).reshape(n, -1)
        # one posting per (bucket, record), sorted by bucket; runs of one bucket found in
        # one pass over the sorted array. Sorted and deduplicated by hand: np.unique took
        # 3 s for the 2.5 M postings of 2,000 records, a sort 0.2 s.
        postings = np.sort((codes * n + np.arange(n)[:, None]).ravel())
        postings = postings[np.concatenate([[True], postings[1:] != postings[:-1]])]
        self._owner = (postings % n).astype(np.int32)
        bucket = postings // n
        self._start = np.flatnonzero(np.diff(bucket, prepend=-1))
        self._bucket = bucket[self._start]
        counts = np.diff(self._start, append=len(bucket))
        self._count = counts
        self._idf = np.log(n / counts)

    def __len__(self) -> int:
        return len(self.records)

    def votes(self, probe: ProtectedTemplate) -> np.ndarray:
        """(n,) IDF-weighted number of buckets each record shares with the probe."""
        query = np.unique(_bucket_codes(probe.bits))
        at = np.minimum(np.searchsorted(self._bucket, query), len(self._bucket) - 1)
        at = at[self._bucket[at] == query]
        count = self._count[at]
        index = ranges(count, self._start[at])  # all postings of the matched buckets
        weight = np.repeat(self._idf[at], count)
        return np.bincount(self._owner[index], weight, minlength=len(self.records))

    def search(
        self, probe: ProtectedTemplate, shortlist: int = SHORTLIST
    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices and exact scores of the ``shortlist`` best-voted records, best first."""
        rough = self.votes(probe)
        k = min(shortlist, len(rough))
        top = np.argpartition(-rough, k - 1)[:k]
        exact = similarity([self.records[i] for i in top], probe)
        order = np.argsort(-exact, kind="stable")
        return top[order], exact[order]


class ProtectedComparator:
    """``compare(reference, probe)`` on plain templates, scored in the protected domain.

    What an evaluation needs to put the protected scheme through the same experiments as the
    matcher (``retauth evaluate --protected``): each template is protected once, as a
    reference and as a probe, under one key, and the records are remembered for the run
    (by template identity: templates are immutable and the evaluation keeps them alive).
    The memo is dropped when the comparator is sent to a worker process.
    """

    def __init__(self, key: TransformKey, seed: int = 0) -> None:
        self.key = key
        self.seed = seed
        self._refs: dict[int, tuple[Template, ProtectedTemplate]] = {}
        self._probes: dict[int, tuple[Template, ProtectedTemplate]] = {}

    def __reduce__(self) -> tuple[type, tuple[TransformKey, int]]:
        return (ProtectedComparator, (self.key, self.seed))  # a worker starts with no memo

    def _memo(
        self,
        memo: dict[int, tuple[Template, ProtectedTemplate]],
        template: Template,
        make: Callable[[Template], ProtectedTemplate],
    ) -> ProtectedTemplate:
        # The template is kept with its record, so its id cannot be reused by another one.
        hit = memo.get(id(template))
        if hit is None:
            hit = memo[id(template)] = (template, make(template))
        return hit[1]

    def __call__(self, reference: Template, probe: Template) -> float:
        ref = self._memo(
            self._refs,
            reference,
            lambda t: protect(t, self.key, np.random.default_rng([self.seed, len(self._refs)])),
        )
        return compare_protected(
            ref, self._memo(self._probes, probe, lambda t: protect_probe(t, self.key))
        )
