"""The 1:N search beyond one machine: the gallery split into shards held by Dask workers.

Each shard is a :class:`~matching.search.Gallery` plus the serialised templates of its
captures, kept on one worker by a Dask *actor*, so a 1:N request sends only the probe: every
shard ranks its own rows, re-scores its own shortlist with the full matcher and returns its
best few; the caller keeps the best overall. The answer is the same as one big gallery's up to
the pre-filter's per-shard shortlist (which only grows: each shard keeps ``k`` per ranking).

Dask is the optional ``dist`` extra, imported only here. ``address`` joins a running
scheduler (the ``dask_scheduler`` setting); without it a ``LocalCluster`` is started.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from biometrics.errors import MissingExtra
from biometrics.template import Template
from matching.prefilter import Prefilter
from matching.search import Gallery, Scored, rescore

#: Parsed templates a shard keeps (the rest stay serialised, ~4 KB each).
_PARSED = 64


class Shard:
    """One worker's part of the gallery (used as a Dask actor; plain object in tests)."""

    def __init__(self) -> None:
        self.gallery = Gallery()
        self.blobs: dict[int, bytes] = {}
        self._parsed: OrderedDict[int, Template] = OrderedDict()

    def add_arrays(
        self,
        keys: np.ndarray,
        owners: np.ndarray,
        polar: np.ndarray,
        magnitude: np.ndarray,
        spectral: np.ndarray,
        blobs: dict[int, bytes],
    ) -> int:
        """Append captures as stacked pre-filter arrays with their serialised templates."""
        self.gallery.add_arrays(keys, owners, polar, magnitude, spectral)
        self.blobs.update(blobs)
        return len(self.gallery)

    def remove(self, keys: list[int]) -> int:
        self.gallery.remove(keys)
        for key in keys:
            self.blobs.pop(key, None)
            self._parsed.pop(key, None)
        return len(self.gallery)

    def _templates(self, keys: Sequence[int]) -> dict[int, Template]:
        out = {}
        for key in keys:
            if key not in self._parsed:
                blob = self.blobs.get(key)
                if blob is None:
                    continue
                self._parsed[key] = Template.from_bytes(blob)
                if len(self._parsed) > _PARSED:
                    self._parsed.popitem(last=False)
            out[key] = self._parsed[key]
        return out

    def identify(self, probe_blob: bytes, vector: Prefilter, k: int | None) -> list[tuple]:
        """This shard's re-scored shortlist, best first, as plain tuples (cheap to send)."""
        probe = Template.from_bytes(probe_blob)
        keys = self.gallery.shortlist(vector, k).tolist()
        scored = rescore(probe, keys, self.gallery.owner_of, self._templates)
        return [(s.key, s.owner, s.score) for s in scored[:k]]


class ShardedGallery:
    """The identify API over ``shards`` Dask actors; rows go to shard ``key % shards``."""

    def __init__(self, shards: int, *, address: str | None = None, workers: int = 2) -> None:
        try:
            import distributed
        except ImportError:
            raise MissingExtra("a Dask-sharded gallery", "dist", "distributed") from None
        if address:
            self.client = distributed.Client(address, timeout="10s")
            self._cluster = None
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,
            )
            self.client = distributed.Client(self._cluster)
        workers_ = list(self.client.scheduler_info()["workers"])
        self.shards: list[Any] = [
            self.client.submit(Shard, actor=True, workers=[workers_[i % len(workers_)]]).result()
            for i in range(shards)
        ]

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> ShardedGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _split(self, keys: Sequence[int]) -> list[np.ndarray]:
        keys = np.asarray(keys, np.int64)
        return [np.flatnonzero(keys % len(self.shards) == i) for i in range(len(self.shards))]

    def add(
        self,
        keys: Sequence[int],
        owners: Sequence[int],
        vectors: Sequence[Prefilter],
        templates: Sequence[bytes],
    ) -> None:
        """Append captures with their pre-filter vectors and serialised templates."""
        blobs = dict(zip((int(k) for k in keys), templates, strict=True))
        self.add_arrays(
            np.asarray(keys, np.int64),
            np.asarray(owners, np.int64),
            np.stack([v.polar for v in vectors]).astype(np.float16),
            np.stack([v.polar_magnitude for v in vectors]),
            np.stack([v.spectral for v in vectors]),
            blobs.__getitem__,
        )

    def add_arrays(
        self,
        keys: np.ndarray,
        owners: np.ndarray,
        polar: np.ndarray,
        magnitude: np.ndarray,
        spectral: np.ndarray,
        blob_of: Any,
    ) -> None:
        """Append captures as stacked pre-filter arrays; ``blob_of(key)`` gives the serialised
        template of a key. Each shard receives its rows in one call."""
        pending = []
        for shard, rows in zip(self.shards, self._split(keys), strict=True):
            if not len(rows):
                continue
            blobs = {int(k): blob_of(int(k)) for k in keys[rows]}
            pending.append(
                shard.add_arrays(
                    keys[rows], owners[rows], polar[rows], magnitude[rows], spectral[rows], blobs
                )
            )
        for future in pending:
            future.result()

    def remove(self, keys: Sequence[int]) -> None:
        for shard, rows in zip(self.shards, self._split(keys), strict=True):
            if len(rows):
                shard.remove([int(keys[i]) for i in rows]).result()

    def identify(self, probe: Template, *, k: int | None = None) -> list[Scored]:
        """Every shard's re-scored shortlist merged, best first, one entry per owner (``k``
        per ranking and shard; default: each shard's own :func:`shortlist_size`)."""
        blob, vector = probe.to_bytes(), Prefilter.probe(probe)
        futures = [shard.identify(blob, vector, k) for shard in self.shards]
        best: dict[int, Scored] = {}
        for future in futures:
            for key, owner, score in future.result():
                if owner not in best or score > best[owner].score:
                    best[owner] = Scored(key, owner, score)
        return sorted(best.values(), key=lambda s: -s.score)
