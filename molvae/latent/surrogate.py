"""A differentiable surrogate: a small torch MLP z → property that gradients can flow through,
for gradient-based latent optimization. Saved as tensors plus plain data (no pickle)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from molvae.io import atomic_path, load_tensors
from molvae.latent.encode import usable_rows
from molvae.latent.regressors import file_stem, regression_scores

# the surrogate's defaults, read by the regress and optimize stages' options
SURROGATE_EPOCHS = 200
SURROGATE_HIDDEN = 256


class Surrogate(nn.Module):
    """A small MLP z → property that gradients can flow through (for latent optimization).

    Inputs and target are standardized inside the module (buffers), so ``forward`` takes raw
    latent vectors and returns predictions in the property's own units, shape [N].
    """

    # buffers, declared so that their type is a tensor (nn.Module's attribute lookup says
    # "a tensor or a module")
    z_mean: torch.Tensor
    z_scale: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, input_dim: int, hidden_dim: int = SURROGATE_HIDDEN,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.input_dim, self.hidden_dim, self.num_layers = input_dim, hidden_dim, num_layers
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
            width = hidden_dim
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.register_buffer("z_mean", torch.zeros(input_dim))
        self.register_buffer("z_scale", torch.ones(input_dim))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_scale", torch.ones(()))
        self.scores: dict[str, float] = {}

    def standardized(self, z: torch.Tensor) -> torch.Tensor:
        """Prediction in standard units (the training loss is measured here)."""
        return self.net((z - self.z_mean) / self.z_scale).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.standardized(z) * self.y_scale + self.y_mean

    @torch.no_grad()
    def predict(self, z: np.ndarray) -> np.ndarray:
        """NumPy in, NumPy out, like a scikit-learn regressor."""
        tensor = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.z_mean.device)
        return self.eval()(tensor).cpu().numpy().astype(np.float64)

    def save(self, path: str | Path) -> Path:
        """Weights plus plain config and scores (loadable with ``weights_only=True``)."""
        state = {"config": {"input_dim": self.input_dim, "hidden_dim": self.hidden_dim,
                            "num_layers": self.num_layers},
                 "scores": dict(self.scores),
                 "state_dict": {k: v.cpu() for k, v in self.state_dict().items()}}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Surrogate:
        """A saved surrogate; a damaged or edited file is one ValueError naming it."""
        state = load_tensors(Path(path), "surrogate")
        try:
            surrogate = cls(**state["config"])
            surrogate.load_state_dict(state["state_dict"])
            surrogate.scores = dict(state["scores"])
        except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as err:
            lines = str(err).strip().splitlines() or [type(err).__name__]
            raise ValueError(f"cannot load {path}: not a usable surrogate, the file was altered "
                             f"or damaged ({type(err).__name__}: {lines[0][:200]})") from None
        return surrogate.to(device).eval()


def fit_surrogate(z: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = SURROGATE_EPOCHS,
                  hidden_dim: int = SURROGATE_HIDDEN, num_layers: int = 2, lr: float = 1e-3,
                  weight_decay: float = 1e-4, batch_size: int = 256, patience: int = 20,
                  val_fraction: float = 0.1,
                  validation: tuple[np.ndarray, np.ndarray] | None = None,
                  device: str | torch.device = "cpu") -> Surrogate:
    """Train a :class:`Surrogate` with AdamW and early stopping on validation MSE.

    Args:
        z, y: training latents [N, D] and targets [N]; rows with NaN are dropped.
        seed: seeds the weights, the shuffling and the validation split.
        epochs: the most passes over the data; ``patience`` epochs without a better
            validation loss stop training, and the best weights are kept.
        validation: (z_val, y_val) to stop on; without it ``val_fraction`` of the rows
            are held out.

    Returns:
        the surrogate on CPU in eval mode; ``.scores`` holds validation r2 and mae.
    """
    z, y, z_val, y_val = _usable_split(z, y, validation, val_fraction, seed)
    surrogate = _standardized_surrogate(z, y, hidden_dim, num_layers, seed).to(device)
    best_epoch = _train_early_stopped(surrogate, z, y, z_val, y_val, seed=seed, epochs=epochs,
                                      lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                      patience=patience)
    surrogate.cpu().eval()
    val_scores = regression_scores(y_val.astype(np.float64), surrogate.predict(z_val))
    surrogate.scores = {"r2": val_scores["r2"], "mae": val_scores["mae"],
                        "best_epoch": float(best_epoch + 1), "n_train": float(len(y)),
                        "n_val": float(len(y_val))}
    return surrogate


def _usable_split(z: np.ndarray, y: np.ndarray,
                  validation: tuple[np.ndarray, np.ndarray] | None, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation rows as float32 (z, y, z_val, y_val), rows with NaN dropped;
    without ``validation`` a seeded ``val_fraction`` of the training rows is held out."""
    z, y = np.asarray(z, dtype=np.float32), np.asarray(y, dtype=np.float32)
    keep = usable_rows(z, y)
    z, y = z[keep], y[keep]
    if validation is None:
        order = np.random.default_rng(seed).permutation(len(y))
        held, kept = np.split(order, [max(1, round(len(y) * val_fraction))])
        z_val, y_val, z, y = z[held], y[held], z[kept], y[kept]
    else:
        z_val, y_val = (np.asarray(a, dtype=np.float32) for a in validation)
        held = usable_rows(z_val, y_val)
        z_val, y_val = z_val[held], y_val[held]
    if len(y) < 2 or len(y_val) < 1:
        raise ValueError(f"too few rows to fit a surrogate: {len(y)} train, {len(y_val)} val")
    return z, y, z_val, y_val


def _standardized_surrogate(z: np.ndarray, y: np.ndarray, hidden_dim: int, num_layers: int,
                            seed: int) -> Surrogate:
    """A new surrogate, its weights drawn from ``seed`` without touching the global random
    state, standardizing inputs and target with the training rows' statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        surrogate = Surrogate(z.shape[1], hidden_dim, num_layers)
    surrogate.z_mean.copy_(torch.from_numpy(z.mean(axis=0)))
    surrogate.z_scale.copy_(torch.from_numpy(np.maximum(z.std(axis=0), 1e-6)))
    surrogate.y_mean.fill_(float(y.mean()))
    surrogate.y_scale.fill_(float(max(y.std(), 1e-6)))
    return surrogate


def _train_early_stopped(surrogate: Surrogate, z: np.ndarray, y: np.ndarray,
                         z_val: np.ndarray, y_val: np.ndarray, *, seed: int, epochs: int,
                         lr: float, weight_decay: float, batch_size: int,
                         patience: int) -> int:
    """Fit ``surrogate`` in place on its device (MSE in standard units, seeded shuffling) and
    leave it with the weights of its best validation epoch; returns that epoch (from 0)."""
    device = surrogate.z_mean.device
    train_z, train_y = torch.from_numpy(z).to(device), torch.from_numpy(y).to(device)
    val_z, val_y = torch.from_numpy(z_val).to(device), torch.from_numpy(y_val).to(device)
    target = (train_y - surrogate.y_mean) / surrogate.y_scale
    val_target = (val_y - surrogate.y_mean) / surrogate.y_scale
    optimizer = torch.optim.AdamW(surrogate.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch = float("inf"), surrogate.state_dict(), 0
    for epoch in range(epochs):
        surrogate.train()
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            batch = batch.to(device)
            loss = nn.functional.mse_loss(surrogate.standardized(train_z[batch]), target[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        surrogate.eval()
        with torch.no_grad():
            val_loss = nn.functional.mse_loss(surrogate.standardized(val_z), val_target).item()
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(surrogate.state_dict())
        elif epoch - best_epoch >= patience:
            break
    surrogate.load_state_dict(best_state)
    return best_epoch


def load_surrogate(regress_dir: str | Path, property_name: str,
                   device: str | torch.device = "cpu") -> Surrogate:
    """The surrogate the regress stage saved for a property (``OUT/surrogates/{property}.pt``)."""
    path = Path(regress_dir) / "surrogates" / f"{file_stem(property_name)}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no surrogate for property '{property_name}': {path} "
                                "(run `molvae regress` with --surrogate)")
    return Surrogate.load(path, device=device)
