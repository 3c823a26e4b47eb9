"""``python -m biometrics.cli``: the same as the ``retauth`` command."""

from biometrics.cli import main

main()
