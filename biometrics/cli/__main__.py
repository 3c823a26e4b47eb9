"""``python -m biometrics.cli``: the same as the ``retauth`` command (and named so in help)."""

import sys

from biometrics.cli import main

sys.argv[0] = "retauth"
main()
