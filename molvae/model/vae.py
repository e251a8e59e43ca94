"""The SELFIES variational auto-encoder: GRU encoder, Gaussian latent, GRU decoder.

Shape of the model (Gómez-Bombarelli et al. 2018, Bowman et al. 2016, with SELFIES tokens):

    tokens ─ embedding ─ bidirectional GRU ─┬─ mu ─────┐
                                            └─ logvar ─┴─ z = mu + sigma * eps
    z ─ linear ─ initial decoder state;  every decoder step reads [token embedding ; z]
    z ─ MLP ─ standardized properties  (optional joint property head)

A conditional model (CVAE, ``condition_names``) also reads standardized properties c: the
encoder's summary is concatenated with c before mu/logvar, the decoder's initial state comes
from [z ; c] and every decoder step reads [token embedding ; z ; c]. Tensor-level methods
(``forward``, ``encode_tokens``, ``teacher_forced_logits``, ``decode_ids``) take c standardized;
molecule-level ones (``encode``, ``decode``, ``sample``) take raw values (or one dict of targets)
and standardize them with the training statistics the model keeps.

The decoder sees z at every step so that it cannot ignore the latent as easily (a common
cause of posterior collapse with strong autoregressive decoders).

Sampling draws z from one of two priors. ``standard`` is the textbook N(0, I). ``fitted`` (the
default) is a Gaussian fitted to the posterior means of held-out molecules after each epoch
(Ledoit-Wolf covariance): with the low KL weights that keep a latent space informative, the
molecules' codes fill only part of N(0, I), and decoding from the rest gives small, odd
molecules; sampling where the data actually lies does not (ex-post density estimation, Ghosh
et al. 2020). A model that was never fitted samples from N(0, I) either way.

Everything that takes molecules (``encode``, ``decode``, ``sample``...) is batched, runs
under ``torch.no_grad()`` on the model's device, and speaks canonical SMILES. Saving and
loading live in :mod:`molvae.model.store`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from molvae.data.batching import pad_batch
from molvae.data.tokens import UNSEEN, Vocab, tokenize
from molvae.model.conditions import Conditions, ConditionsMixin
from molvae.model.prior import FittedPriorMixin

log = logging.getLogger(__name__)

@dataclass
class ModelConfig:
    """Everything needed to rebuild the network (stored in every checkpoint). Sizes have no
    defaults here: :mod:`molvae.model.presets` declares them, and a saved model carries its own.

    Attributes:
        vocab_size: number of token ids (specials included).
        max_length: longest molecule in tokens, without bos/eos; decoding stops after
            ``max_length + 1`` steps.
        embed_dim: token embedding size (shared by encoder and decoder).
        hidden_dim: decoder GRU state size per layer.
        num_layers: stacked decoder GRU layers.
        latent_dim: size of z.
        encoder_hidden_dim: encoder GRU state size per direction (None: ``hidden_dim``).
        encoder_layers: stacked encoder GRU layers (None: ``num_layers``).
        dropout: dropout between stacked GRU layers (no effect with one layer).
        word_dropout: probability that a teacher-forced decoder input becomes ``<unk>`` during
            training, which forces the decoder to rely on z.
        property_names: properties predicted from z by the joint head (empty: no head).
        condition_names: properties the encoder and decoder are conditioned on (empty: an
            unconditional VAE).
        latent: ``gaussian`` (this class) or ``vq`` (:class:`molvae.model.vq.VQVAE`: z is
            ``codes`` vectors of size latent_dim / codes, each one of ``codebook_size``; its
            code prior is a GRU of ``code_prior_dim``).
    """

    vocab_size: int
    max_length: int
    embed_dim: int
    hidden_dim: int
    num_layers: int
    latent_dim: int
    encoder_hidden_dim: int | None = None
    encoder_layers: int | None = None
    dropout: float = 0.1
    word_dropout: float = 0.0
    property_names: list[str] = field(default_factory=list)
    condition_names: list[str] = field(default_factory=list)
    latent: str = "gaussian"  # models saved before VQ carried no such field: Gaussian
    codes: int = 0
    codebook_size: int = 0
    code_prior_dim: int = 0


@dataclass
class VAEOutput:
    """What ``SelfiesVAE.forward`` returns.

    Attributes:
        logits: [B, T-1, V] next-token logits; position t predicts ``tokens[:, t + 1]``.
        mu, logvar, z: [B, latent_dim] posterior mean, log-variance and the sample used.
        properties: [B, P] standardized property predictions, or None without a head.
        commitment: a VQ model's commitment term [], per molecule (None: Gaussian).
    """

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    properties: torch.Tensor | None = None
    commitment: torch.Tensor | None = None


# buffers added after the first saved models; models without them load with their defaults
OPTIONAL_BUFFERS = frozenset({"latent_mean", "latent_scale", "condition_mean", "condition_std",
                              "mixture_weights", "mixture_means", "mixture_scales"})


GRUInput = torch.Tensor | PackedSequence


@overload
def run_gru(gru: nn.GRU, inputs: torch.Tensor, state: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def run_gru(gru: nn.GRU, inputs: PackedSequence, state: torch.Tensor | None = None
            ) -> tuple[PackedSequence, torch.Tensor]: ...
def run_gru(gru: nn.GRU, inputs: GRUInput, state: torch.Tensor | None = None
            ) -> tuple[GRUInput, torch.Tensor]:
    """Run a GRU in float32 with autocast off, whatever autocast is on around it.

    Under CUDA autocast PyTorch runs cuDNN's RNN in float16 (not the bfloat16 asked for),
    with no gradient scaler to keep small gradients from underflowing. So the GRUs, the model's
    recurrent core, compute in float32 (TF32 tensor cores on Ampere and later); the linear
    layers around them run in bfloat16 under ``--amp``.
    """
    device = (inputs.data if isinstance(inputs, PackedSequence) else inputs).device.type
    # a device without autocast (meta, where tests build batches) has none to turn off
    with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) \
            else nullcontext():
        return gru(inputs.float(), None if state is None else state.float())


def _generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


class SelfiesVAE(ConditionsMixin, FittedPriorMixin, nn.Module):
    """GRU VAE over SELFIES token ids; see the module docstring for the architecture."""

    config: ModelConfig
    # buffers, declared so that their type is a tensor (nn.Module's attribute lookup says
    # "a tensor or a module")
    property_mean: torch.Tensor
    property_std: torch.Tensor
    banned_tokens: torch.Tensor
    banned_first_tokens: torch.Tensor

    def __init__(self, config: ModelConfig, vocab: Vocab) -> None:
        super().__init__()
        if config.vocab_size != len(vocab):
            raise ValueError(f"config.vocab_size={config.vocab_size} but the vocabulary has "
                             f"{len(vocab)} tokens")
        self.config = config
        self.vocab = vocab
        self.latent_dim = config.latent_dim
        hidden, layers = config.hidden_dim, config.num_layers
        encoder_hidden = config.encoder_hidden_dim or hidden
        encoder_layers = config.encoder_layers or layers
        between = config.dropout if layers > 1 else 0.0
        n_cond = len(config.condition_names)  # inputs below grow by n_cond only in a CVAE
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim,
                                      padding_idx=vocab.pad_id)
        self.encoder = nn.GRU(config.embed_dim, encoder_hidden, encoder_layers, batch_first=True,
                              bidirectional=True,
                              dropout=config.dropout if encoder_layers > 1 else 0.0)
        self.to_mu = nn.Linear(2 * encoder_hidden + n_cond, config.latent_dim)
        self.to_logvar = nn.Linear(2 * encoder_hidden + n_cond, config.latent_dim)
        self.latent_to_hidden = nn.Linear(config.latent_dim + n_cond, layers * hidden)
        self.decoder = nn.GRU(config.embed_dim + config.latent_dim + n_cond, hidden, layers,
                              batch_first=True, dropout=between)
        self.to_logits = nn.Linear(hidden, config.vocab_size)
        n_props = len(config.property_names)
        self.property_head = nn.Sequential(
            nn.Linear(config.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_props),
        ) if n_props else None
        # training-set statistics, so predictions come back in real units
        self.register_buffer("property_mean", torch.zeros(n_props))
        self.register_buffer("property_std", torch.ones(n_props))
        self.register_buffer("condition_mean", torch.zeros(n_cond))
        self.register_buffer("condition_std", torch.ones(n_cond))
        # the fitted prior (N(0, I) until fitted; see FittedPriorMixin)
        self._register_prior_buffers()
        # tokens the decoder must never emit
        banned = torch.zeros(config.vocab_size, dtype=torch.bool)
        banned[[vocab.pad_id, vocab.bos_id, vocab.unk_id]] = True
        self.register_buffer("banned_tokens", banned, persistent=False)
        # the first token must be an atom, so no decoded molecule is empty
        not_atoms = [i for i, t in enumerate(vocab.tokens)
                     if i == vocab.eos_id or "Branch" in t or "Ring" in t]
        self.register_buffer("banned_first_tokens", banned.clone().index_fill_(
            0, torch.tensor(not_atoms), True), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.to_mu.weight.device

    # ---- tensor-level building blocks (used by training) ---------------------------------

    def encode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor,
                      conditions: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mu, logvar) [B, latent_dim] of padded token ids [B, T] with ``lengths``."""
        summary = self.encoder_summary(tokens, lengths, conditions)
        return self.to_mu(summary), self.to_logvar(summary)

    def encoder_summary(self, tokens: torch.Tensor, lengths: torch.Tensor,
                        conditions: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder GRU's last states, both directions (and c) [B, 2 * H (+ C)]."""
        lengths = lengths.cpu()  # host lengths (batches are built with them there): no sync
        longest_first = bool((lengths[:-1] >= lengths[1:]).all())
        # sorted batches (as training builds them) pack without copying sort indices to the
        # device, a blocking host-to-device copy at every step
        packed = pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True,
                                      enforce_sorted=longest_first)
        _, last = run_gru(self.encoder, packed)  # [layers * 2, B, H]
        summary = torch.cat([last[-2], last[-1]], dim=-1)  # top layer, both directions
        return self._with_conditions(summary, conditions)

    def initial_state(self, z: torch.Tensor, conditions: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Decoder GRU state [layers, B, H] computed from z (and c)."""
        state = torch.tanh(self.latent_to_hidden(self._with_conditions(z, conditions)))
        return state.view(len(z), self.config.num_layers, -1).transpose(0, 1).contiguous()

    def teacher_forced_logits(self, z: torch.Tensor, tokens: torch.Tensor,
                              conditions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T-1, V] for predicting ``tokens[:, 1:]`` from ``tokens[:, :-1]`` and z."""
        inputs = tokens[:, :-1]
        if self.training and self.config.word_dropout > 0:
            dropped = torch.rand(inputs.shape, device=inputs.device) < self.config.word_dropout
            dropped &= (inputs != self.vocab.pad_id) & (inputs != self.vocab.bos_id)
            inputs = inputs.masked_fill(dropped, self.vocab.unk_id)
        steps = inputs.shape[1]
        code = self._with_conditions(z, conditions)
        embedded = torch.cat([self.embedding(inputs), code.unsqueeze(1).expand(-1, steps, -1)],
                             dim=-1)
        outputs, _ = run_gru(self.decoder, embedded, self.initial_state(z, conditions))
        return self.to_logits(outputs)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                conditions: torch.Tensor | None = None) -> VAEOutput:
        """Encode, draw z with the reparameterization trick, decode with teacher forcing.

        Args:
            tokens: [B, T] ids (bos ... eos, then pad).
            lengths: [B] number of non-pad tokens per row (bos and eos included).
            conditions: [B, C] standardized condition values (conditional models only).
        """
        mu, logvar = self.encode_tokens(tokens, lengths, conditions)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        properties = self.property_head(z) if self.property_head is not None else None
        return VAEOutput(self.teacher_forced_logits(z, tokens, conditions), mu, logvar, z,
                         properties)

    # ---- molecule-level API ---------------------------------------------------------------

    def check_encodable(self, smiles: Sequence[str]) -> None:
        """Raise a ValueError naming the first molecule this model cannot encode and why, for
        verbs that need every molecule (a path between two, a start to improve)."""
        for text, reason in zip(smiles, tokenize(self.vocab, smiles).reasons, strict=True):
            if reason is not None:
                raise ValueError(f"molecule {text} has {reason}" if reason.startswith(UNSEEN)
                                 else f"cannot encode SMILES {text!r} ({reason})")

    @torch.no_grad()
    def encode(self, smiles: Sequence[str], batch_size: int = 512, conditions: Conditions = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-variance, float32 [N, latent_dim]; NaN rows for bad SMILES
        and for molecules with tokens outside the vocabulary.

        A conditional model reads ``conditions`` (raw, [N, C]); by default the molecules' own
        properties.
        """
        mu = np.full((len(smiles), self.latent_dim), np.nan, dtype=np.float32)
        logvar = mu.copy()
        ids = tokenize(self.vocab, smiles).ids
        if conditions is None:
            conditions = self.molecule_conditions(smiles)
        cond = self.standardize_conditions(conditions, len(smiles))
        known = {i: x for i, x in enumerate(ids) if x is not None}
        usable = sorted(known, key=lambda i: -len(known[i]))  # longest first: see encode_tokens
        for start in range(0, len(usable), batch_size):
            rows = usable[start:start + batch_size]
            tokens, lengths = pad_batch([known[i] for i in rows], self.vocab.pad_id)
            batch_mu, batch_logvar = self.encode_tokens(
                tokens.to(self.device), lengths, None if cond is None else cond[rows])
            mu[rows] = batch_mu.float().cpu().numpy()
            logvar[rows] = batch_logvar.float().cpu().numpy()
        return mu, logvar

    @torch.no_grad()
    def decode_ids(self, z: torch.Tensor, greedy: bool = True, temperature: float = 1.0,
                   generator: torch.Generator | None = None,
                   conditions: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids [B, <= max_length + 1] decoded from z (and standardized conditions
        [B, C]); rows end with eos, then pad."""
        if not math.isfinite(temperature) or temperature <= 0:  # nan would sample garbage
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        vocab = self.vocab
        state = self.initial_state(z, conditions)
        code = self._with_conditions(z, conditions)
        token = torch.full((len(z),), vocab.bos_id, dtype=torch.long, device=z.device)
        finished = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        steps = []
        for position in range(self.config.max_length + 1):
            step_input = torch.cat([self.embedding(token), code], dim=-1).unsqueeze(1)
            output, state = run_gru(self.decoder, step_input, state)
            banned = self.banned_tokens if position else self.banned_first_tokens
            logits = self.to_logits(output[:, 0]).float().masked_fill(banned, float("-inf"))
            if greedy:
                token = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token = token.masked_fill(finished, vocab.pad_id)
            steps.append(token)
            finished |= token == vocab.eos_id
            if bool(finished.all()):
                break
        return torch.stack(steps, dim=1)

    @torch.no_grad()
    def decode(self, z: np.ndarray | torch.Tensor, greedy: bool = True, temperature: float = 1.0,
               seed: int | None = None, batch_size: int = 1024, conditions: Conditions = None
               ) -> list[str | None]:
        """Canonical SMILES per latent row (None only when decoding gave an empty molecule);
        a conditional model reads raw ``conditions`` (see ``standardize_conditions``). A row
        with NaN or inf is an error: the network would turn it into some molecule anyway."""
        latent = torch.as_tensor(np.asarray(z, dtype=np.float32) if not torch.is_tensor(z) else z)
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape [N, {self.latent_dim}], got {tuple(latent.shape)}")
        bad = torch.nonzero(~torch.isfinite(latent).all(dim=1)).flatten().tolist()
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (f" ... ({len(bad)} rows)" if len(bad) > 10
                                                     else "")
            raise ValueError(f"z has non-finite values (NaN or inf) in row{'s' * (len(bad) > 1)} "
                             f"{shown}; only finite latent vectors can be decoded")
        generator = _generator(self.device, seed)
        cond = self.standardize_conditions(conditions, len(latent))
        smiles: list[str | None] = []
        for start in range(0, len(latent), batch_size):
            chunk = latent[start:start + batch_size].to(self.device, torch.float32)
            ids = self.decode_ids(chunk, greedy, temperature, generator,
                                  None if cond is None else cond[start:start + batch_size]
                                  ).cpu().tolist()
            smiles.extend(self.vocab.to_smiles(row) for row in ids)
        return smiles

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None,
               batch_size: int = 1024, prior: str = "fitted", conditions: Conditions = None,
               before_batch: Callable[[int], None] | None = None) -> list[str | None]:
        """``n`` molecules: z from ``prior`` (see the module docstring), tokens sampled at
        ``temperature``; a conditional model generates for raw ``conditions`` ([n, C] or one
        dict of targets, see ``standardize_conditions``; by default the training means).
        ``before_batch(done)`` is called before each batch (a server stops abandoned work by
        raising there)."""
        generator = _generator(self.device, seed)
        cond = self.standardize_conditions(conditions, n)
        smiles: list[str | None] = []
        for start in range(0, n, batch_size):
            if before_batch is not None:
                before_batch(start)
            z = self.prior_samples(min(batch_size, n - start), prior, generator)
            ids = self.decode_ids(z, greedy=False, temperature=temperature, generator=generator,
                                  conditions=None if cond is None
                                  else cond[start:start + batch_size]).cpu().tolist()
            smiles.extend(self.vocab.to_smiles(row) for row in ids)
        return smiles

    def reconstruct(self, smiles: Sequence[str]) -> list[str | None]:
        """Greedy decoding of each molecule's posterior mean (None for unusable input)."""
        mu, _ = self.encode(smiles)
        ok = ~np.isnan(mu).any(axis=1)
        decoded = iter(self.decode(mu[ok]))
        return [next(decoded) if good else None for good in ok]

    @torch.no_grad()
    def predict_properties(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Property values [N, P] (columns ``config.property_names``) predicted from z."""
        if self.property_head is None:
            raise ValueError("this model has no property head (train with property_head set)")
        latent = torch.as_tensor(np.asarray(z, dtype=np.float32) if not torch.is_tensor(z) else z)
        standardized = self.property_head(latent.to(self.device, torch.float32))
        return (standardized * self.property_std + self.property_mean).float().cpu().numpy()
