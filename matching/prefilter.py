"""Fixed-length summaries of a template that rank a whole gallery before the full matcher runs.

The full matcher (:func:`matching.compare`) costs milliseconds per pair, far too much for every
reference of a 100,000-capture gallery, so each capture is also summarised by two vectors that
one matrix product compares against the whole gallery. They fail in different ways, so the
shortlist takes the best candidates of each:

* **polar** — the classic retina scan: vessel density on rings around the optic disc (the
  template's origin), by angle. An in-plane rotation of the eye is a circular shift of every
  ring, so the magnitudes of each ring's angular Fourier series are rotation invariant
  (:attr:`Prefilter.polar_magnitude`, one dot product per reference), and the exact shift is
  then searched on a short list by circular cross-correlation of the ring profiles
  (:func:`polar_similarity`). It depends on the disc being found in both captures.
* **spectral** — the log-magnitude Fourier spectrum of the centreline drawn on a coarse grid:
  invariant to translation, so it still works when the disc was found in a different place
  (or not at all). It is not invariant to rotation, but a magnitude spectrum is symmetric
  under a half turn, so the probe's is taken at ``SPECTRAL_TURNS`` rotations over 180°
  (:meth:`Prefilter.probe`) and the best one counts: one small matrix product more.

Both are computed once at enrolment and sealed beside the template (:meth:`Prefilter.to_bytes`),
so a restarted kiosk loads them instead of recomputing them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from biometrics.errors import InputError
from biometrics.template import Template

#: Ring edges (canonical pixels from the disc) of the polar signature; the disc itself (< 60 px)
#: and the far periphery (often outside the FOV) are left out.
RING_EDGES = np.linspace(60.0, 300.0, 9)
RINGS = len(RING_EDGES) - 1
#: Angular bins per ring (5.6° each) and the circular blur (bins) that absorbs small errors of
#: the disc position and of the branch geometry.
ANGLES = 64
ANGLE_BLUR = 0.9
#: Angular frequencies kept for the rotation-invariant magnitudes (the blur removes the rest).
POLAR_FREQS = 24
#: Spectral embedding: centreline binned into GRID×GRID cells of CELL canonical pixels, the
#: lowest FREQS×FREQS spatial frequencies (both signs of the vertical one) kept.
CELL = 8
GRID = 128
FREQS = 12
#: Rotations of a probe's centreline (over a half turn, 15° apart) for the spectral ranking.
SPECTRAL_TURNS = 12

_MAGIC = b"RPF"
_VERSION = 1
_HEADER = struct.Struct(">3sBHHH")


class InvalidPrefilter(InputError):
    """A stored pre-filter record is truncated or of an unknown version."""


@dataclass(frozen=True, eq=False)
class Prefilter:
    """Pre-filter vectors of one capture (all float32, unit length where compared by cosine)."""

    polar: np.ndarray  # (RINGS, ANGLES) zero-mean ring profiles, unit Frobenius norm
    polar_magnitude: np.ndarray  # (RINGS * POLAR_FREQS,) unit vector, rotation invariant
    spectral: np.ndarray  # (2 * FREQS**2,) log-magnitude spectrum, not centred
    #: probes only: (SPECTRAL_TURNS, 2 * FREQS**2) spectra of the probe turned 0°, 15°, ...
    turns: np.ndarray | None = None

    @classmethod
    def of(cls, template: Template) -> Prefilter:
        """The vectors stored for an enrolled capture."""
        polar = polar_profiles(template.points)
        return cls(polar, polar_magnitude(polar), spectral_embedding(template.points))

    @classmethod
    def probe(cls, template: Template) -> Prefilter:
        """The vectors of a probe, with its spectral embedding at every searched rotation."""
        points = template.points
        polar = polar_profiles(points)
        angles = np.pi * np.arange(SPECTRAL_TURNS) / SPECTRAL_TURNS
        turns = np.stack(
            [
                spectral_embedding(
                    points @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32)
                )
                for a in angles
            ]
        )
        return cls(polar, polar_magnitude(polar), turns[0], turns)

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(_MAGIC, _VERSION, RINGS, ANGLES, self.spectral.size)
        return head + self.polar.astype("<f2").tobytes() + self.spectral.astype("<f4").tobytes()


def check(blob: bytes) -> int:
    """Validate a record's header and size without decoding it; returns its spectral size."""
    if len(blob) < _HEADER.size:
        raise InvalidPrefilter("pre-filter record is truncated")
    magic, version, rings, angles, dim = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION or (rings, angles) != (RINGS, ANGLES):
        raise InvalidPrefilter("pre-filter record has an unknown format or version")
    if len(blob) != _HEADER.size + rings * angles * 2 + dim * 4:
        raise InvalidPrefilter("pre-filter record has the wrong size")
    return dim


def stack(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse many :meth:`Prefilter.to_bytes` records at once: (polar f16, magnitude, spectral).

    What a service does at start for every enrolled capture, so the magnitudes of all of
    them come from one FFT call rather than one per capture.
    """
    if not blobs:
        raise InvalidPrefilter("no pre-filter records")
    if len({check(blob) for blob in blobs}) != 1:
        raise InvalidPrefilter("pre-filter records of different sizes")
    raw = np.frombuffer(b"".join(blobs), np.uint8).reshape(len(blobs), -1)[:, _HEADER.size :]
    cut = RINGS * ANGLES * 2
    polar = np.ascontiguousarray(raw[:, :cut]).view("<f2").reshape(-1, RINGS, ANGLES)
    spectral = np.ascontiguousarray(raw[:, cut:]).view("<f4").astype(np.float32)
    mag = np.abs(np.fft.rfft(polar.astype(np.float32), axis=2)[:, :, 1 : POLAR_FREQS + 1])
    mag = mag.reshape(len(blobs), -1)
    mag /= np.maximum(np.linalg.norm(mag, axis=1, keepdims=True), 1e-9)
    return polar.astype(np.float16), mag.astype(np.float32), spectral


def polar_profiles(points: np.ndarray) -> np.ndarray:
    """Centreline density per (ring, angle) around the origin, circularly blurred, normalised."""
    p = points.astype(np.float64)
    radius = np.hypot(p[:, 0], p[:, 1])
    ring = np.searchsorted(RING_EDGES, radius) - 1
    ok = (ring >= 0) & (ring < RINGS)
    angle = np.floor((np.arctan2(p[:, 1], p[:, 0]) + np.pi) / (2 * np.pi) * ANGLES).astype(np.int64)
    flat = ring[ok] * ANGLES + angle[ok] % ANGLES
    hist = np.bincount(flat, minlength=RINGS * ANGLES).astype(np.float32).reshape(RINGS, ANGLES)
    pad = 4
    wrapped = np.concatenate([hist[:, -pad:], hist, hist[:, :pad]], axis=1)
    blurred = cv2.GaussianBlur(wrapped, (2 * pad + 1, 1), sigmaX=ANGLE_BLUR, sigmaY=0)[:, pad:-pad]
    # sqrt: a thick trunk that crosses a ring at a shallow angle must not drown the others.
    profile = np.sqrt(blurred)
    profile -= profile.mean(axis=1, keepdims=True)
    return (profile / max(float(np.linalg.norm(profile)), 1e-9)).astype(np.float32)


def polar_magnitude(polar: np.ndarray) -> np.ndarray:
    """Rotation-invariant summary: |angular Fourier coefficients| of every ring, unit length."""
    mag = np.abs(np.fft.rfft(polar, axis=1)[:, 1 : POLAR_FREQS + 1]).ravel()
    return (mag / max(float(np.linalg.norm(mag)), 1e-9)).astype(np.float32)


def polar_similarity(candidates: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Best circular-shift correlation of each candidate's ring profiles with the probe's.

    ``candidates`` is (M, RINGS, ANGLES); the result (M,) lies in [-1, 1] (1: same profiles
    after some rotation). One FFT per candidate: cheap on a shortlist of a few hundred.
    """
    spectra = np.fft.rfft(candidates, axis=2)
    cross = (spectra * np.conj(np.fft.rfft(probe, axis=1))[None]).sum(axis=1)
    return np.fft.irfft(cross, n=ANGLES, axis=1).max(axis=1).astype(np.float32)


def spectral_embedding(points: np.ndarray) -> np.ndarray:
    """Translation-invariant summary: log-magnitude spectrum of the centreline density grid.

    The Fourier magnitude ignores where the vessel pattern sits in the frame (so an optic disc
    found in the wrong place costs nothing) while keeping the orientations and spacings of the
    vessels, which differ between eyes.
    """
    ij = np.floor((points + GRID * CELL / 2) / CELL).astype(np.int64)
    ok = ((ij >= 0) & (ij < GRID)).all(axis=1)
    flat = ij[ok, 1] * GRID + ij[ok, 0]
    grid = np.bincount(flat, minlength=GRID * GRID).astype(np.float32).reshape(GRID, GRID)
    grid = cv2.GaussianBlur(grid, (0, 0), 1.0)
    spectrum = np.abs(np.fft.rfft2(grid))
    low = np.concatenate([spectrum[:FREQS, :FREQS], spectrum[-FREQS:, :FREQS]])
    return np.log1p(low).ravel().astype(np.float32)
