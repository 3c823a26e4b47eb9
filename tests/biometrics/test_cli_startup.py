"""Start-up of a one-shot command (issue 16: ``retauth verify`` wall time): it builds and
imports only its own command module, and the whole tree stays what ``--help`` lists."""

from __future__ import annotations

import subprocess
import sys

from typer.main import get_command

import biometrics.cli as cli


def test_every_command_is_registered_by_the_module_main_builds_for_it():
    assert set(get_command(cli.app).commands) == set(cli._MODULE_OF)
    for name, module in cli._MODULE_OF.items():
        assert name in get_command(cli._build((module,))).commands, (name, module)


#: Runs ``retauth verify --help`` through the console-script entry point; when it exits,
#: prints the modules the process had imported.
_LIST_MODULES = """
import os, sys
exit_now = os._exit
def report(code):
    print("MODULES", *sorted(sys.modules))
    sys.stdout.flush()
    exit_now(code)
os._exit = report
sys.argv = ["retauth", "verify", "--help"]
from biometrics.cli import main
main()
"""


def test_verify_imports_no_other_command_module():
    proc = subprocess.run([sys.executable, "-c", _LIST_MODULES], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "Verify a probe against USER" in proc.stdout
    imported = set(proc.stdout.rsplit("MODULES", 1)[1].split())
    assert "biometrics.cli.identity" in imported
    # cli.db also defines the store options (--db, --key-file) that identity's commands share
    others = {f"biometrics.cli.{m}" for m in cli._MODULES if m not in ("identity", "db")}
    assert not others & imported, sorted(others & imported)
