"""``retauth kiosk``: serve the touch-screen page and JSON API on loopback (extra ``kiosk``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from biometrics.cli.common import console, errors_to_exit_codes, line, note
from biometrics.cli.db import DbOpt, KeyFileOpt, announce_new_key, store_settings
from biometrics.errors import InputError
from biometrics.extras import available_backends, require

#: The kiosk never runs the torch reference backend (it would not fit its memory budget).
_KIOSK_BACKENDS = ", ".join(b for b in available_backends() if b != "torch")


def kiosk(
    host: Annotated[str, typer.Option(help="Address to bind; keep loopback on a kiosk.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    backend: Annotated[
        str | None,
        typer.Option(help=f"Segmenter: {_KIOSK_BACKENDS} [env RETAUTH_BACKEND]."),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="ONNX model or compiled TVM artefact [env RETAUTH_WEIGHTS].")
    ] = None,
    operator_token_file: Annotated[
        Path | None,
        typer.Option(
            help="File (mode 0600) holding the operator token; else env RETAUTH_OPERATOR_TOKEN. "
            "Without either, enrolment is disabled."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Requests processed at once (each adds one request's memory to the peak)."
        ),
    ] = 1,
    max_queue: Annotated[
        int, typer.Option(min=0, help="Requests allowed to wait; more are answered 503.")
    ] = 4,
    camera: Annotated[
        int | None, typer.Option(help="OpenCV camera index offered as the scanner.")
    ] = None,
    watch_folder: Annotated[
        Path | None, typer.Option(help="Folder a scanner writes captures to (newest fresh file).")
    ] = None,
    upload: Annotated[
        bool, typer.Option("--upload/--no-upload", help="Accept photographs uploaded by the page.")
    ] = True,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest uploaded image in pixels (checked before decoding).")
    ] = 9_000_000,
    low_memory: Annotated[
        bool | None,
        typer.Option(
            "--low-memory/--no-low-memory",
            help="Give segmentation memory back to the system after each request "
            "(ONNX Runtime; peak RSS ~200 MB instead of ~450 MB). Default: on, unless "
            "RETAUTH_LOW_MEMORY or the config file says otherwise.",
            show_default=False,
        ),
    ] = None,
    debug_save_images: Annotated[
        Path | None,
        typer.Option(help="DEBUG ONLY: write every probe and overlay as PNG to this folder."),
    ] = None,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
) -> None:
    """Serve the kiosk page and API. The model and the store are loaded once, before serving."""
    with errors_to_exit_codes():
        require("retauth kiosk", "uvicorn", "starlette")
        import uvicorn

        from biometrics.kiosk.app import KioskSettings, create_app
        from biometrics.kiosk.capture import CameraSource, FolderSource
        from biometrics.kiosk.library import load_backend
        from biometrics.kiosk.operator import OperatorGate, load_operator_token
        from enrollment.private import make_private_dirs

        if camera is not None and watch_folder is not None:
            raise InputError("choose --camera or --watch-folder, not both")
        if not upload and camera is None and watch_folder is None:
            raise InputError("--no-upload needs --camera or --watch-folder")
        if debug_save_images is not None:
            make_private_dirs(debug_save_images)  # probes are biometric data: 0700 folders
            note(f"DEBUG: saving every probe to {debug_save_images}")
        if not _is_loopback(host):
            note(f"serving on {host}: the operator token travels unencrypted")
        # Low-memory mode is the kiosk's default, but below the environment and the config
        # file: RETAUTH_LOW_MEMORY=0 must win over a default nobody typed.
        settings = store_settings(
            db,
            key_file,
            backend=backend,
            weights=weights,
            low_memory=low_memory,
            defaults={"low_memory": True},
        )
        token = load_operator_token(operator_token_file, settings)
        capture = (
            CameraSource(camera)
            if camera is not None
            else FolderSource(watch_folder, max_pixels=max_pixels)
            if watch_folder is not None
            else None
        )
        with announce_new_key(settings):
            service = load_backend(settings)
        settings_kiosk = KioskSettings(
            workers=workers,
            max_queue=max_queue,
            operator=OperatorGate(token) if token else None,
            capture=capture,
            allow_upload=upload,
            max_pixels=max_pixels,
            debug_save_dir=debug_save_images,
            allowed_hosts=("127.0.0.1", "localhost", "[::1]", host),
        )
        console.print(
            line(
                "retauth kiosk on http://{host}:{port}/  backend={backend}  "
                "workers={workers} queue={queue}  enrolment={enrolment}",
                host=host,
                port=port,
                backend=service.name,
                workers=workers,
                queue=max_queue,
                enrolment="on" if token else "off",
            )
        )
        uvicorn.run(
            create_app(service, settings_kiosk),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,  # the query string carries user ids
            # A second, cruder bound below the app's own queue: cheap endpoints still answer.
            limit_concurrency=workers + max_queue + 16,
        )
        service.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    app.command("kiosk")(kiosk)
