"""Named model sizes, and a fresh model built from one."""

from __future__ import annotations

from collections.abc import Sequence

from molvae.data.tokens import Vocab
from molvae.model.vae import ModelConfig, SelfiesVAE
from molvae.model.vq import network

# Sizes only; vocab_size and max_length always come from the vocabulary.
PRESETS: dict[str, dict] = {
    # a few thousand parameters: unit tests and CPU demos
    "tiny": {"embed_dim": 8, "hidden_dim": 16, "num_layers": 1, "latent_dim": 8},
    "small": {"embed_dim": 32, "hidden_dim": 128, "num_layers": 1, "latent_dim": 32},
    # MOSES/ZINC-sized (26 tokens, <= 55 tokens per molecule). The capacity sits in the
    # decoder, which has to write whole molecules; a one-layer encoder only has to summarize
    # them, and costs a third of the compute of one as wide as the decoder.
    "default": {"embed_dim": 64, "hidden_dim": 512, "num_layers": 3, "latent_dim": 128,
                "encoder_hidden_dim": 256, "encoder_layers": 1, "dropout": 0.1},
}


def build_model(vocab: Vocab, preset: str = "default", property_names: Sequence[str] = (),
                condition_names: Sequence[str] = (), **overrides: float | int | str | None
                ) -> SelfiesVAE:
    """A fresh model sized by ``preset``; non-None ``overrides`` (e.g. latent_dim) win.
    ``condition_names`` make it a conditional VAE (CVAE) on those properties; ``latent="vq"``
    (with ``codes`` and ``codebook_size``) a VQ-VAE."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (presets: {', '.join(PRESETS)})")
    sizes = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    config = ModelConfig(vocab_size=len(vocab), max_length=vocab.max_length,
                         property_names=list(property_names),
                         condition_names=list(condition_names), **sizes)
    return network(config, vocab)
