"""``retauth enroll``, ``verify``, ``inspect`` and ``demo``: the commands a user runs daily."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from biometrics.cli.common import (
    Exit,
    console,
    emit,
    errors_to_exit_codes,
    line,
    native_stderr_silenced,
)
from biometrics.cli.db import DbOpt, JsonOpt, KeyFileOpt, announce_new_key, store_settings
from biometrics.errors import InputError
from biometrics.extras import available_backends, require_backend

#: Only the backends that can load in this installation are offered (torch and TVM are
#: extras); asking for another one anyway says which extra to install.
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help=f"Segmenter: {', '.join(available_backends())} [env RETAUTH_BACKEND].",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="Model file for the chosen backend [env RETAUTH_WEIGHTS]."),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="Accept when score >= threshold, in [0, 1] [env RETAUTH_THRESHOLD].",
    ),
]


def _service(db, key_file, backend, weights, threshold):
    from biometrics.service import AuthService

    settings = store_settings(db, key_file, backend=backend, weights=weights, threshold=threshold)
    with announce_new_key(settings):
        return AuthService(settings)


def _service_and_analysis(settings, rgb, user):
    """The service, ready for a claim about ``user`` (None: 1:N), and the probe's analysis,
    prepared side by side.

    A verification in a fresh process spends most of its wall time on start-up work whose two
    halves do not depend on each other: loading the segmenter and analysing the probe (ONNX
    Runtime and OpenCV, which release the GIL while they compute), and importing and opening
    the store, then loading the claimed id's references (SQLAlchemy, Python-bound). The first
    half runs in a worker thread while this thread does the second. Store errors take
    precedence over the probe's, as they did when the two ran one after the other, except
    that a bad request (exit 2) is reported before a missing store (exit 3).
    """
    from concurrent.futures import ThreadPoolExecutor

    # What the worker would refuse in one line is refused before the store is opened (which
    # may create it): a missing extra or a model file that is not there.
    require_backend(settings.backend)
    if settings.weights and not Path(settings.weights).exists():
        raise InputError(f"--weights {settings.weights}: no such file or folder")

    def analyse():
        from biometrics.pipeline import Pipeline

        pipeline = Pipeline(settings)
        analysis = pipeline.analyse(rgb)
        analysis.features.quality.require()
        return pipeline, analysis

    with ThreadPoolExecutor(1, thread_name_prefix="retauth-analyse") as pool:
        job = pool.submit(analyse)
        from biometrics.service import AuthService, open_engine
        from enrollment import TemplateStore

        # Verification only reads: in an empty home it fails (exit 3) and creates nothing,
        # unless the request itself is bad (exit 2), which is said first.
        try:
            store = TemplateStore.open(settings, create=False)
        except BaseException:
            if isinstance(job.exception(), InputError):
                job.result()
            raise
        try:
            engine = open_engine(store, settings)
            engine.prepare(user)
            pipeline, analysis = job.result()
        except BaseException:
            store.close()
            raise
    return AuthService(settings, pipeline=pipeline, engine=engine), analysis


def _read(paths: list[Path]):
    from segmentation.imageio import read_image

    with native_stderr_silenced():  # libpng/libjpeg warnings would add stray stderr lines
        return [read_image(p) for p in paths]


def enroll(
    user: Annotated[str, typer.Option("--user", help="Identity to enrol.")],
    images: Annotated[list[Path], typer.Argument(help="One or more captures of the eye.")],
    replace: Annotated[bool, typer.Option(help="Replace an existing enrolment.")] = False,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    backend: BackendOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enrol USER from one or more fundus photographs of the same eye."""
    with errors_to_exit_codes(as_json=as_json):
        start = time.perf_counter()
        rgbs = _read(images)
        service = _service(db, key_file, backend, weights, None)
        try:
            n = service.enroll(user, rgbs, replace=replace)
        finally:
            service.close()
        ms = (time.perf_counter() - start) * 1e3
    emit(
        {"ok": True, "user": user, "templates": n, "time_ms": round(ms, 1)},
        line(
            "[green]enrolled[/] {user} ({n} capture{s}, {ms:.0f} ms)",
            user=user,
            n=n,
            s="s" if n > 1 else "",
            ms=ms,
        ),
        as_json=as_json,
    )


def verify(
    image: Annotated[Path, typer.Argument(help="Probe photograph.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Claimed identity (1:1); omit for 1:N.")
    ] = None,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    backend: BackendOpt = None,
    weights: WeightsOpt = None,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a probe against USER (1:1), or identify it among everyone enrolled (1:N).

    Exit code 0 = accepted, 1 = rejected, 2 = bad input, 3 = store/internal error.
    """
    with errors_to_exit_codes(as_json=as_json):
        start = time.perf_counter()
        (rgb,) = _read([image])  # a bad image is refused before the store is touched
        settings = store_settings(
            db, key_file, backend=backend, weights=weights, threshold=threshold
        )
        service, analysis = _service_and_analysis(settings, rgb, user)
        try:
            decision = service.decide(analysis, user)
        finally:
            service.close()
        ms = (time.perf_counter() - start) * 1e3
    result = decision.as_dict() | {"ok": True, "time_ms": round(ms, 1)}
    if decision.mode == "1:1":
        verdict = "[green]ACCEPT[/] {who}" if decision.accepted else "[red]REJECT[/] {who}"
        who = user
    else:
        verdict = "[green]MATCH[/] {who}" if decision.accepted else "[red]no match[/]"
        who = decision.user_id
    human = line(
        verdict + "  score {score:.3f}, threshold {threshold:.3f}, {ms:.0f} ms",
        who=who,
        score=decision.score,
        threshold=decision.threshold,
        ms=ms,
    )
    emit(result, human, as_json=as_json, code=Exit.OK if decision.accepted else Exit.REJECTED)


def inspect(
    image: Annotated[Path, typer.Argument(help="Photograph to analyse.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the overlay here (.png or .jpg; the folder must exist)."),
    ] = None,
    backend: BackendOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what the pipeline sees: vessels, centreline, junctions, optic disc and quality."""
    with errors_to_exit_codes(as_json=as_json):
        from biometrics.overlay import encode_image, render_overlay
        from biometrics.pipeline import Pipeline
        from biometrics.settings import load_settings

        if out is not None:
            _check_out(out)
        (rgb,) = _read([image])
        pipeline = Pipeline(load_settings(backend=backend, weights=weights))
        analysis = pipeline.analyse(rgb)
        features = analysis.features
        if out is not None:
            overlay = render_overlay(analysis.canonical.rgb, features, endpoints=True)
            try:
                out.write_bytes(encode_image(overlay, out.suffix))
            except OSError as exc:
                raise InputError(f"cannot write {out}: {exc.strerror}") from None
    q = features.quality
    result = {
        "ok": q.ok,
        "counts": features.template.counts,
        "template_bytes": len(features.template.to_bytes()),
        "disc": {"x": features.disc.x, "y": features.disc.y, "side": features.disc.side},
        "quality": q.as_dict(),
        "segmenter": pipeline.segmenter.name,
        "timings_ms": {k: round(v, 1) for k, v in analysis.timings_ms.items()},
        "overlay": str(out) if out else None,
    }
    c = features.template.counts
    human = line(
        "{b} bifurcations, {x} crossovers, {e} endpoints; {side} eye; vessels {v:.1%} of FOV; "
        + ("quality ok" if q.ok else "[red]refused[/]: {reason}")
        + ("; overlay → {out}" if out else ""),
        b=c["bifurcation"],
        x=c["crossover"],
        e=c["endpoint"],
        side=features.disc.side,
        v=q.vessel_fraction,
        reason=q.reasons[0] if q.reasons else "",
        out=out,
    )
    emit(result, human, as_json=as_json, code=Exit.OK if q.ok else Exit.BAD_INPUT)


def _check_out(out: Path) -> None:
    """Refuse an overlay path before the pipeline runs, naming what is wrong with it.

    The folder is not created: a typo in it would otherwise scatter files silently.
    """
    from biometrics.overlay import IMAGE_SUFFIXES

    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"--out {out}: the file name must end in .png or .jpg")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"--out {out}: folder {folder} does not exist")


def demo(
    backend: BackendOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enrol a bundled eye, then verify a genuine and an impostor capture (temporary store)."""
    with errors_to_exit_codes(as_json=as_json):
        from biometrics.demo import run_demo

        run = run_demo(backend, weights)  # a temporary key: nothing to announce
    if as_json:
        print(
            json.dumps(
                {
                    "ok": run.ok,
                    "segmenter": run.segmenter,
                    "steps": [
                        {
                            "step": s.label.strip(),
                            **(s.decision.as_dict() if s.decision else {}),
                            "time_ms": round(s.ms, 1),
                        }
                        for s in run.steps
                    ],
                }
            )
        )
    else:
        console.print(f"segmenter: {run.segmenter}")
        for s in run.steps:
            d = s.decision
            if d is None:
                console.print(f"{s.label}  [green]enrolled[/]  ({s.ms:.0f} ms)")
                continue
            verdict = "[green]ACCEPT[/]" if d.accepted else "[red]REJECT[/]"
            who = " → {who}" if d.mode == "1:N" and d.user_id else ""
            console.print(
                line(
                    "{label}  " + verdict + who + "  score {score:.3f} "
                    "(threshold {threshold:.2f}, {ms:.0f} ms)",
                    label=s.label,
                    who=d.user_id,
                    score=d.score,
                    threshold=d.threshold,
                    ms=s.ms,
                )
            )
        console.print(
            "[green]demo passed[/]" if run.ok else "[red]demo gave unexpected decisions[/]"
        )
    raise typer.Exit(int(Exit.OK if run.ok else Exit.INTERNAL))


def register(app: typer.Typer) -> None:
    app.command()(enroll)
    app.command()(verify)
    app.command()(inspect)
    app.command()(demo)
