"""End-to-end evaluation runs with toy templates (vectors) and a cosine matcher.

The toy data set is a folder of small text files "identity capture"; the fake extractor
turns each into an identity vector plus capture noise, so genuine pairs score near 1 and
impostors near 0.5, and the fake matcher is a module-level (picklable) function like the
real :func:`matching.compare`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biometrics.errors import FailureToAcquire, InputError
from matching import evaluation
from matching.evaluation import Scheduler, evaluate, read_four_column, split_four_column
from matching.protocols import captures_from_pattern, design

PATTERN = r"(?P<identity>\d+)_(?P<capture>\d+)\.txt"
DIM = 64


@dataclass(frozen=True)
class Vec:
    values: tuple[float, ...]

    def to_bytes(self) -> bytes:
        return np.asarray(self.values, "<f8").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Vec:
        return cls(tuple(np.frombuffer(blob, "<f8")))


def fake_extract(path: Path) -> Vec:
    text = Path(path).read_text()
    if text == "bad":
        raise FailureToAcquire("capture too poor")
    identity, capture = map(int, text.split())
    base = np.random.default_rng(identity).normal(size=DIM)
    noise = np.random.default_rng(1000 * identity + capture).normal(size=DIM)
    return Vec(tuple(base + 0.3 * noise))


def cosine(a: Vec, b: Vec) -> float:
    x, y = np.asarray(a.values), np.asarray(b.values)
    return float((1 + x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) / 2)


def _dataset(folder: Path, identities: int = 4, captures: int = 3, bad=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, identities + 1):
        for c in range(1, captures + 1):
            text = "bad" if (n, c) in bad else f"{n} {c}"
            (folder / f"{n}_{c}.txt").write_text(text)
    return folder


def _run(tmp_path, protocol="all-pairs", bad=(), **kwargs):
    captures = captures_from_pattern(_dataset(tmp_path / "data", bad=bad), PATTERN)
    kwargs.setdefault("make_plots", False)
    result = evaluate(
        captures,
        protocol,
        fake_extract,
        cosine,
        tmp_path / "out",
        threshold=0.8,
        progress=False,
        n_resamples=50,
        **kwargs,
    )
    return captures, result


def test_all_pairs_end_to_end(tmp_path):
    _, result = _run(tmp_path, make_plots=True)
    s = result.summary
    assert s["comparisons"] == {"genuine": 12, "impostor": 54, "not_made": 0}
    assert s["eer"]["rate"] == 0.0 and s["eer"]["ci95"] == [0.0, 0.0]
    assert s["identification"]["rank1"] == 1.0 and s["identification"]["probes"] == 12
    assert s["at_threshold"]["fmr"] == 0.0 and s["at_threshold"]["fnmr"] == 0.0
    assert s["failures"]["fta"] == 0.0 and s["failures"]["fte"] == 0.0
    lines = (tmp_path / "out" / "scores.txt").read_text().splitlines()
    assert len(lines) == 66 and lines[0].split()[:3] == ["1", "1", "1_2.txt"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["eer"] == s["eer"]
    for name in ("det", "histogram"):
        assert result.files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failure_to_acquire_is_counted_not_raised(tmp_path):
    _, result = _run(tmp_path, bad={(2, 3)})
    s = result.summary
    assert s["failures"]["fta"] == pytest.approx(1 / 12)
    assert s["failures"]["fte"] == 0.0  # identity 2 still has two usable captures
    assert s["failures"]["failed_captures"] == {"2_3.txt": "capture too poor"}
    assert s["comparisons"]["not_made"] == 11
    assert s["comparisons"]["genuine"] + s["comparisons"]["impostor"] == 55
    assert s["identification"]["probes"] == 11


def test_failed_enrolment_capture_is_an_fte(tmp_path):
    _, result = _run(tmp_path, protocol="enrol-first", bad={(2, 1)})
    s = result.summary
    assert s["failures"]["fte"] == pytest.approx(1 / 4)
    # Identity 2's probes cannot be identified: left out of rank-1, counted in FRR.
    assert s["identification"]["probes"] == 6
    assert s["at_threshold"]["frr"] == pytest.approx(0.25 + 0.75 * (1 / 12))


def test_templates_are_cached_by_content(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _run(tmp_path, bad={(1, 1)}, cache_dir=cache, decode=Vec.from_bytes)
    assert len(list(cache.glob("*.tpl"))) == 11 and len(list(cache.glob("*.fta"))) == 1

    def must_not_run(path):
        raise AssertionError("extraction repeated despite the cache")

    monkeypatch.setattr(sys.modules[__name__], "fake_extract", must_not_run)
    _, again = _run(tmp_path, bad={(1, 1)}, cache_dir=cache, decode=Vec.from_bytes)
    assert again.summary["failures"]["fta"] == pytest.approx(1 / 12)


def test_score_file_round_trip(tmp_path):
    path = tmp_path / "scores.txt"
    scores = [0.1, 1 / 3, 0.9999999999999999]
    evaluation.write_four_column(path, ["a", "a", "b"], ["a", "b", "b"], ["x", "y", "z"], scores)
    data = read_four_column(path)
    assert data.scores.tolist() == scores  # bit-exact
    assert data.genuine.tolist() == [True, False, True]
    impostor, genuine = split_four_column(path)
    assert impostor.tolist() == [1 / 3] and genuine.tolist() == [0.1, 0.9999999999999999]
    path.write_text("a b x\n")
    with pytest.raises(InputError, match="line 1"):
        read_four_column(path)
    with pytest.raises(InputError, match="spaces"):
        evaluation.write_four_column(path, ["a b"], ["a"], ["x"], [0.5])


def test_process_pool_gives_the_serial_scores(tmp_path):
    captures = captures_from_pattern(_dataset(tmp_path), PATTERN)
    templates = [fake_extract(c.path) for c in captures]
    pairs = design(captures, "all-pairs").pairs
    serial = evaluation.compare_pairs(templates, pairs, cosine, progress=False)
    pooled = evaluation.compare_pairs(
        templates, pairs, cosine, scheduler=Scheduler(workers=2), progress=False
    )
    np.testing.assert_array_equal(serial, pooled)
    assert not np.isnan(serial).any()


def test_dask_cluster_gives_the_serial_scores(tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="dask[distributed] (the 'dist' extra) is not installed"
    )
    captures = captures_from_pattern(_dataset(tmp_path), PATTERN)
    templates = [fake_extract(c.path) for c in captures]
    pairs = design(captures, "all-pairs").pairs
    serial = evaluation.compare_pairs(templates, pairs, cosine, progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        on_dask = evaluation.compare_pairs(
            templates,
            pairs,
            cosine,
            scheduler=Scheduler(address=cluster.scheduler_address),
            progress=False,
        )
    np.testing.assert_array_equal(serial, on_dask)


def test_missing_dask_is_a_clear_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match="'dist' extra"):
        evaluation.compare_pairs(
            [Vec((1.0,)), Vec((1.0,))], np.array([[0, 1]]), cosine, scheduler=Scheduler(dask=True)
        )


def test_same_group_impostors_are_reported_separately(tmp_path):
    captures = captures_from_pattern(_dataset(tmp_path / "data", identities=4, captures=2), PATTERN)
    grouped = [
        type(c)(c.path, c.key, c.identity, c.capture, str((int(c.identity) + 1) // 2))
        for c in captures
    ]
    result = evaluate(
        grouped,
        "all-pairs",
        fake_extract,
        cosine,
        tmp_path / "out",
        threshold=0.8,
        progress=False,
        make_plots=False,
        n_resamples=10,
    )
    # Identities (1,2) and (3,4) share a group: 2 groups x 2x2 capture pairs = 8 impostors.
    assert result.summary["same_group_impostors"]["count"] == 8


def test_cli_json_exit_code_zero(tmp_path, monkeypatch):
    import biometrics.pipeline
    import matching
    from biometrics.cli import app

    class FakePipeline:
        def __init__(self, settings):
            self.extract_file = fake_extract

    monkeypatch.setattr(biometrics.pipeline, "Pipeline", FakePipeline)
    monkeypatch.setattr(matching, "compare", cosine)
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "none.toml"))
    data = _dataset(tmp_path / "data")
    args = ["evaluate", str(data), "--pattern", PATTERN, "--out", str(tmp_path / "out")]
    args += ["--workers", "1", "--no-cache", "--resamples", "20", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["identification"]["rank1"] == 1.0
    assert (tmp_path / "out" / "all-pairs" / "det.png").is_file()  # one folder per protocol

    missing = tmp_path / "nowhere"
    bad = CliRunner().invoke(app, ["evaluate", str(missing), "--json"])
    assert bad.exit_code == 2 and f"data folder {missing} (from command line)" in bad.stdout
