"""Image sources other than an upload: an OpenCV camera index or a folder a scanner writes to.

Both return an RGB ``uint8`` array in memory; the kiosk never copies a capture anywhere. The
folder source only takes a *fresh* file (newer than ``max_age_s``), so that a photograph left
behind by an earlier person cannot be replayed by pressing "Verify" again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from biometrics.errors import FailureToAcquire
from segmentation.imageio import MAX_PIXELS, check_size, read_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm"})


class CaptureSource(Protocol):
    """Something that yields one photograph on demand."""

    name: str

    def capture(self) -> np.ndarray:
        """Return RGB uint8 (H, W, 3), or raise :class:`FailureToAcquire`."""
        ...


class FolderSource:
    """The newest image file in ``folder`` written within the last ``max_age_s`` seconds,
    held to the same ``max_pixels`` as an upload (whoever can write to the folder can drop
    any file there)."""

    name = "folder"

    def __init__(
        self, folder: str | Path, max_age_s: float = 30.0, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"watched folder {self.folder} does not exist")
        self.max_age_s = max_age_s
        self.max_pixels = max_pixels

    def capture(self) -> np.ndarray:
        candidates = [
            (p.stat().st_mtime, p)
            for p in self.folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        ]
        if not candidates:
            raise FailureToAcquire("no capture in the scanner folder yet")
        mtime, newest = max(candidates)
        if time.time() - mtime > self.max_age_s:
            raise FailureToAcquire("no fresh capture from the scanner; please scan again")
        return read_image(newest, max_pixels=self.max_pixels)


class CameraSource:
    """A frame from ``cv2.VideoCapture(index)``, opened once and shared under a lock."""

    name = "camera"

    def __init__(self, index: int) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._device: cv2.VideoCapture | None = None

    def capture(self) -> np.ndarray:
        with self._lock:
            if self._device is None or not self._device.isOpened():
                self._device = cv2.VideoCapture(self.index)
            ok, bgr = self._device.read()
        if not ok or bgr is None or bgr.ndim != 3:
            raise FailureToAcquire(f"camera {self.index} returned no colour frame")
        check_size(bgr.shape[1], bgr.shape[0], name=f"camera {self.index} frame")
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        with self._lock:
            if self._device is not None:
                self._device.release()
                self._device = None
