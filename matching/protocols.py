"""Which captures belong to whom, and which comparisons an evaluation makes.

A *mapping* turns the files of a data set into :class:`Capture` records (file, identity,
capture number, optional group). It comes either from a CSV file or from a regular
expression with named groups applied to file names; the default pattern is RIDB's
``IM00000C_N.jpg`` (``N`` = identity, ``C`` = capture).

A *protocol* then chooses the comparisons:

``all-pairs``
    Every unordered pair of captures once; genuine when both share an identity. RIDB's
    50 captures of 10 eyes give 10·C(5,2) = 100 genuine and C(50,2) − 100 = 1,125 impostor
    pairs. Rank-1 is leave-one-out: each capture is a probe against all the others.
``enrol-first``
    Each identity's lowest-numbered capture enrols; every other capture probes against
    every enrolled identity (verification and closed-set identification).

The optional *group* (e.g. the person owning two eyes) lets "same person, other eye"
impostor pairs be reported separately: they are the hardest impostors and, if the matcher
confuses them, the single overall FMR would hide it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biometrics.errors import InputError

#: RIDB file names: ``IM000003_7.jpg`` is capture 3 of identity (eye) 7.
RIDB_PATTERN = r"IM(?P<capture>\d{6})_(?P<identity>\d+)\.jpg"
PROTOCOLS = ("all-pairs", "enrol-first")
#: Column names accepted for the identity and group in a mapping CSV, in order of preference.
IDENTITY_COLUMNS = ("identity", "eye_id", "subject_id", "id")
GROUP_COLUMNS = ("group", "subject_group", "subject_group_estimated")


@dataclass(frozen=True)
class Capture:
    """One image of one identity.

    ``key`` is the path relative to the data directory (POSIX separators): it names the
    capture in score files without leaking where the data set lives.
    """

    path: Path
    key: str
    identity: str
    capture: int | None = None
    group: str | None = None


def _natural(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (0, text)


def _label(value: str, what: str, where: str) -> str:
    """Strip a label and refuse whitespace, which would break the score-file columns."""
    label = value.strip()
    if not label or any(ch.isspace() for ch in label):
        raise InputError(f"{where}: {what} {value!r} must be non-empty without spaces")
    return label


def _sorted(captures: list[Capture]) -> list[Capture]:
    if not captures:
        raise InputError("no captures found for the protocol")
    keys = [c.key for c in captures]
    if len(set(keys)) != len(keys):
        raise InputError("the mapping lists a file more than once")
    return sorted(captures, key=lambda c: (_natural(c.identity), c.capture or 0, c.key))


def captures_from_pattern(data_dir: Path, pattern: str = RIDB_PATTERN) -> list[Capture]:
    """Captures of every file under ``data_dir`` whose name fully matches ``pattern``.

    The pattern must have a named group ``identity``; ``capture`` and ``group`` are used
    when present. Files that do not match are ignored (READMEs, masks...).
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"invalid file-name pattern: {exc}") from None
    if "identity" not in regex.groupindex:
        raise InputError("the file-name pattern needs a named group (?P<identity>...)")
    captures = []
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file()):
        match = regex.fullmatch(path.name)
        if match is None:
            continue
        fields = match.groupdict()
        captures.append(
            Capture(
                path=path,
                key=path.relative_to(data_dir).as_posix(),
                identity=_label(fields["identity"], "identity", path.name),
                capture=int(fields["capture"]) if fields.get("capture") else None,
                group=_label(fields["group"], "group", path.name) if fields.get("group") else None,
            )
        )
    return _sorted(captures)


def _column(header: list[str], wanted: str | None, choices: tuple[str, ...]) -> str | None:
    if wanted is not None:
        if wanted not in header:
            raise InputError(f"mapping CSV has no column {wanted!r}")
        return wanted
    return next((c for c in choices if c in header), None)


def _locate(entry: str, data_dir: Path, csv_dir: Path) -> Path:
    """Find a CSV entry relative to the data dir, the CSV's own folder, or by file name."""
    rel = Path(entry)
    for candidate in (data_dir / rel, csv_dir / rel, data_dir / rel.name):
        if candidate.is_file():
            return candidate
    raise InputError(f"mapping lists {rel.name}, which is not in the data directory")


def captures_from_csv(
    csv_path: Path,
    data_dir: Path,
    *,
    identity_column: str | None = None,
    group_column: str | None = None,
) -> list[Capture]:
    """Captures listed in a CSV with a ``file`` column and an identity column.

    The identity column defaults to the first of :data:`IDENTITY_COLUMNS` present (so the
    project's ``RIDB_identities.csv`` with ``eye_id`` works as is); ``capture`` is optional;
    the group column defaults to the first of :data:`GROUP_COLUMNS` present, if any.
    """
    csv_path, data_dir = Path(csv_path), Path(data_dir)
    try:
        with csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read mapping {csv_path.name}: {exc}") from None
    header = list(rows[0]) if rows else []
    if "file" not in header:
        raise InputError(f"mapping {csv_path.name} needs a 'file' column")
    id_col = _column(header, identity_column, IDENTITY_COLUMNS)
    if id_col is None:
        raise InputError(f"mapping {csv_path.name} has no identity column ({IDENTITY_COLUMNS})")
    group_col = _column(header, group_column, GROUP_COLUMNS)
    captures = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path.name} line {line}"
        path = _locate(row["file"], data_dir, csv_path.parent)
        capture = (row.get("capture") or "").strip()
        if capture and not capture.isdigit():
            raise InputError(f"{where}: capture {capture!r} is not a number")
        captures.append(
            Capture(
                path=path,
                key=path.relative_to(data_dir).as_posix()
                if path.is_relative_to(data_dir)
                else path.name,
                identity=_label(row[id_col] or "", "identity", where),
                capture=int(capture) if capture else None,
                group=_label(row[group_col], "group", where)
                if group_col and (row[group_col] or "").strip()
                else None,
            )
        )
    return _sorted(captures)


@dataclass(frozen=True)
class Design:
    """The comparisons of one protocol over a list of captures.

    ``pairs[:, 0]`` indexes the reference capture and ``pairs[:, 1]`` the probe capture.
    ``probes`` and ``references`` index the captures that play each role in identification;
    ``symmetric`` says a pair's score also stands for the reverse comparison (all-pairs).
    """

    name: str
    pairs: np.ndarray
    references: np.ndarray
    probes: np.ndarray
    symmetric: bool


def design(captures: list[Capture], protocol: str) -> Design:
    """The comparisons ``protocol`` makes over ``captures`` (sorted as the mappers return)."""
    n = len(captures)
    if protocol == "all-pairs":
        ref, probe = np.triu_indices(n, k=1)
        everyone = np.arange(n)
        return Design(protocol, np.column_stack([ref, probe]), everyone, everyone, True)
    if protocol == "enrol-first":
        first: dict[str, int] = {}
        for i, c in enumerate(captures):
            best = first.get(c.identity)
            if best is None or (c.capture or 0) < (captures[best].capture or 0):
                first[c.identity] = i
        references = np.array(sorted(first.values()), dtype=np.intp)
        probes = np.setdiff1d(np.arange(n), references)
        ref, probe = np.meshgrid(references, probes, indexing="ij")
        pairs = np.column_stack([ref.ravel(), probe.ravel()])
        return Design(protocol, pairs, references, probes, False)
    raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
