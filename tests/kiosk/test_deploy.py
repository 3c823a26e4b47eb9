"""Static checks of deploy/: the systemd unit verifies, and its security promises hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "retauth-kiosk.service"


def _service_section() -> dict[str, list[str]]:
    """Key → values of [Service] (systemd allows repeated keys, which configparser does not)."""
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().split("[Service]", 1)[1].split("[Install]")[0].splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists; point it at this interpreter.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/retauth/venv/bin/retauth", sys.executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # unknown keys are only warnings


def test_unit_is_hardened_but_reachable_on_loopback() -> None:
    service = _service_section()
    assert service["Restart"] == ["on-failure"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/var/lib/retauth"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["IPAddressAllow"] == ["localhost"] and service["IPAddressDeny"] == ["any"]
    assert "PrivateNetwork" not in service  # the local browser must reach the port
    assert "--host 127.0.0.1" in service["ExecStart"][0]


def test_dockerfile_installs_the_kiosk_extra_without_torch() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert '"retauth[${EXTRAS}]"' in text and "ARG EXTRAS=kiosk" in text
    assert '! python -c "import torch"' in text
    assert "USER retauth" in text
    assert "linux/amd64,linux/arm64" in text
