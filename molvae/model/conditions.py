"""The conditions of a conditional :class:`~molvae.model.vae.SelfiesVAE` (CVAE), as a mixin.

Condition values c are given raw, standardized with the training statistics the model keeps
(buffers ``condition_mean`` / ``condition_std``), and appended to the network's inputs. By
default a molecule is encoded under its own properties, computed by :mod:`molvae.chem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from molvae import chem

# raw condition values: [N, C] numbers, or one dict {name: target} for every row
Conditions = np.ndarray | Sequence[Sequence[float]] | dict[str, float] | None


class ConditionNames(Protocol):
    """What the mixin reads of a model's config (the config class is the model's own)."""

    condition_names: list[str]


class ConditionsMixin:
    """Condition handling for a module with ``config.condition_names``, ``device`` and the
    buffers ``condition_mean`` / ``condition_std`` [C] (training statistics)."""

    config: ConditionNames
    condition_mean: torch.Tensor
    condition_std: torch.Tensor

    if TYPE_CHECKING:  # the model's, declared here for the type checker only
        @property
        def device(self) -> torch.device: ...

    def _with_conditions(self, x: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """[x ; c] for a conditional model (c standardized, [B, C]); x unchanged otherwise."""
        names = self.config.condition_names
        if not names:
            if conditions is not None:
                raise ValueError("this model was trained without conditions")
            return x
        if conditions is None or tuple(conditions.shape) != (len(x), len(names)):
            raise ValueError(f"this model is conditioned on {', '.join(names)}: conditions must "
                             f"have shape [{len(x)}, {len(names)}], got "
                             f"{None if conditions is None else tuple(conditions.shape)}")
        return torch.cat([x, conditions.to(x.device, x.dtype)], dim=-1)

    def standardize_conditions(self, values: Conditions, n: int) -> torch.Tensor | None:
        """Raw condition values as the standardized tensor [n, C] the network reads.

        ``values``: [n, C] numbers (columns ``config.condition_names``), or one dict
        ``{name: target}`` for all n rows, where names left out take their training mean.
        None for an unconditional model (which accepts no values).
        """
        names = self.config.condition_names
        if not names:
            if values is not None and not (isinstance(values, dict) and not values):
                raise ValueError("this model was trained without conditions")
            return None
        if values is None:
            values = {}
        if isinstance(values, dict):
            unknown = sorted(set(values) - set(names))
            if unknown:
                raise ValueError(f"unknown condition(s) {', '.join(unknown)}: this model is "
                                 f"conditioned on {', '.join(names)}")
            mean = self.condition_mean.cpu().numpy()
            row = [float(values.get(k, mean[i])) for i, k in enumerate(names)]
            values = np.tile(np.asarray(row, dtype=np.float32), (n, 1))
        raw = torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device)
        if tuple(raw.shape) != (n, len(names)):
            raise ValueError(f"conditions must have shape [{n}, {len(names)}] "
                             f"({', '.join(names)}), got {tuple(raw.shape)}")
        return (raw - self.condition_mean) / self.condition_std

    def molecule_conditions(self, smiles: Sequence[str | None]) -> np.ndarray | None:
        """Raw condition values [N, C] computed from the molecules (None: unconditional)."""
        names = self.config.condition_names
        if not names:
            return None
        rows = [chem.smiles_properties(s) if isinstance(s, str) else {} for s in smiles]
        return np.array([[row.get(k, np.nan) for k in names] for row in rows], dtype=np.float32)
