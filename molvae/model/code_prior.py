"""The code prior of a VQ-VAE: an autoregressive model p(c_1 ... c_M) = Π p(c_m | c_<m) over a
molecule's M codes, a one-layer GRU (van den Oord et al. 2017 used a PixelCNN; M is a short
sequence here).

The VQ-VAE is trained with a uniform prior over codes, which molecules do not follow: some
codes and combinations are common, most never occur. Sampling draws codes from this prior,
fitted to the training molecules' codes after the VAE (``molvae train`` does both), and
``-log p(codes)`` is the code part of a VQ model's negative ELBO (its anomaly score).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from molvae.model.vae import run_gru


class CodePrior(nn.Module):
    """GRU over code sequences [B, M] with values in [0, K); position m reads c_{m-1} (a start
    symbol K at the first) and the position's own embedding."""

    def __init__(self, codebook_size: int, codes: int, hidden: int) -> None:
        super().__init__()
        self.codebook_size, self.codes = codebook_size, codes
        self.embedding = nn.Embedding(codebook_size + 1, hidden)  # + the start symbol
        self.position = nn.Embedding(codes, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.to_logits = nn.Linear(hidden, codebook_size)

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits [B, M, K] of each code given those before it (teacher forcing)."""
        start = torch.full((len(codes), 1), self.codebook_size, dtype=torch.long,
                           device=codes.device)
        inputs = torch.cat([start, codes[:, :-1]], dim=1)
        steps = torch.arange(self.codes, device=codes.device)
        outputs, _ = run_gru(self.gru, self.embedding(inputs) + self.position(steps))
        return self.to_logits(outputs)

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """-log p(codes) per row [B], in nats."""
        return F.cross_entropy(self.logits(codes).float().transpose(1, 2), codes,
                               reduction="none").sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` code sequences [n, M], each code drawn given those before it."""
        device = self.to_logits.weight.device
        token = torch.full((n,), self.codebook_size, dtype=torch.long, device=device)
        state, drawn = None, []
        for m in range(self.codes):
            step = self.embedding(token) + self.position.weight[m]
            output, state = run_gru(self.gru, step.unsqueeze(1), state)
            probs = torch.softmax(self.to_logits(output[:, 0]).float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            drawn.append(token)
        return torch.stack(drawn, dim=1)
