"""The VQ-VAE variant (``--latent vq``): a discrete latent code instead of a Gaussian one.

    tokens ─ embedding ─ bidirectional GRU ─ linear ─ z_e: M vectors of size D = latent_dim / M
    z_e ─ nearest of K codebook vectors ─ q (M codes, M·log2 K bits per molecule)
    q (flattened, latent_dim) ─ the decoder, exactly as the Gaussian VAE's decoder reads z

The encoder and decoder are those of :class:`~molvae.model.vae.SelfiesVAE` (the same sizes and
presets); only what lies between them differs: no mu/logvar and no KL, but a quantizer
(:mod:`molvae.model.quantizer`: straight-through gradients, commitment term, moving-average
codebook with dead-code restarts) and a code prior (:mod:`molvae.model.code_prior`) to sample
from, trained after the VAE on the training molecules' codes.

The molecule-level API is the Gaussian model's: ``encode`` returns the quantized vectors as the
"posterior mean" (and log-variance -inf: the code is a point), ``decode`` snaps any vector to its
nearest codes before decoding, ``reconstruct`` decodes a molecule's own codes, ``sample`` draws
codes from the code prior (``fitted``) or uniformly (``standard``, the prior the VQ-VAE was
trained under). ``encode_codes`` / ``decode_codes`` speak the codes themselves.

What needs a continuous latent space (optimization, interpolation, analogs, latent regression)
stays on the Gaussian VAE: :func:`require_gaussian` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from molvae.data.tokens import Vocab
from molvae.model.code_prior import CodePrior
from molvae.model.conditions import Conditions
from molvae.model.quantizer import VectorQuantizer
from molvae.model.vae import ModelConfig, SelfiesVAE, VAEOutput

LATENTS = ("gaussian", "vq")


class VQVAE(SelfiesVAE):
    """SELFIES VQ-VAE: ``config.codes`` (M) codes from a codebook of ``config.codebook_size``
    (K) vectors of size ``latent_dim / M``; see the module docstring."""

    code_prior_trained: torch.Tensor  # [] bool

    def __init__(self, config: ModelConfig, vocab: Vocab) -> None:
        m, k = config.codes, config.codebook_size
        if m < 1 or k < 2 or config.latent_dim % m or config.code_prior_dim < 1:
            raise ValueError(f"a VQ model needs codes >= 1 dividing latent_dim, "
                             f"codebook_size >= 2 and code_prior_dim >= 1; got codes={m}, "
                             f"codebook_size={k}, latent_dim={config.latent_dim}, "
                             f"code_prior_dim={config.code_prior_dim}")
        if config.property_names or config.condition_names:
            raise ValueError("a VQ model has no property head and no conditions (train a "
                             "Gaussian model for those)")
        super().__init__(config, vocab)
        del self.to_logvar  # to_mu maps the encoder's summary to z_e
        self.quantizer = VectorQuantizer(k, config.latent_dim // m)
        self.code_prior = CodePrior(k, m, config.code_prior_dim)
        self.register_buffer("code_prior_trained", torch.zeros((), dtype=torch.bool))

    @property
    def codes(self) -> int:
        return self.config.codes

    @property
    def bits_per_molecule(self) -> float:
        """What a molecule's code holds at most: M · log2 K."""
        return self.config.codes * math.log2(self.config.codebook_size)

    # ---- tensor level ---------------------------------------------------------------------

    def quantize(self, tokens: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantized z [B, latent_dim] with straight-through gradients, codes [B, M],
        commitment []) of padded token ids."""
        z_e = self.to_mu(self.encoder_summary(tokens, lengths))
        q, codes, commitment = self.quantizer(z_e.view(len(z_e), self.codes, -1))
        return q.flatten(1), codes, commitment

    def encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor,
                      conditions: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantized vectors [B, latent_dim] and a log-variance of -inf (a point)."""
        self._with_conditions(tokens, conditions)  # refuses conditions
        z, _, _ = self.quantize(tokens, lengths)
        return z.detach(), torch.full_like(z, -math.inf)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                conditions: torch.Tensor | None = None) -> VAEOutput:
        """Encode, quantize, decode with teacher forcing; ``mu`` holds the quantized vectors."""
        self._with_conditions(tokens, conditions)
        z, _, commitment = self.quantize(tokens, lengths)
        return VAEOutput(self.teacher_forced_logits(z, tokens), z.detach(),
                         torch.full_like(z, -math.inf), z, None, commitment)

    def vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """The decoder's input [B, latent_dim] for codes [B, M]."""
        return self.quantizer.lookup(codes).flatten(1)

    # ---- molecule level -------------------------------------------------------------------

    @torch.no_grad()
    def encode_codes(self, smiles: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Each molecule's codes [N, M] (int64); -1 rows for molecules it cannot encode."""
        return self.codes_of(self.encode(smiles, batch_size)[0])

    @torch.no_grad()
    def codes_of(self, z: np.ndarray) -> np.ndarray:
        """The nearest codes [N, M] (int64) of latent rows [N, latent_dim]; -1 rows for rows
        that are not finite."""
        codes = np.full((len(z), self.codes), -1, dtype=np.int64)
        ok = np.isfinite(z).all(axis=1)
        if ok.any():
            found = self.quantizer.nearest(torch.from_numpy(np.asarray(z[ok], dtype=np.float32))
                                           .to(self.device).view(int(ok.sum()), self.codes, -1))
            codes[ok] = found.cpu().numpy()
        return codes

    def check_codes(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Codes as an int64 tensor [N, M] on the model's device; a ValueError for a wrong
        shape or a code outside [0, K)."""
        found = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
        if found.ndim != 2 or found.shape[1] != self.codes:
            raise ValueError(f"codes must have shape [N, {self.codes}], got {tuple(found.shape)}")
        if found.is_floating_point():
            if not torch.equal(found, found.round()):
                raise ValueError("codes must be whole numbers")
        found = found.long()
        if len(found) and (found.min() < 0 or found.max() >= self.config.codebook_size):
            raise ValueError(f"codes must lie in 0..{self.config.codebook_size - 1}")
        return found.to(self.device)

    @torch.no_grad()
    def decode_codes(self, codes: np.ndarray | torch.Tensor, greedy: bool = True,
                     temperature: float = 1.0, seed: int | None = None,
                     batch_size: int = 1024) -> list[str | None]:
        """Canonical SMILES decoded from codes [N, M]."""
        return super().decode(self.vectors(self.check_codes(codes)), greedy, temperature,
                              seed, batch_size)

    @torch.no_grad()
    def decode(self, z: np.ndarray | torch.Tensor, greedy: bool = True, temperature: float = 1.0,
               seed: int | None = None, batch_size: int = 1024, conditions: Conditions = None
               ) -> list[str | None]:
        """Decode latent rows [N, latent_dim], each snapped to its nearest codes first."""
        latent = torch.as_tensor(np.asarray(z, dtype=np.float32) if not torch.is_tensor(z) else z)
        if latent.ndim == 2 and latent.shape[1] == self.latent_dim:
            latent = latent.to(self.device, torch.float32).clone()
            ok = torch.isfinite(latent).all(dim=1)
            if ok.any():
                rows = latent[ok]
                latent[ok] = self.vectors(self.quantizer.nearest(rows.view(len(rows),
                                                                           self.codes, -1)))
        return super().decode(latent, greedy, temperature, seed, batch_size, conditions)

    def reconstruct(self, smiles: Sequence[str]) -> list[str | None]:
        """Greedy decoding of each molecule's codes (None for unusable input)."""
        codes = self.encode_codes(smiles)
        ok = [bool(row.min() >= 0) for row in codes]
        decoded = iter(self.decode_codes(codes[np.array(ok, dtype=bool)]))
        return [next(decoded) if good else None for good in ok]

    def prior_codes(self, n: int, prior: str = "fitted",
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` code sequences [n, M]: from the code prior (``fitted``) or uniform
        (``standard``)."""
        if prior == "standard":
            return torch.randint(self.config.codebook_size, (n, self.codes), device=self.device,
                                 generator=generator)
        if prior != "fitted":
            raise ValueError(f"prior must be fitted or standard, got '{prior}'")
        if not bool(self.code_prior_trained):
            raise ValueError("this VQ model's code prior is not trained yet: `molvae train` "
                             "trains it after the VAE (--resume finishes a stopped run); "
                             "prior standard draws codes uniformly meanwhile")
        return self.code_prior.sample(n, generator)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None,
               batch_size: int = 1024, prior: str = "fitted", conditions: Conditions = None,
               before_batch: Callable[[int], None] | None = None) -> list[str | None]:
        """``n`` molecules: codes from ``prior`` (see :meth:`prior_codes`), then tokens
        sampled at ``temperature``."""
        if conditions is not None:
            raise ValueError("this model was trained without conditions")
        generator = torch.Generator(device=self.device).manual_seed(seed) \
            if seed is not None else None
        smiles: list[str | None] = []
        for start in range(0, n, batch_size):
            if before_batch is not None:
                before_batch(start)
            z = self.vectors(self.prior_codes(min(batch_size, n - start), prior, generator))
            ids = self.decode_ids(z, greedy=False, temperature=temperature,
                                  generator=generator).cpu().tolist()
            smiles.extend(self.vocab.to_smiles(row) for row in ids)
        return smiles

    @torch.no_grad()
    def code_nll(self, codes: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
        """-log p(codes) under the code prior, nats per row [N] (float64)."""
        found = self.check_codes(codes)
        return np.concatenate([self.code_prior.nll(found[s:s + batch_size]).double().cpu().numpy()
                               for s in range(0, len(found), batch_size)] or [np.zeros(0)])


def is_vq(model: SelfiesVAE) -> bool:
    return isinstance(model, VQVAE)


def require_gaussian(model: SelfiesVAE, what: str) -> None:
    """Refuse ``what`` (a verb needing a continuous latent space) for a VQ model."""
    if is_vq(model):
        raise ValueError(f"{what} needs a continuous latent space: this is a VQ model (discrete "
                         "codes); use a Gaussian model (molvae train without --latent vq)")


def network(config: ModelConfig, vocab: Vocab) -> SelfiesVAE:
    """The model class ``config.latent`` names, built (Gaussian for models saved before VQ)."""
    if config.latent not in LATENTS:
        raise ValueError(f"latent must be one of {', '.join(LATENTS)}, got '{config.latent}'")
    return (VQVAE if config.latent == "vq" else SelfiesVAE)(config, vocab)
