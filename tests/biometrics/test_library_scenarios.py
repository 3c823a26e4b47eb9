"""The evaluation runner and the demo scenario are library code (issue 16): scripts call them
without the CLI, and the commands only render what they return."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biometrics.cli import app
from biometrics.demo import DEMO_SAMPLES, sample_images
from biometrics.evaluation import run_evaluation, template_cache
from biometrics.pipeline import Pipeline
from biometrics.settings import load_settings

#: The bundled captures are eye A three times and eye B once.
PATTERN = r"eye_(?P<identity>[ab])_(?P<capture>\d)\.jpg"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("RETAUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("RETAUTH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_bundled_samples_are_the_demo_captures():
    assert set(DEMO_SAMPLES) <= set(sample_images())
    assert all(path.is_file() for path in sample_images().values())


def test_run_evaluation_reports_on_the_real_pipeline_and_reuses_its_templates(env, monkeypatch):
    data = env / "data"
    data.mkdir()
    for path in sample_images().values():
        shutil.copy(path, data / path.name)
    result = run_evaluation(data, env / "out", pattern=PATTERN, resamples=20, progress=False)
    assert result.summary["comparisons"] == {"genuine": 3, "impostor": 3, "not_made": 0}
    assert result.summary["identification"]["rank1"] == 1.0
    assert set(result.files) == {"scores", "summary", "det", "histogram"}
    assert all(path.parent == env / "out" and path.is_file() for path in result.files.values())
    cached = template_cache(load_settings())
    assert cached.parent == env / "cache" / "templates"
    assert len(list(cached.glob("*.tpl"))) == len(sample_images())

    def no_extraction(self, path):
        raise AssertionError(f"{path} extracted again instead of read from the cache")

    # Another protocol into another folder extracts nothing: the cache is the user's.
    monkeypatch.setattr(Pipeline, "extract_file", no_extraction)
    again = run_evaluation(
        data, env / "other", protocol="enrol-first", pattern=PATTERN, resamples=20, progress=False
    )
    assert again.summary["comparisons"] == {"genuine": 2, "impostor": 2, "not_made": 0}


def test_demo_without_its_samples_is_an_internal_error(env, monkeypatch):
    monkeypatch.setattr("biometrics.demo.sample_images", lambda: {})
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"] == "demo samples are missing from this installation"


def test_protected_evaluation_scores_the_protected_domain(env):
    """``retauth evaluate --protected``: the same captures and cache, protected scores, the
    protected threshold; the bundled genuine pairs pass it and the impostors do not."""
    from matching.protected import PROTECTED_THRESHOLD

    data = env / "data"
    data.mkdir()
    for path in sample_images().values():
        shutil.copy(path, data / path.name)
    result = CliRunner().invoke(
        app,
        ["evaluate", str(data), "--pattern", PATTERN, "--out", str(env / "out"), "--protected"]
        + ["--workers", "1", "--resamples", "20", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["protected"] is True
    assert summary["comparisons"] == {"genuine": 3, "impostor": 3, "not_made": 0}
    at = summary["at_threshold"]
    assert at["threshold"] == PROTECTED_THRESHOLD
    assert at["fmr"] == 0.0 and at["fnmr"] == 0.0
