"""The policy's memory: the best distinct molecules seen, with the z and the token rows that
wrote them, replayed at every update so the agent keeps learning from its best finds."""

from __future__ import annotations

import numpy as np
import torch


class Memory:
    """The best distinct molecules seen, with the z and tokens that wrote them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[str, tuple[float, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, smiles: list[str | None], scores: np.ndarray, z: torch.Tensor,
            tokens: list[torch.Tensor]) -> None:
        for i, (text, score) in enumerate(zip(smiles, scores, strict=True)):
            if text and np.isfinite(score) and text not in self.entries:
                self.entries[text] = (float(score), z[i], tokens[i])
        if len(self.entries) > self.size:
            kept = sorted(self.entries.items(), key=lambda item: -item[1][0])[:self.size]
            self.entries = dict(kept)

    def sample(self, n: int, rng: np.random.Generator, by_rank: bool = False
               ) -> tuple[np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """``n`` entries: (raw scores, z [n, D], token rows).

        Uniformly and each at most once by default; ``by_rank`` draws with replacement, the
        i-th best with weight 1 / (1 + i), so the search leans on the best few molecules
        without forgetting the rest (rank weighting as in Tripp et al. 2020).
        """
        values = sorted(self.entries.values(), key=lambda entry: -entry[0])
        if by_rank:
            weights = 1.0 / (1.0 + np.arange(len(values)))
            picked = rng.choice(len(values), size=n, p=weights / weights.sum())
        else:
            picked = rng.choice(len(values), size=min(n, len(values)), replace=False)
        scores = np.array([values[i][0] for i in picked])
        z = torch.stack([values[i][1] for i in picked])
        return scores, z, [values[i][2] for i in picked]


def pad_rows(rows: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    """Token rows of different lengths, padded to the longest."""
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)


def trim(tokens: torch.Tensor, pad_id: int) -> list[torch.Tensor]:
    """Each row without its trailing pad."""
    lengths = (tokens != pad_id).sum(dim=1).tolist()
    return [row[:n] for row, n in zip(tokens, lengths, strict=True)]
