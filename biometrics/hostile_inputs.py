"""Hostile photographs, generated (no data set needed): test and benchmark data only.

Nothing at run time imports this. Each input is small on disk and aims at one intermediate of
the pipeline: the decoded frame, the canonical (FOV-scaled) image, or the thumbnail the FOV is
measured on; every one must be refused with exit 2 (HTTP 400/422) within bounded memory. It
lives in the package, like :mod:`biometrics.synthetic`, so that the tests
(``tests/security/test_amplification.py``, ``test_kiosk_abuse.py``) and the benchmark
(``benchmarks/hostile_inputs.py``) share it without importing each other.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from biometrics.synthetic import fundus

#: The folder holding this copy of the ``biometrics`` package (a checkout's root): ``python -m
#: biometrics.cli`` run from there is this copy's ``retauth``, not whichever one is installed.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
RETAUTH = [sys.executable, "-m", "biometrics.cli"]
#: Frame of a RIDB capture (Topcon, 1504 x 1000): the scale of the baseline measurement.
CAPTURE_SHAPE = (1000, 1504)


def run_measured(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``retauth *args`` (this copy, from :data:`PACKAGE_ROOT`); return exit code, stderr
    and the child's own peak RSS in MB.

    ``wait4`` reports the rusage of that one child, unlike ``RUSAGE_CHILDREN`` (the maximum
    over every child waited for so far).
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*RETAUTH, *args], env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=PACKAGE_ROOT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def capture_jpeg() -> bytes:
    """A synthetic fundus photograph framed like a RIDB capture (FOV 900 px in 1504 x 1000)."""
    eye = cv2.resize(fundus(3)[0], (900, 900), interpolation=cv2.INTER_CUBIC)
    frame = np.zeros((*CAPTURE_SHAPE, 3), np.uint8)
    top, left = (CAPTURE_SHAPE[0] - 900) // 2, (CAPTURE_SHAPE[1] - 900) // 2
    frame[top : top + 900, left : left + 900] = eye
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )
    assert ok
    return buf.tobytes()


def _strip(height: int, width: int) -> bytes:
    """A lit strip with faint stripes (no dark surround): the issue's tall, narrow PNGs."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 150
    rgb[::7, :, 1] = 80
    return _png(rgb)


def _disc_in_frame(height: int, width: int, radius: int) -> bytes:
    """A retina-coloured disc of ``radius`` in a black frame of height x width."""
    rgb = np.zeros((height, width, 3), np.uint8)
    cv2.circle(rgb, (width // 2, height // 2), radius, (190, 80, 40), -1)
    return _png(rgb)


def _declared_png(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header declares width x height RGB (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@cache
def hostile_images() -> dict[str, bytes]:
    """Name → encoded bytes of every hostile input class (all must be refused, exit 2)."""
    return {
        # the examples: 11 KB at 64x5000 peaked at 1.2 GB; 64x140000 took a kiosk to 3.9 GB
        "tall_64x5000": _strip(5000, 64),
        "tall_64x140000": _strip(140_000, 64),
        "wide_5000x64": _strip(64, 5000),
        # just over the aspect limit: 3.1:1
        "aspect_3.1": _strip(1000, 3100),
        # a small FOV in a large frame: scaled to a 540-px FOV it would be 2160x1620
        "small_fov_4000x3000": _disc_in_frame(3000, 4000, 500),
        # the same within the kiosk's 9 Mpx limit: it would be 1620x1620
        "small_fov_2400x2400": _disc_in_frame(2400, 2400, 400),
        # a FOV too small to be one (under 1/4 of the short side): the frame is taken instead
        "tiny_fov_4000x3000": _disc_in_frame(3000, 4000, 150),
        # a decompression bomb: 30000x30000 declared in the header
        "bomb_30000x30000": _declared_png(30_000, 30_000),
        # the largest frame accepted (6000x4000 = 24 Mpx) with nothing in it to recognise
        "largest_6000x4000": _disc_in_frame(4000, 6000, 1900),
        # the largest the kiosk accepts (9 Mpx): runs the whole pipeline there, then FTA
        "largest_3600x2500": _disc_in_frame(2500, 3600, 1200),
    }
