"""Saving and loading models as local files: tensors and plain data only, never pickles.

A saved model (``model.pt``) holds the weights, the config and the vocabulary, and loads with
``torch.load(weights_only=True)``. MLflow URIs are resolved to local folders by the stages
(:func:`molvae.tracking.local_model_dir`) before they get here.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from molvae.data.tokens import Vocab
from molvae.devices import choose_device
from molvae.io import atomic_path, load_tensors
from molvae.model import MODEL_FILE
from molvae.model.vae import OPTIONAL_BUFFERS, ModelConfig, SelfiesVAE
from molvae.model.vq import network

FORMAT = "molvae-model/1"


def model_state(model: SelfiesVAE, dtype: torch.dtype | None = None) -> dict:
    """The model as tensors and plain data, enough to rebuild it (``weights_only`` safe).

    ``dtype`` (e.g. ``torch.float16``) stores floating-point weights at that precision, half
    the size for a shipped model; loading casts them back into the float32 network.
    """
    weights = {k: v.detach().cpu().to(dtype) if dtype is not None and v.is_floating_point()
               else v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": asdict(model.config), "vocab": model.vocab.to_dict(),
            "state_dict": weights}


def model_from_state(state: dict, device: str | torch.device = "cpu") -> SelfiesVAE:
    """Rebuild a model from :func:`model_state` output."""
    if state.get("format") != FORMAT:
        raise ValueError(f"not a molvae model (format {state.get('format')!r}, "
                         f"expected {FORMAT!r})")
    model = network(ModelConfig(**state["config"]), Vocab.from_dict(state["vocab"]))
    scales = state["state_dict"].get("mixture_scales")
    model.resize_mixture(len(state["state_dict"].get("mixture_weights", ())),
                         diagonal=scales is not None and scales.ndim == 2)
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    if unexpected or set(missing) - OPTIONAL_BUFFERS:
        raise ValueError(f"weights do not fit the model: missing {sorted(missing)}, "
                         f"unexpected {sorted(unexpected)}")
    return model.to(device).eval()


def save_model(model: SelfiesVAE, model_dir: str | Path, dtype: torch.dtype | None = None
               ) -> Path:
    """Write ``MODEL_DIR/model.pt`` atomically (weights at ``dtype`` if given); returns it."""
    path = Path(model_dir) / MODEL_FILE
    with atomic_path(path) as tmp:
        torch.save(model_state(model, dtype), tmp)
    return path


ALTERED = (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError)
"""What rebuilding a model from an edited ``model.pt`` raises: an unknown config key, a missing
vocabulary entry, a tensor of the wrong shape (torch's RuntimeError), a value of another type."""


def load_model(path: str | Path, device: str = "auto") -> SelfiesVAE:
    """Load a model folder (or its ``model.pt``), in eval mode on ``choose_device(device)``."""
    path = Path(path)
    found = path if path.is_file() else path / MODEL_FILE
    if not found.is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {path} (train one with `molvae train`)")
    target = choose_device(device)  # a bad --device is its own error, not "altered"
    state = load_tensors(found, "molvae model")
    try:
        model = model_from_state(state, "cpu")
    except ALTERED as err:  # a file that loads as tensors but was edited: name it, no traceback
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise ValueError(f"cannot load {found}: not a usable molvae model, the file was altered "
                         f"or damaged ({type(err).__name__}: {lines[0][:200]})") from None
    return model.to(target)

