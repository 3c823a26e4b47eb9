"""Drive the kiosk page in headless Chromium against a live server on 127.0.0.1.

The server runs the real backend (AuthService with the default segmenter, encrypted store in a
temp ``RETAUTH_HOME``) on the demo captures shipped in ``biometrics/samples``, so the page
shows a real decision and vessel overlay.

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright``;
Playwright's own browser download is not used. Skipped, with the reason, when either is
missing. Set ``RETAUTH_KIOSK_SCREENSHOT=docs/kiosk.png`` to keep the result-page screenshot.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the kiosk extra is not installed: pip install 'retauth[kiosk]'"
)

import uvicorn

from biometrics.kiosk.app import KioskSettings, create_app
from biometrics.kiosk.library import LibraryBackend
from biometrics.kiosk.operator import OperatorGate, OperatorToken
from biometrics.settings import load_settings
from tests.kiosk.conftest import SAMPLES

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium)"),
]
TOKEN = "operator-token-123"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server on an ephemeral loopback port, in a thread."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETAUTH_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("RETAUTH_CONFIG", raising=False)
        backend = LibraryBackend(load_settings())
    settings = KioskSettings(operator=OperatorGate(OperatorToken(TOKEN)), result_timeout_s=60)
    config = uvicorn.Config(
        create_app(backend, settings), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the kiosk server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    backend.close()


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 600, "height": 660})
        tab.goto(server_url)
        tab.wait_for_selector("body[data-ready='1']")
        yield tab
        browser.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    notes = tmp_path_factory.mktemp("photos") / "notes.txt"
    notes.write_text("not a photograph")
    return {
        "alice-enrol": SAMPLES / "eye_a_1.jpg",
        "alice-enrol-2": SAMPLES / "eye_a_3.jpg",
        "alice-probe": SAMPLES / "eye_a_2.jpg",
        "impostor": SAMPLES / "eye_b_1.jpg",
        "text": notes,
    }


def _verify(page, photo: Path, user_id: str = "") -> str:  # noqa: ANN001 - playwright Page
    page.click("#go-verify")
    page.fill("#verify-id", user_id)
    page.set_input_files("#verify-file", str(photo))
    page.click("#verify-submit")
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    return page.inner_text("#result-banner")


def test_enrol_verify_genuine_and_impostor(page, photos: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    page.click("#go-operator")
    page.fill("#operator-token", TOKEN)
    page.fill("#enrol-id", "alice")
    page.set_input_files("#enrol-files", [str(photos["alice-enrol"]), str(photos["alice-enrol-2"])])
    page.click("#enrol-submit")
    page.wait_for_selector("#operator-message.ok", timeout=30_000)
    assert page.inner_text("#operator-message") == "Enrolled alice (2 references)."
    page.click("#operator .back")
    assert page.input_value("#operator-token") == ""  # the token does not outlive the screen

    assert _verify(page, photos["alice-probe"], "alice") == "Verified: alice"
    assert "ok" in page.get_attribute("#result-banner", "class")
    assert page.get_attribute("#result-overlay", "src").startswith("data:image/png;base64,")
    shot = tmp_path / "kiosk.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000
    if os.environ.get("RETAUTH_KIOSK_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RETAUTH_KIOSK_SCREENSHOT"])
    page.click("#result-done")

    assert _verify(page, photos["impostor"], "alice") == "Not verified"
    assert "fail" in page.get_attribute("#result-banner", "class")
    page.click("#result-done")

    assert _verify(page, photos["alice-probe"]) == "Recognised: alice"
    page.click("#result-done")
    assert _verify(page, photos["impostor"]) == "Not verified"
    assert "alice" not in page.inner_text("body")
    page.click("#result-done")


def test_bad_upload_shows_one_line_error(page, photos: dict[str, Path]) -> None:  # noqa: ANN001
    page.click("#go-verify")
    page.set_input_files("#verify-file", str(photos["text"]))
    page.click("#verify-submit")
    page.wait_for_selector("#verify-error:not(:empty)")
    assert page.inner_text("#verify-error") == "upload: not a recognised image file"
    page.click("#verify .back")
    assert page.is_visible("#home")


def test_wrong_operator_token_is_refused(page, photos: dict[str, Path]) -> None:  # noqa: ANN001
    page.click("#go-operator")
    page.fill("#operator-token", "not-the-token")
    page.fill("#enrol-id", "mallory")
    page.set_input_files("#enrol-files", str(photos["impostor"]))
    page.click("#enrol-submit")
    page.wait_for_selector("#operator-message.fail")
    assert page.inner_text("#operator-message") == "operator token missing or wrong"
    page.click("#operator .back")
