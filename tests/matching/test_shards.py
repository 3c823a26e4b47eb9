"""The sharded gallery on a Dask LocalCluster gives the single gallery's answer."""

from __future__ import annotations

import pytest
from eyes import templates

from biometrics.template import Template
from matching.prefilter import Prefilter
from matching.search import Gallery, rescore
from matching.shards import ShardedGallery

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow


def test_sharded_identify_matches_the_single_gallery() -> None:
    t = templates()
    refs = {i: Template.from_bytes(t[f"eye{i}"].to_bytes()) for i in range(5)}  # as stored
    keys, owners = list(refs), [100 + k for k in refs]
    vectors = [Prefilter.of(r) for r in refs.values()]
    single = Gallery()
    single.add(keys, owners, vectors)
    with ShardedGallery(shards=3, workers=2) as sharded:
        sharded.add(keys, owners, vectors, [r.to_bytes() for r in refs.values()])
        for i in range(5):
            probe = Template.from_bytes(t[f"eye{i}-moved"].to_bytes())  # shards receive bytes
            shortlist = single.shortlist(Prefilter.of(probe)).tolist()
            expected = rescore(
                probe, shortlist, single.owner_of, lambda ks: {k: refs[k] for k in ks}
            )
            got = sharded.identify(probe)
            assert got[0].owner == expected[0].owner == 100 + i
            assert got[0].score == pytest.approx(expected[0].score)
        sharded.remove([2])
        assert all(s.owner != 102 for s in sharded.identify(t["eye2-moved"]))
