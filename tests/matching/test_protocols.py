"""File→identity mappings and the comparisons each protocol makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biometrics.errors import InputError
from matching.protocols import (
    captures_from_csv,
    captures_from_pattern,
    design,
)


def _ridb_like(folder: Path, identities: int = 10, captures: int = 5) -> Path:
    """Empty files named like RIDB (IM00000C_N.jpg) plus a stray file the pattern skips."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, identities + 1):
        for c in range(1, captures + 1):
            (folder / f"IM{c:06d}_{n}.jpg").write_bytes(b"")
    (folder / "README.txt").write_text("not a capture")
    return folder


def _labels(captures, plan):
    ids = np.array([c.identity for c in captures])
    return ids[plan.pairs[:, 0]] == ids[plan.pairs[:, 1]]


def test_ridb_pattern_gives_100_genuine_and_1125_impostor_pairs(tmp_path):
    captures = captures_from_pattern(_ridb_like(tmp_path))
    assert len(captures) == 50
    assert (captures[0].identity, captures[0].capture, captures[0].key) == (
        "1",
        1,
        "IM000001_1.jpg",
    )
    plan = design(captures, "all-pairs")
    genuine = _labels(captures, plan)
    assert (genuine.sum(), (~genuine).sum()) == (100, 1125)
    # Every unordered pair exactly once, never a capture against itself.
    assert len({frozenset(p) for p in plan.pairs.tolist()}) == len(plan.pairs) == 1225


def test_identities_sort_numerically(tmp_path):
    captures = captures_from_pattern(_ridb_like(tmp_path, identities=12, captures=1))
    assert [c.identity for c in captures] == [str(i) for i in range(1, 13)]


def test_enrol_first_enrols_capture_one_and_probes_the_rest(tmp_path):
    captures = captures_from_pattern(_ridb_like(tmp_path))
    plan = design(captures, "enrol-first")
    assert {captures[i].capture for i in plan.references} == {1}
    assert len(plan.references) == 10 and len(plan.probes) == 40
    genuine = _labels(captures, plan)
    assert (genuine.sum(), (~genuine).sum()) == (40, 360)
    assert not plan.symmetric


def test_csv_mapping_with_project_columns_and_groups(tmp_path):
    data = _ridb_like(tmp_path / "RIDB", identities=4, captures=2)
    rows = ["file,eye_id,capture,eye_side_estimated,subject_group_estimated"]
    rows += [
        f"RIDB/IM{c:06d}_{n}.jpg,{n},{c},x,{(n + 1) // 2}" for n in range(1, 5) for c in (1, 2)
    ]
    mapping = tmp_path / "ids.csv"
    mapping.write_text("\n".join(rows) + "\n")
    captures = captures_from_csv(mapping, data)
    assert len(captures) == 8
    assert {(c.identity, c.group) for c in captures} == {
        ("1", "1"),
        ("2", "1"),
        ("3", "2"),
        ("4", "2"),
    }
    assert captures[0].key == "IM000001_1.jpg"


def test_csv_mapping_errors_are_one_line_input_errors(tmp_path):
    data = _ridb_like(tmp_path / "d", identities=1, captures=1)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,identity\nmissing.jpg,1\n")
    with pytest.raises(InputError, match="not in the data directory"):
        captures_from_csv(bad, data)
    bad.write_text("name,identity\nIM000001_1.jpg,1\n")
    with pytest.raises(InputError, match="'file' column"):
        captures_from_csv(bad, data)
    bad.write_text("file,identity\nIM000001_1.jpg,a b\n")
    with pytest.raises(InputError, match="without spaces"):
        captures_from_csv(bad, data)


def test_pattern_needs_an_identity_group_and_some_matches(tmp_path):
    data = _ridb_like(tmp_path, identities=1, captures=1)
    with pytest.raises(InputError, match="identity"):
        captures_from_pattern(data, r"IM(\d+)_(\d+)\.jpg")
    with pytest.raises(InputError, match="no captures"):
        captures_from_pattern(data, r"(?P<identity>\d+)\.png")
    with pytest.raises(InputError, match="invalid"):
        captures_from_pattern(data, r"(?P<identity>")


def test_unknown_protocol_is_refused(tmp_path):
    captures = captures_from_pattern(_ridb_like(tmp_path, identities=2, captures=2))
    with pytest.raises(InputError, match="unknown protocol"):
        design(captures, "leave-one-out")
