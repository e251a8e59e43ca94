"""How likely a token sequence is under the decoder, teacher-forced: the one home of the
reconstruction term of the training loss, the NLL of the ELBO and the policy's log π(x | z).

Two readings, because they answer two questions:

* :func:`token_nll`: -log p of each token under the decoder's raw softmax, what training
  minimizes and what the ELBO reports.
* :func:`sampled_log_likelihood`: log p of a sequence under the distribution the sampler
  (``decode_ids``) actually draws from, its banned tokens masked (no pad or bos inside a
  molecule, no eos first), which the policy optimizer reweights. Its log-softmax runs over the
  vocabulary axis of the [B, T, V] logits; cross-entropy on the transposed logits rounds
  differently in the last bits, which would change what a seeded policy run writes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from molvae.model.vae import SelfiesVAE


def token_nll(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """-log p of each target token [B, T - 1] (0 at pad), from logits [B, T - 1, V] of
    ``tokens`` [B, T] (bos first) under teacher forcing."""
    return F.cross_entropy(logits.float().transpose(1, 2), tokens[:, 1:], ignore_index=pad_id,
                           reduction="none")


def sampled_log_likelihood(model: SelfiesVAE, z: torch.Tensor, tokens: torch.Tensor
                           ) -> torch.Tensor:
    """log p(tokens | z) per row [B], as sampled by ``decode_ids`` (its banned tokens masked).

    Args:
        tokens: [B, T] ids starting with bos, ending with eos (or cut at the longest length),
            then pad.
    """
    logits = model.teacher_forced_logits(z, tokens).float()
    banned = model.banned_tokens.expand_as(logits).clone()
    banned[:, 0] = model.banned_first_tokens
    log_probs = F.log_softmax(logits.masked_fill(banned, float("-inf")), dim=-1)
    targets = tokens[:, 1:]
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(targets != model.vocab.pad_id, picked, 0.0).sum(dim=1)
