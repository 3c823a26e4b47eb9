"""In-process request counters and latency quantiles, exposed as Prometheus text on ``/metrics``.

A kiosk has no metrics stack of its own; plain text that ``curl`` can read and that a
Prometheus agent could scrape is enough. Latency quantiles are computed over a sliding window
of recent requests, so memory stays constant however long the kiosk runs.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np

#: Number of most recent latencies kept per endpoint for the quantiles.
WINDOW = 2048
QUANTILES = (0.5, 0.9, 0.95, 0.99)


class Metrics:
    """Thread-safe counters keyed by (endpoint, outcome) and a latency window per endpoint."""

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._latency: dict[str, deque[float]] = {}
        self._window = window

    def observe(self, endpoint: str, outcome: str, seconds: float | None = None) -> None:
        """Count one request; record its latency unless it never reached a worker (``None``)."""
        with self._lock:
            self._counts[(endpoint, outcome)] += 1
            if seconds is not None:
                self._latency.setdefault(endpoint, deque(maxlen=self._window)).append(seconds)

    def quantiles(self, endpoint: str) -> dict[float, float]:
        """Latency quantiles in seconds over the window (empty if nothing was recorded)."""
        with self._lock:
            values = np.fromiter(self._latency.get(endpoint, ()), dtype=np.float64)
        if values.size == 0:
            return {}
        return dict(zip(QUANTILES, np.quantile(values, QUANTILES).tolist(), strict=True))

    def render(self, gauges: dict[str, float]) -> str:
        """Prometheus text exposition of the counters, latency quantiles and given gauges."""
        with self._lock:
            counts = sorted(self._counts.items())
            endpoints = sorted(self._latency)
        lines = [
            "# HELP retauth_kiosk_requests_total Requests by endpoint and outcome.",
            "# TYPE retauth_kiosk_requests_total counter",
        ]
        lines += [
            f'retauth_kiosk_requests_total{{endpoint="{ep}",outcome="{out}"}} {n}'
            for (ep, out), n in counts
        ]
        lines += [
            "# HELP retauth_kiosk_latency_seconds Processing latency over recent requests.",
            "# TYPE retauth_kiosk_latency_seconds summary",
        ]
        for ep in endpoints:
            for q, value in self.quantiles(ep).items():
                lines.append(
                    f'retauth_kiosk_latency_seconds{{endpoint="{ep}",quantile="{q}"}} {value:.6f}'
                )
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE retauth_kiosk_{name} gauge", f"retauth_kiosk_{name} {value:g}"]
        return "\n".join(lines) + "\n"
