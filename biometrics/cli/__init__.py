"""The ``retauth`` command line: a thin typer layer over the library.

Each area lives in its own module that exposes ``register(app)``; this module only wires
them together, so ``retauth --help`` lists everything and each module stays small.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="retauth",
    help="Retinal biometric authentication: enrol and verify fundus photographs on-device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from biometrics.cli import identity

    identity.register(app)
    from biometrics.cli import train

    train.register(app)
    from biometrics.cli import evaluate

    evaluate.register(app)
    from biometrics.cli import audit, db, keys, users

    for module in (users, keys, audit, db):
        module.register(app)
    from biometrics.cli import kiosk

    kiosk.register(app)
    from biometrics.cli import compile as compile_cli

    compile_cli.register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()
