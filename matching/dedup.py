"""Deduplication: every enrolled capture against all others, to find one eye under two ids.

What a national-ID deployment runs at enrolment time, and an audit runs over a whole store:
each capture is a probe against the gallery without its own identity, through the same
pre-filter and full matcher as a 1:N request; a pair of different identities scoring at or
above the threshold is reported. Probes are processed in chunks, in this process or on Dask
(the gallery and the serialised templates are scattered to every worker once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from biometrics.errors import MissingExtra
from biometrics.template import Template
from matching.prefilter import Prefilter
from matching.score import compare
from matching.search import Gallery

#: Candidates per pre-filter ranking that each probe capture is re-scored against.
DEDUP_SHORTLIST = 4
_CHUNK = 64


@dataclass(frozen=True)
class Duplicate:
    """Two captures of different identities that match (``owner_a < owner_b``)."""

    owner_a: int
    key_a: int
    owner_b: int
    key_b: int
    score: float


def _chunk(
    gallery: Gallery, blobs: Mapping[int, bytes], keys: Sequence[int], threshold: float, k: int
) -> list[Duplicate]:
    """Duplicates found for one chunk of probe captures (runs in a worker)."""
    parsed: dict[int, Template] = {}

    def template(key: int) -> Template:
        if key not in parsed:
            parsed[key] = Template.from_bytes(blobs[key])
        return parsed[key]

    found = []
    for key in keys:
        owner = gallery.owner_of(key)
        for other in gallery.shortlist(Prefilter.probe(template(key)), k).tolist():
            other_owner = gallery.owner_of(other)
            if other_owner == owner:
                continue
            score = compare(template(other), template(key))
            if score >= threshold:
                a, b = sorted([(owner, key), (other_owner, other)])
                found.append(Duplicate(a[0], a[1], b[0], b[1], score))
    return found


def find_duplicates(
    gallery: Gallery,
    blobs: Mapping[int, bytes],
    *,
    threshold: float,
    k: int = DEDUP_SHORTLIST,
    dask_address: str | None = None,
    dask_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Duplicate]:
    """Every pair of identities whose captures match, best first, one entry per pair.

    With ``dask_workers`` > 0 a ``LocalCluster`` runs the chunks; ``dask_address`` joins a
    running scheduler instead.
    """
    keys = [int(x) for x in gallery.keys[: gallery.rows] if x >= 0]
    chunks = [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
    results: list[Duplicate] = []
    done = 0
    if dask_address or dask_workers:
        for part in _on_dask(gallery, blobs, chunks, threshold, k, dask_address, dask_workers):
            results.extend(part[1])
            done += part[0]
            if progress:
                progress(done, len(keys))
    else:
        for chunk in chunks:
            results.extend(_chunk(gallery, blobs, chunk, threshold, k))
            done += len(chunk)
            if progress:
                progress(done, len(keys))
    best: dict[tuple[int, int], Duplicate] = {}
    for dup in results:
        pair = (dup.owner_a, dup.owner_b)
        if pair not in best or dup.score > best[pair].score:
            best[pair] = dup
    return sorted(best.values(), key=lambda d: -d.score)


def _on_dask(
    gallery: Gallery,
    blobs: Mapping[int, bytes],
    chunks: list[list[int]],
    threshold: float,
    k: int,
    address: str | None,
    workers: int,
) -> Any:
    try:
        import distributed
    except ImportError:
        raise MissingExtra("retauth dedup --dask", "dist", "distributed") from None
    cluster = None
    if address:
        client = distributed.Client(address, timeout="10s")
    else:
        cluster = distributed.LocalCluster(
            n_workers=max(1, workers),
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = distributed.Client(cluster)
    try:
        shared_gallery, shared_blobs = client.scatter([gallery, dict(blobs)], broadcast=True)
        futures = {
            client.submit(_chunk, shared_gallery, shared_blobs, c, threshold, k, pure=False): len(c)
            for c in chunks
        }
        for future in distributed.as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
