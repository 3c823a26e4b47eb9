"""Tiled inference: windows tile the image exactly and stitching equals whole-image inference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmentation.tiling import tiled_logits, window_for_budget, window_starts


def box_logits(batch: np.ndarray) -> np.ndarray:
    """A 'network' with a known 9×9 receptive field and zero padding at its input border."""
    summed = batch[0].sum(axis=0)
    out = cv2.boxFilter(summed, -1, (9, 9), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return out[None, None].astype(np.float32)


class TestWindowStarts:
    @given(
        length=st.integers(1, 40).map(lambda k: 32 * k),
        window=st.integers(5, 20).map(lambda k: 32 * k),
        margin=st.sampled_from([0, 32, 64]),
    )
    def test_owned_ranges_tile_the_axis(self, length, window, margin):
        spans = window_starts(length, window, margin)
        assert spans[0][1] == 0 and spans[-1][2] == length
        for (_, _, prev_to), (_, keep_from, _) in zip(spans, spans[1:], strict=False):
            assert keep_from == prev_to
        for start, keep_from, keep_to in spans:
            assert start % 32 == 0
            assert start <= keep_from < keep_to <= start + min(window, length)
            # every owned pixel has `margin` context on each inner side
            if keep_from > 0:
                assert keep_from - start >= margin
            if keep_to < length:
                assert start + window - keep_to >= margin

    def test_window_larger_than_axis_is_one_span(self):
        assert window_starts(96, 256, 64) == [(0, 0, 96)]

    def test_margin_too_wide_for_window(self):
        with pytest.raises(ValueError, match="no centre"):
            window_starts(512, 128, 64)


class TestTiledLogits:
    def test_equals_whole_image_when_margin_covers_receptive_field(self):
        batch = np.random.default_rng(0).random((1, 3, 224, 320), dtype=np.float32)
        whole = box_logits(batch)
        tiled = tiled_logits(box_logits, batch, (96, 128), margin=32)
        np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)

    def test_without_margin_seams_differ(self):
        batch = np.random.default_rng(0).random((1, 3, 224, 320), dtype=np.float32)
        tiled = tiled_logits(box_logits, batch, (96, 128), margin=0)
        assert np.abs(tiled - box_logits(batch)).max() > 1.0

    def test_exact_window_feeds_only_window_shapes(self):
        seen = set()

        def spy(tile):
            seen.add(tile.shape)
            return box_logits(tile)

        batch = np.random.default_rng(1).random((1, 3, 64, 416), dtype=np.float32)
        out = tiled_logits(spy, batch, (128, 128), margin=32, exact_window=True)
        assert seen == {(1, 3, 128, 128)}
        assert out.shape == (1, 1, 64, 416)
        np.testing.assert_allclose(out, box_logits(batch), rtol=1e-5, atol=1e-4)

    def test_rejects_unaligned_shapes(self):
        with pytest.raises(ValueError, match="multiple of 32"):
            tiled_logits(box_logits, np.zeros((1, 3, 100, 128), np.float32), (64, 64), margin=0)


class TestWindowForBudget:
    def test_fits_means_no_tiling(self):
        assert window_for_budget((512, 768), 1024, bytes_per_pixel=100) is None

    def test_window_fits_budget_and_is_aligned(self):
        budget_mb, bpp = 50, 400
        h, w = window_for_budget((2336, 3520), budget_mb, bytes_per_pixel=bpp)
        assert h % 32 == 0 and w % 32 == 0
        assert h * w * bpp <= budget_mb * 2**20
        assert h * w * bpp > 0.5 * budget_mb * 2**20  # not needlessly small
