"""Bad photographs are refused at the boundary with one clear line."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from segmentation.imageio import MAX_PIXELS, InvalidImage, decode_image, read_image


def encode(array: np.ndarray, fmt: str = ".png") -> bytes:
    ok, buf = cv2.imencode(fmt, array)
    assert ok
    return buf.tobytes()


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)


class TestDecodeImage:
    def test_colour_png_decodes_as_rgb(self, rgb):
        out = decode_image(encode(rgb[..., ::-1]))  # OpenCV writes BGR
        assert out.shape == (80, 100, 3) and out.dtype == np.uint8
        assert np.array_equal(out, rgb)

    def test_rgba_drops_alpha(self, rgb):
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        assert decode_image(buf.getvalue()).shape == (80, 100, 3)

    @pytest.mark.parametrize(
        "data, message",
        [
            (b"", "empty"),
            (b"hello, not an image", "not a recognised image"),
            (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "not a recognised image"),
        ],
    )
    def test_garbage_is_refused(self, data, message):
        with pytest.raises(InvalidImage, match=message):
            decode_image(data)

    def test_truncated_jpeg_is_refused(self, rgb):
        data = encode(rgb, ".jpg")
        with pytest.raises(InvalidImage, match="truncated|corrupt|not a recognised"):
            decode_image(data[: len(data) // 2])

    def test_grayscale_is_refused(self, rgb):
        with pytest.raises(InvalidImage, match="grayscale"):
            decode_image(encode(rgb[..., 0]))

    def test_sixteen_bit_is_refused(self, rgb):
        with pytest.raises(InvalidImage, match="uint16|8-bit|grayscale"):
            decode_image(encode(rgb.astype(np.uint16) * 256))

    def test_tiny_image_is_refused(self):
        with pytest.raises(InvalidImage, match="too small"):
            decode_image(encode(np.zeros((1, 1, 3), np.uint8)))

    def test_blank_image_is_refused(self):
        with pytest.raises(InvalidImage, match="blank"):
            decode_image(encode(np.full((100, 100, 3), 7, np.uint8)))

    def test_decompression_bomb_refused_from_header(self):
        # A PNG header that declares 100k x 100k pixels: refused before any pixel is decoded.
        img = Image.new("RGB", (1, 1))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data = bytearray(buf.getvalue())
        data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width, height
        with pytest.raises(InvalidImage, match=f"{MAX_PIXELS}|not a recognised"):
            decode_image(bytes(data))

    def test_messages_are_one_line(self):
        with pytest.raises(InvalidImage) as err:
            decode_image(b"nope")
        assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidImage, match="no such file"):
        read_image(tmp_path / "absent.jpg")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InvalidImage, match="no such file"):
        read_image(tmp_path)
