"""The model card: one record of what a segmentation model is and how it must be used.

Every backend reads the same :class:`ModelCard` (and the exporters write it), wherever it is
stored:

* ONNX model ``m.onnx``: the JSON sidecar ``m.json`` (:func:`sidecar`);
* TVM artefact directory: the ``card`` entry of its ``manifest.json``, copied from the ONNX
  model's card when it is compiled (:mod:`segmentation.compile`);
* torch checkpoint ``best.pt`` (``retauth train``): its ``card`` entry, or for checkpoints
  written before cards its ``threshold``, ``val_dice`` and ``config`` entries.

The fields that change what the model computes are ``threshold`` (the vessel probability
cut, chosen a priori on validation or training data, never on test data) and ``diameter``
(the FOV diameter in px the model was trained at; the biometric pipeline refuses a model
trained at another scale). The rest is provenance: architecture, training data, the metrics
measured on test sets, the export's parity check and hash. Unknown keys of a stored card are
kept in ``extra`` so that reading and writing a newer card loses nothing.

This module imports neither torch nor onnxruntime (reading a ``.pt`` imports torch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from biometrics.errors import InputError

#: FOV diameter of models without a card (DRIVE's scale; the biometric pipeline's frame).
DEFAULT_DIAMETER = 540
#: Vessel threshold of models without a card.
DEFAULT_THRESHOLD = 0.5
#: File names that identify a TVM artefact (a directory, or its manifest).
MANIFEST = "manifest.json"


@dataclass
class ModelCard:
    """What a segmentation model is; see the module docstring for where it is stored."""

    threshold: float = DEFAULT_THRESHOLD
    diameter: int = DEFAULT_DIAMETER
    architecture: str = "m2unet"
    threshold_from: str = "default (no model card)"
    trained_on: str = ""
    validation_dice: float | None = None
    input: str = "float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of 32"
    max_abs_logit_diff: float | None = None
    sha256: str = ""
    members: list[str] = field(default_factory=list)  # ensemble: the members' descriptions
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # per test set
    provenance: dict[str, Any] = field(default_factory=dict)  # training command, steps, …
    extra: dict[str, Any] = field(default_factory=dict)  # keys of newer cards, kept as is

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise InputError(f"model card: threshold {self.threshold} is not in (0, 1)")
        if int(self.diameter) < 1:
            raise InputError(f"model card: FOV diameter {self.diameter} px is not positive")
        self.threshold, self.diameter = float(self.threshold), int(self.diameter)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (``extra`` merged back in; empty optional entries dropped)."""
        out = asdict(self)
        extra = out.pop("extra")
        for key in ("members", "metrics", "provenance"):
            if not out[key]:
                del out[key]
        return {**extra, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Card from a stored dict; raises InputError (a ValueError) if it is not one."""
        if not isinstance(data, dict):
            raise InputError("model card: not a JSON object")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {k: v for k, v in data.items() if k not in known and k != "extra"}
        try:
            return cls(**values)
        except InputError:
            raise
        except (TypeError, ValueError) as exc:  # a wrong type, or __post_init__ refused a value
            raise InputError(f"model card: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def sidecar(onnx_path: str | Path) -> Path:
    """The JSON card next to an ONNX model (``m.onnx`` → ``m.json``)."""
    return Path(onnx_path).with_suffix(".json")


def _is_artefact(path: Path) -> bool:
    return path.name == MANIFEST or (path.is_dir() and (path / MANIFEST).is_file())


def read_card(weights: str | Path) -> ModelCard:
    """The card of an ONNX model, a TVM artefact or a torch checkpoint.

    An ONNX model without a sidecar gets the default card (threshold 0.5, FOV 540 px), as
    before cards existed. A TVM artefact must carry a card (one compiled before cards did is
    refused: its FOV diameter is unknown). Raises InputError (a ValueError) for an unreadable card.
    """
    path = Path(weights)
    if _is_artefact(path):
        directory = path.parent if path.name == MANIFEST else path
        return card_from_manifest(_read_json(directory / MANIFEST), directory.name)
    if path.suffix == ".pt":
        return card_from_checkpoint(path)
    side = sidecar(path)
    if not side.is_file():
        return ModelCard()
    return ModelCard.from_dict(_read_json(side))


def write_card(weights: str | Path, card: ModelCard) -> Path:
    """Store ``card`` with its model (ONNX sidecar, TVM manifest or checkpoint); returns the
    file written. Writes go through a temporary file, so a reader never sees half a card."""
    path = Path(weights)
    if _is_artefact(path):
        directory = path.parent if path.name == MANIFEST else path
        target = directory / MANIFEST
        manifest = _read_json(target)
        manifest["card"] = card.to_dict()
        _atomic_write(target, json.dumps(manifest, indent=2) + "\n")
        return target
    if path.suffix == ".pt":
        import torch

        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        checkpoint["card"] = card.to_dict()
        checkpoint["threshold"] = card.threshold
        tmp = path.with_suffix(".tmp")
        torch.save(checkpoint, tmp)
        tmp.replace(path)
        return path
    target = sidecar(path)
    _atomic_write(target, card.to_json())
    return target


def card_from_manifest(manifest: dict[str, Any], name: str = "artefact") -> ModelCard:
    """The card inside a TVM manifest; refuses a manifest without one."""
    card = manifest.get("card")
    if not isinstance(card, dict):
        raise InputError(
            f"{name}: the TVM artefact has no model card (compiled by an older retauth, its "
            "FOV diameter is unknown); compile it again with retauth compile"
        )
    return ModelCard.from_dict(card)


def card_from_checkpoint(path: Path) -> ModelCard:
    """The card of a ``retauth train`` checkpoint (``best.pt``; ``last.pt`` has no threshold)."""
    import torch

    if not path.is_file():
        raise InputError(f"{path.name}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle and zip errors of many kinds
        raise InputError(f"{path.name}: not a readable checkpoint ({type(exc).__name__})") from None
    return checkpoint_card(checkpoint)


def checkpoint_card(checkpoint: dict[str, Any]) -> ModelCard:
    """Card of a loaded checkpoint dict: its ``card`` entry, else built from the entries
    checkpoints had before cards (``threshold``, ``val_dice``, ``config``)."""
    if isinstance(checkpoint.get("card"), dict):
        return ModelCard.from_dict(checkpoint["card"])
    config = checkpoint.get("config") or {}
    datasets = config.get("datasets") or ()
    has_threshold = "threshold" in checkpoint
    return ModelCard(
        threshold=float(checkpoint.get("threshold", DEFAULT_THRESHOLD)),
        diameter=int(config.get("diameter", DEFAULT_DIAMETER)),
        architecture=str(config.get("arch", "m2unet")),
        threshold_from="validation" if has_threshold else "default (no threshold stored)",
        trained_on="+".join(datasets),
        validation_dice=checkpoint.get("val_dice"),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path.name}: not a readable model card or manifest") from None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
