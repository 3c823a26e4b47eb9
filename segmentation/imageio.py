"""Safe decoding of fundus photographs at the system boundary.

Every photograph that enters retauth passes through :func:`read_image` or :func:`decode_image`,
so bad input is refused here with one clear :class:`InvalidImage` message, before any pixel
buffer is allocated for an absurd declared size (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

#: Largest accepted image, in pixels (HRF is 8.2 Mpx; leaves headroom for 24 Mpx cameras).
#: The decoded photograph stays in memory while the model runs, so this bounds a command's
#: peak: 25 Mpx adds 75 MB to the ~250 MB of a verification (40 Mpx added 120 MB, 1.45x).
MAX_PIXELS = 25_000_000
#: Smallest accepted side: below this there is no vessel tree to speak of.
MIN_SIDE = 64
#: Largest accepted file, in bytes.
MAX_BYTES = 64 * 1024 * 1024
#: Largest accepted ratio of the long side to the short side. Fundus cameras give 1:1 to 16:9
#: (1.5 at most in the shipped data sets); a thin strip is no photograph, and canonical scaling
#: (which fits the short side's field of view to a fixed size) would blow it up.
MAX_ASPECT = 3.0


class InvalidImage(ValueError):
    """The input is not a usable colour fundus photograph (message is one line, user-facing)."""


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a photograph file into an RGB ``uint8`` array of shape (H, W, 3).

    Raises
    ------
    InvalidImage
        If the file is missing, unreadable, not an image, truncated, too large or too small.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidImage(f"{path.name}: no such file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InvalidImage(f"{path.name}: file is {size} bytes, larger than {MAX_BYTES}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImage(f"{path.name}: cannot be read ({exc.strerror})") from None
    return decode_image(data, name=path.name, max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, TIFF, GIF, BMP) into RGB ``uint8`` (H, W, 3).

    The header is parsed first (Pillow, lazily) so that declared dimensions are checked before
    decoding. Grayscale and 16-bit inputs are refused: a fundus photograph is colour, and the
    vessel contrast lives in the green channel. RGBA is accepted and its alpha dropped.
    ``max_pixels`` lets a memory-bounded caller (the kiosk) refuse smaller images than the
    library default.
    """
    if len(data) == 0:
        raise InvalidImage(f"{name}: empty file")
    if len(data) > MAX_BYTES:
        raise InvalidImage(f"{name}: {len(data)} bytes, larger than {MAX_BYTES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = Image.open(io.BytesIO(data))
            width, height = header.size
            mode = header.mode
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidImage(f"{name}: not a recognised image file") from None
    check_size(width, height, name=name, max_pixels=max_pixels)
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        raise InvalidImage(f"{name}: grayscale or single-channel image; a colour photo is needed")
    rgb = _decode_pixels(data, header, name)
    if rgb.shape[:2] != (height, width):
        raise InvalidImage(f"{name}: decoded size does not match its header")
    if float(cv2.meanStdDev(rgb)[1].max()) < 1.0:  # no float64 copy of the image
        raise InvalidImage(f"{name}: image is blank")
    return rgb


def check_size(width: int, height: int, *, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a frame too large, too small or too elongated, before anything is allocated
    for it (a decoded upload, a camera frame): every later buffer grows with these sizes."""
    if width * height > max_pixels:
        raise InvalidImage(f"{name}: {width}x{height} exceeds the {max_pixels} pixel limit")
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(f"{name}: {width}x{height} is too small (minimum side {MIN_SIDE})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImage(
            f"{name}: {width}x{height} is too elongated for a fundus photograph "
            f"(sides may differ by at most {MAX_ASPECT:g}:1)"
        )


def _decode_pixels(data: bytes, header: Image.Image, name: str) -> np.ndarray:
    """Decode with OpenCV (fast, strict on truncation), falling back to Pillow for GIF/palette."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if header.format != "GIF" else None
    if bgr is not None:
        if bgr.dtype != np.uint8:
            raise InvalidImage(f"{name}: {bgr.dtype} pixels; 8-bit colour is expected")
        if bgr.ndim == 2 or bgr.shape[2] == 1:
            raise InvalidImage(f"{name}: grayscale image; a colour photo is needed")
        if _is_truncated_jpeg(data, header):
            raise InvalidImage(f"{name}: truncated or corrupt image data")
        if bgr.shape[2] == 4:
            return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second full copy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            img.load()
    except (OSError, ValueError, SyntaxError):
        raise InvalidImage(f"{name}: truncated or corrupt image data") from None
    if img.mode not in ("RGB", "RGBA", "P", "PA"):
        raise InvalidImage(f"{name}: unsupported pixel mode {img.mode}")
    return np.array(img if img.mode == "RGB" else img.convert("RGB"))  # writable copy


def _is_truncated_jpeg(data: bytes, header: Image.Image) -> bool:
    """OpenCV pads a truncated JPEG with grey instead of failing; detect the missing EOI marker."""
    return header.format == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9")
