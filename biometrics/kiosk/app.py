"""The kiosk web application: a static touch page plus a small JSON API over a :class:`KioskBackend`.

Plain Starlette (the ASGI toolkit FastAPI is built on): six routes need no request models or
OpenAPI schema, and leaving out FastAPI and pydantic keeps ~16 MB out of a kiosk process
whose budget is 250 MB.

Routes
------
``GET /``                 the kiosk page (static HTML/JS/CSS shipped with the package)
``GET /api/config``       which capture sources and modes the page should offer
``POST /api/verify``      body = encoded image (or empty with ``?source=device``);
                          ``?user_id=`` for 1:1, none for 1:N
``POST /api/enrol``       operator only (``X-Operator-Token``); JSON ``{"user_id", "images"}``
``GET /healthz``          liveness and load
``GET /metrics``          Prometheus text: request counters and latency quantiles

Images are decoded and processed in memory on a bounded worker pool; the vessel overlay goes
back inline as a base64 PNG. Nothing is written to disk unless ``debug_save_dir`` is set.
Every error is a JSON ``{"error": "<one line>"}`` with a meaningful status: 400 bad input,
401/403 operator mode, 403 foreign origin, 408 body too slow, 413 too large, 415 wrong content
type, 422 failure to acquire, 429 too many requests from one client, 503 busy or store
unavailable, 500 corrupt stored data or internal. Exceptions from the backend are classified by
:func:`biometrics.errors.translate`; 5xx answers name only the category (details go to the log,
tracebacks only to the log).

State-changing requests (the two POSTs) must be same-origin (``Origin`` and
``Sec-Fetch-Site``, when the client sends them, as every browser does) and carry the content
type the page sends (``image/*`` or ``application/octet-stream`` for a photograph,
``application/json`` for an enrolment). Neither is a CORS-safelisted type, so a foreign page
open in the kiosk browser cannot send either request without a preflight, which is refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biometrics.errors import (
    FailureToAcquire,
    InputError,
    StoredDataError,
    StoreError,
    translate,
)
from biometrics.kiosk.admission import (
    BodyBudget,
    BoundedExecutor,
    ClientLimiter,
    Overloaded,
    TooManyFromClient,
)
from biometrics.kiosk.backend import KioskBackend, KioskOutcome
from biometrics.kiosk.capture import CaptureSource
from biometrics.kiosk.metrics import Metrics
from biometrics.kiosk.operator import OperatorGate
from biometrics.overlay import encode_image
from segmentation.imageio import decode_image

log = logging.getLogger("retauth.kiosk")
#: Work for a worker thread: returns the JSON body, with its metrics outcome under "_outcome".
Job = Callable[[], dict[str, Any]]
#: Content types a photograph upload may carry (besides any ``image/...``).
UPLOAD_TYPES = frozenset({"application/octet-stream"})
JSON_TYPES = frozenset({"application/json"})
#: ``Sec-Fetch-Site`` values of a request the kiosk page itself (or a typed URL) made.
SAME_SITE_FETCH = frozenset({"same-origin", "none"})

STATIC_DIR = Path(str(resources.files("biometrics.kiosk") / "static"))
#: Longest side of the overlay sent to the page; a kiosk screen needs no more.
OVERLAY_MAX_SIDE = 640
#: Security headers on every response: no framing, no foreign scripts, no caching of results.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class KioskSettings:
    """How the kiosk serves, independent of the biometric settings held by the backend.

    Parameters
    ----------
    workers, max_queue
        Requests processed in parallel, and requests allowed to wait; beyond that → 503.
    operator
        Gate for enrolment; ``None`` disables enrolment entirely.
    capture
        A camera or watched-folder source offered as "Scan" on the page; ``None`` = upload only.
    allow_upload
        Accept photographs in the request body. A production scanner with a camera should
        turn this off: an upload lets anyone present a stolen photograph (injection attack).
    debug_save_dir
        If set, every probe and overlay is written there as PNG (diagnostics only).
    max_upload_bytes, max_pixels
        Largest request body, and largest image (checked from its header before decoding).
        A few kilobytes of PNG can declare 40 Mpx, which decodes to gigabytes of transient
        memory; 9 Mpx covers fundus cameras (HRF is 8.2 Mpx) and keeps a request well under
        the service's memory limit.
    allowed_hosts
        ``Host`` header values accepted; defeats DNS-rebinding from web pages in the kiosk
        browser that try to reach the loopback API under a foreign name.
    body_timeout_s
        Time a request body has to arrive in full; a client trickling it gets 408. Bodies are
        read before admission, so a slow one never holds a worker place.
    max_requests_per_client
        Requests one client address may have in progress (reading or processing) at once.
    """

    workers: int = 1
    max_queue: int = 4
    operator: OperatorGate | None = None
    capture: CaptureSource | None = None
    allow_upload: bool = True
    debug_save_dir: Path | None = None
    max_upload_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 9_000_000
    max_enrol_images: int = 5
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    result_timeout_s: int = 20
    body_timeout_s: float = 10.0
    max_requests_per_client: int = 8

    @property
    def enrol_body_limit(self) -> int:
        """Largest enrolment body: the images base64-encoded in JSON."""
        return self.max_upload_bytes * self.max_enrol_images * 4 // 3 + 4096


class ApiError(Exception):
    """An error with an HTTP status and a one-line message for the page."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        self.names = {k for k, _ in self.raw}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in self.names
                ]
                message = {**message, "headers": kept + self.raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(service: KioskBackend, settings: KioskSettings) -> Starlette:
    """Build the kiosk application around an already loaded backend.

    The backend (and its model) is created by the caller, once, before the server starts; the
    app only owns the worker pool, which it shuts down with the server.
    """
    executor = BoundedExecutor(settings.workers, settings.max_queue)
    limiter = ClientLimiter(settings.max_requests_per_client)
    # As many bodies in memory as admitted places (the bound before bodies were read first),
    # and at least one complete enrolment.
    budget = BodyBudget(
        max(
            (settings.workers + settings.max_queue) * settings.max_upload_bytes,
            settings.enrol_body_limit,
        )
    )
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: Starlette):  # type: ignore[no-untyped-def]
        yield
        executor.shutdown()

    async def handle(
        endpoint: str,
        request: Request,
        check: Callable[[], Awaitable[int]],
        make_job: Callable[[bytes], Job],
    ) -> JSONResponse:
        """Run ``check`` (headers; returns the body limit), read the body within its deadline,
        then admit the request and run ``make_job(body)`` on the pool; count the outcome and
        turn every failure into a JSON error. Nothing is admitted before its body is here."""
        start = time.perf_counter()
        client = request.client.host if request.client else "unknown"
        try:
            limit = await check()
            with limiter.hold(client), budget.reserve() as take:
                data = await _read_body(request, limit, settings.body_timeout_s, take)
                with executor.admit() as slot:
                    body = await slot.run(make_job(data))
        except TooManyFromClient as exc:
            metrics.observe(endpoint, "client_limit")
            return _error(429, str(exc), headers={"Retry-After": "1"})
        except Overloaded as exc:
            metrics.observe(endpoint, "busy")
            return _error(503, str(exc), headers={"Retry-After": "1"})
        except ClientDisconnect:
            # Nobody is left to read an answer; an expected event, not an error.
            metrics.observe(endpoint, "disconnected", time.perf_counter() - start)
            log.info("%s: client disconnected before sending its request", endpoint)
            return _error(400, "client disconnected")
        except Exception as exc:  # noqa: BLE001 - a request must never take the kiosk down
            failure = _classify(exc)
            if failure.status >= 500:
                if failure.traceback:
                    log.exception("%s failed: %s", endpoint, failure.detail)
                else:
                    log.error("%s failed: %s", endpoint, failure.detail)
            _release_frames(exc)
            metrics.observe(endpoint, failure.outcome, time.perf_counter() - start)
            return _error(failure.status, failure.message, headers=failure.headers)
        metrics.observe(endpoint, body.pop("_outcome"), time.perf_counter() - start)
        return JSONResponse(body)

    def acquire(data: bytes, use_device: bool) -> np.ndarray:
        """Decode an upload or take a capture from the configured scanner."""
        if use_device:
            if settings.capture is None:
                raise ApiError(400, "no scanner is attached to this kiosk", "bad_request")
            return settings.capture.capture()
        if not settings.allow_upload:
            raise ApiError(
                400, "uploads are disabled on this kiosk; use the scanner", "bad_request"
            )
        return decode_image(data, name="upload", max_pixels=settings.max_pixels)

    async def index(_: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return _error(404, "not found")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    async def config(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "upload": settings.allow_upload,
                "scanner": settings.capture.name if settings.capture else None,
                "operator": settings.operator is not None,
                "result_timeout_s": settings.result_timeout_s,
                "max_enrol_images": settings.max_enrol_images,
            }
        )

    def is_operator(request: Request) -> bool:
        """The request carries the operator token (wrong tokens are throttled per client)."""
        return settings.operator is not None and settings.operator.check(
            request.headers.get("X-Operator-Token"),
            request.client.host if request.client else "unknown",
        )

    async def verify(request: Request) -> JSONResponse:
        claimed = (request.query_params.get("user_id") or "").strip() or None
        device = request.query_params.get("source", "upload") == "device"
        detailed = False

        async def check() -> int:
            nonlocal detailed
            _require_same_origin(request)
            _require_content_type(request, UPLOAD_TYPES, images=True, required=not device)
            detailed = is_operator(request)
            return settings.max_upload_bytes

        def make_job(data: bytes) -> Job:
            def job() -> dict[str, Any]:
                rgb = acquire(data, device)
                decision = service.verify(rgb, claimed)
                _debug_save(settings.debug_save_dir, rgb, decision.overlay)
                return _decision_body(decision, detailed=detailed)

            return job

        return await handle("verify", request, check, make_job)

    async def enrol(request: Request) -> JSONResponse:
        async def check() -> int:
            _require_same_origin(request)
            if settings.operator is None:
                raise ApiError(
                    403, "enrolment is disabled: no operator token configured", "forbidden"
                )
            _require_content_type(request, JSON_TYPES, images=False, required=True)
            if not is_operator(request):
                raise ApiError(401, "operator token missing or wrong", "unauthorised")
            return settings.enrol_body_limit

        def make_job(raw: bytes) -> Job:
            def job() -> dict[str, Any]:
                user_id, encoded, scans = _parse_enrol(raw, settings.max_enrol_images)
                if scans:
                    images = [acquire(b"", True) for _ in range(scans)]
                else:
                    images = [acquire(data, False) for data in encoded]
                kept = service.enroll(user_id, images)
                return {"_outcome": "enrolled", "user_id": user_id, "references": kept}

            return job

        return await handle("enrol", request, check, make_job)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "backend": service.name,
                "in_flight": executor.in_flight,
                "workers": executor.workers,
                "max_queue": executor.max_queue,
            }
        )

    async def metrics_text(_: Request) -> PlainTextResponse:
        gauges = {
            "in_flight": float(executor.in_flight),
            "capacity": float(executor.workers + executor.max_queue),
        }
        return PlainTextResponse(metrics.render(gauges))

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", static),
            Route("/api/config", config),
            Route("/api/verify", verify, methods=["POST"]),
            Route("/api/enrol", enrol, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics_text),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        ],
        lifespan=lifespan,
    )
    app.state.executor = executor
    app.state.metrics = metrics
    return app


STATIC_FILES = {
    "kiosk.js": "text/javascript",
    "kiosk.css": "text/css",
}


def _release_frames(exc: BaseException) -> None:
    """Free the locals of the frames a failed job's traceback holds (the decoded photograph).

    An exception that crossed from the worker thread through an asyncio future sits in a
    reference cycle (future → exception → traceback → ``Future.result`` frame → future), so
    without this the refused photograph stays resident until the cyclic collector runs,
    typically during the next request: tens of MB after a large refused upload.
    """
    traceback.clear_frames(exc.__traceback__)


@dataclass(frozen=True)
class _Failure:
    """How a failed request is answered: status, one-line message, metrics outcome, and
    what the log gets (``detail``; ``traceback`` only for internal errors, i.e. bugs)."""

    status: int
    message: str
    outcome: str
    detail: str = ""
    traceback: bool = False
    headers: dict[str, str] | None = None


#: Answers of the 5xx categories. The page is public: it gets the category, never the
#: driver's message, a path or a traceback; the log gets the translated one-line message.
_INTERNAL = "internal error; the operator has been notified in the log"
_STORE_UNAVAILABLE = "the template store is unavailable; try again later"
_STORED_DATA = "stored data is corrupt or of an unsupported version; the operator has been notified"


def _classify(exc: Exception) -> _Failure:
    """Answer to any exception a request raised, through the error contract.

    :class:`ApiError` carries its own status. Anything else goes through
    :func:`biometrics.errors.translate` (so Pillow, OpenCV, ONNX Runtime or SQLAlchemy errors
    from the backend get their category) and maps category → status: invalid input and
    configuration 400, failure to acquire 422, store unavailable 503 (with ``Retry-After``),
    unsupported or corrupt stored data 500, internal 500.
    """
    if isinstance(exc, ApiError):
        return _Failure(exc.status, str(exc), exc.outcome)
    error = translate(exc)
    detail = " ".join(str(error).split())
    if isinstance(error, FailureToAcquire):
        return _Failure(422, str(error), "fta")
    if isinstance(error, InputError):  # includes ConfigurationError, MissingExtra
        return _Failure(400, str(error), "bad_request")
    if isinstance(error, StoredDataError):
        return _Failure(500, _STORED_DATA, "stored_data", detail)
    if isinstance(error, StoreError):
        return _Failure(
            503, _STORE_UNAVAILABLE, "store_unavailable", detail, headers={"Retry-After": "5"}
        )
    return _Failure(500, _INTERNAL, "error", detail, traceback=True)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


def _require_same_origin(request: Request) -> None:
    """Refuse (403) a request that a browser says comes from another origin.

    ``Origin`` must name this very host (the ``Host`` header, already checked against the
    allowed hosts) and ``Sec-Fetch-Site`` must be same-origin or none (typed by the user).
    A client that sends neither is not a browser page (curl, a script) and is let through:
    browsers add ``Origin`` to every cross-origin POST.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in SAME_SITE_FETCH:
        raise ApiError(403, f"cross-origin request refused ({fetch_site})", "foreign_origin")
    origin = request.headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    host = request.headers.get("host", "").lower()
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
        raise ApiError(
            403, "cross-origin request refused (Origin is not this kiosk)", "foreign_origin"
        )


def _require_content_type(
    request: Request, allowed: frozenset[str], *, images: bool, required: bool
) -> None:
    """Refuse (415) a body of another type than the page sends; ``images`` admits image/*."""
    declared = request.headers.get("content-type")
    if declared is None and not required:
        return
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind in allowed or (images and kind.startswith("image/")):
        return
    expected = " or ".join(sorted(allowed | ({"image/*"} if images else set())))
    raise ApiError(
        415, f"content type {kind or '(none)'} not accepted; send {expected}", "bad_content_type"
    )


async def _read_body(
    request: Request, limit: int, timeout_s: float, take: Callable[[int], None]
) -> bytes:
    """Read the request body into memory within ``timeout_s`` (408), refusing more than
    ``limit`` bytes early (413); ``take`` charges every chunk to the shared body budget.

    Reading the raw body (rather than a multipart form) keeps the photograph in memory:
    multipart parsers spool large parts to temporary files on disk.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request larger than {limit} bytes", "too_large")

    async def read() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request larger than {limit} bytes", "too_large")
            take(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(
            408, f"request body not received within {timeout_s:g} s", "slow_body"
        ) from None


def _parse_enrol(raw: bytes, max_images: int) -> tuple[str, list[bytes], int]:
    """Validate ``{"user_id": str, "images": [base64, ...]}`` or ``{"user_id", "scans": n}``."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "enrolment body must be JSON", "bad_request") from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        raise ApiError(400, "enrolment body is nested too deeply", "bad_request") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("user_id"), str):
        raise ApiError(400, "enrolment needs a user_id", "bad_request")
    user_id = payload["user_id"].strip()
    images = payload.get("images") or []
    scans = payload.get("scans") or 0
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ApiError(400, "images must be a list of base64 strings", "bad_request")
    if not isinstance(scans, int) or scans < 0:
        raise ApiError(400, "scans must be a non-negative integer", "bad_request")
    count = scans or len(images)
    if not 1 <= count <= max_images or (scans and images):
        raise ApiError(400, f"give 1 to {max_images} images or scans, not both", "bad_request")
    try:
        decoded = [base64.b64decode(i.split(",", 1)[-1], validate=True) for i in images]
    except (binascii.Error, ValueError):
        raise ApiError(400, "an image is not valid base64", "bad_request") from None
    return user_id, decoded, scans


def _decision_body(decision: KioskOutcome, *, detailed: bool) -> dict[str, Any]:
    """The JSON the page gets. Scores go only to the operator: a public score would let an
    attacker hill-climb a synthetic probe towards someone's template."""
    body: dict[str, Any] = {
        "_outcome": decision.reason,
        "decision": "accepted" if decision.accepted else "rejected",
        "mode": decision.mode,
        "user_id": decision.user_id if decision.accepted or decision.mode == "1:1" else None,
        "overlay_png": _png_data_uri(decision.overlay) if decision.overlay is not None else None,
    }
    if detailed:
        body.update(
            score=round(decision.score, 4),
            threshold=decision.threshold,
            reason=decision.reason,
            timings_ms=decision.timings_ms,
        )
    return body


def _png_data_uri(rgb: np.ndarray) -> str:
    """Downscale to :data:`OVERLAY_MAX_SIDE` and encode as an inline PNG data URI."""
    scale = OVERLAY_MAX_SIDE / max(rgb.shape[:2])
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    png = encode_image(rgb, ".png")  # the one overlay encoder, shared with retauth inspect
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _debug_save(folder: Path | None, probe: np.ndarray, overlay: np.ndarray | None) -> None:
    """Write the probe (and overlay) to ``folder``; only with ``--debug-save-images``."""
    if folder is None:
        return
    stem = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    cv2.imwrite(f"{stem}-probe.png", cv2.cvtColor(probe, cv2.COLOR_RGB2BGR))
    if overlay is not None:
        cv2.imwrite(f"{stem}-overlay.png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
