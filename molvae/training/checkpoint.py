"""Training checkpoints: tensors and plain data only, written atomically, read with weights_only.

A checkpoint must let ``--resume`` continue a killed run bit for bit, so besides weights,
optimizer and scheduler it holds every random number generator's state (torch, CUDA, NumPy,
Python) as tensors and plain numbers — never pickled objects.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from molvae.io import atomic_path, load_tensors

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "molvae-checkpoint/1"


def rng_state() -> dict[str, Any]:
    """The state of every global random generator, as tensors and plain data."""
    kind, keys, position, has_gauss, cached = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every global random generator back to a state from :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    restore_cuda_rng(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))
    random.setstate(_as_tuples(state["python"]))


def restore_cuda_rng(states: list[torch.Tensor]) -> None:
    """Restore the saved CUDA generators that exist on this host.

    A checkpoint may come from a host with more (or fewer) GPUs than this one: device i gets
    state i where both exist, the rest keep their seeds. cuDNN's dropout state is not among
    them, so a resumed run with dropout on a GPU is not bit-identical to an uninterrupted one.
    """
    if not states or not torch.cuda.is_available():
        return
    for index, state in enumerate(states[:torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, index)


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples; be lenient if a list comes back."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(state: dict[str, Any], model_dir: str | Path) -> Path:
    """Write ``MODEL_DIR/checkpoint.pt`` atomically (a crash mid-write keeps the old one)."""
    path = Path(model_dir) / CHECKPOINT_FILE
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load_checkpoint(model_dir: str | Path) -> dict[str, Any] | None:
    """The checkpoint in ``model_dir``, or None when there is none."""
    path = Path(model_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = load_tensors(path, "molvae training checkpoint")
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a molvae training checkpoint "
                         f"(format {state.get('format')!r})")
    return state
