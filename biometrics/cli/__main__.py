"""``python -m biometrics.cli``: the same as the ``retauth`` command (and named so in help)."""

from biometrics.cli import main

main(prog_name="retauth")
