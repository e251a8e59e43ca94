"""Models that ship with molvae, so a user can sample and optimize before training anything.

Each lives in ``molvae/pretrained/NAME/`` as ``model.pt`` (half-precision weights, plain
tensors and data, loaded with ``weights_only=True``) beside its ``MODEL_CARD.md`` (data,
recipe, device, training time and measured numbers). Every ``--model`` option accepts the
name.
"""

from __future__ import annotations

from pathlib import Path

from molvae.model import MODEL_FILE

PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_names() -> list[str]:
    """Names of the shipped models (folders of ``molvae/pretrained`` that hold a model)."""
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / MODEL_FILE).is_file())


def pretrained_dir(name: str) -> Path | None:
    """The folder of the shipped model ``name``, or None when molvae ships none by that name."""
    return PRETRAINED_ROOT / name if name in pretrained_names() else None
