"""The model a training run starts from: a new one, its own checkpoint's (``--resume``), or the
weights of a trained model (``--init-from``: fine-tuning, or a second schedule for a finished
run, with a new optimizer and learning-rate schedule), and the prior trained with it, if any."""

from __future__ import annotations

import logging

import numpy as np
import torch

from molvae.config import ConfigError
from molvae.data.batching import DeviceTokens, PreparedData
from molvae.model.mixture_prior import MixturePrior
from molvae.model.presets import build_model
from molvae.model.prior import parse_prior_fit
from molvae.model.store import load_model, model_from_state
from molvae.model.vae import SelfiesVAE
from molvae.tracking.models import local_model_dir
from molvae.training.checkpoint import CHECKPOINT_FILE
from molvae.training.config import TrainConfig

log = logging.getLogger(__name__)

# options of a new model that --init-from takes from the model instead, named as in its config
ARCHITECTURE = ("embed_dim", "hidden_dim", "num_layers", "encoder_hidden_dim", "encoder_layers",
                "latent_dim")


def initial_model(config: TrainConfig, data: PreparedData, checkpoint: dict | None
                  ) -> tuple[SelfiesVAE, PreparedData]:
    """A new model, initialized from ``config.seed``; the checkpoint's, which must fit the
    options that fix its architecture; or, with ``init_from`` and no checkpoint yet, the
    trained model's weights. Returned with the data in the model's vocabulary (a fine-tuned
    model keeps its own, which must hold every token of the data)."""
    torch.manual_seed(config.seed)
    if checkpoint is not None:
        model = model_from_state(checkpoint["model"])
        config.check_resume(checkpoint["train_config"])
        return model, _in_vocabulary(model, data, f"{config.out}/{CHECKPOINT_FILE}")
    if config.init_from is not None:
        model = _trained_model(config, data)
        return model, _in_vocabulary(model, data, str(config.init_from))
    return _new_model(config, data), data


def initial_prior(config: TrainConfig, model: SelfiesVAE, train: DeviceTokens,
                  checkpoint: dict | None) -> MixturePrior | None:
    """The mixture trained in the KL term (``prior: learned:K``), on the model's device: the
    checkpoint's, or K components started at the posteriors of K random training molecules
    (widened: :meth:`MixturePrior.start_at`), so they begin where the codes are (an
    --init-from model's codes above all)."""
    kind, components, _ = parse_prior_fit(config.prior)
    if kind != "learned":
        return None
    prior = MixturePrior(components, model.latent_dim).to(model.device)
    if checkpoint is not None:
        prior.load_state_dict(checkpoint["prior"])
        return prior
    if components > len(train):
        raise ConfigError(f"prior {config.prior} needs at least {components} training "
                          f"molecules, got {len(train)}")
    rows = np.random.default_rng(config.seed).choice(len(train), components, replace=False)
    codes = []
    with torch.no_grad():
        for start in range(0, components, config.batch_size):
            batch = train.batch(rows[start:start + config.batch_size].tolist())
            codes.append(model.encode_tokens(batch.tokens, batch.lengths, batch.conditions))
    prior.start_at(torch.cat([mu for mu, _ in codes]), torch.cat([lv for _, lv in codes]))
    return prior


def _new_model(config: TrainConfig, data: PreparedData) -> SelfiesVAE:
    """A model of the config's size that carries the training data's property and condition
    statistics, so it reads and predicts them in their own units."""
    model = build_model(data.vocab, config.preset, data.property_names, data.condition_names,
                        embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
                        num_layers=config.num_layers, latent_dim=config.latent_dim,
                        encoder_hidden_dim=config.encoder_hidden_dim,
                        encoder_layers=config.encoder_layers,
                        word_dropout=config.word_dropout, **config.latent_options())
    _carry_statistics(model, data)
    return model


def _trained_model(config: TrainConfig, data: PreparedData) -> SelfiesVAE:
    """The weights of ``config.init_from`` in float32, checked against the data and options:
    its architecture is its own, so a size option that disagrees is an error, not ignored."""
    source = str(config.init_from)
    model = load_model(local_model_dir(source), device="cpu")
    saved = {**vars(model.config),
             "encoder_hidden_dim": model.config.encoder_hidden_dim or model.config.hidden_dim,
             "encoder_layers": model.config.encoder_layers or model.config.num_layers}
    clashing = [f"{key} ({getattr(config, key)} given, {saved[key]} in the model)"
                for key in ARCHITECTURE
                if getattr(config, key) is not None and getattr(config, key) != saved[key]]
    if clashing:
        raise ConfigError(f"init_from {source} fixes the architecture; drop or match "
                          f"{', '.join(clashing)}")
    for key, names in (("property_head", model.config.property_names),
                       ("condition", model.config.condition_names)):
        if list(getattr(config, key)) != list(names):
            raise ConfigError(f"{key} must be the model's {list(names)} with init_from "
                              f"{source}, got {list(getattr(config, key))}")
    if config.latent != model.config.latent:
        raise ConfigError(f"latent must be the model's '{model.config.latent}' with init_from "
                          f"{source}, got '{config.latent}'")
    _carry_statistics(model, data)
    log.info("starting from the weights of %s (a new optimizer and schedule)", source)
    return model


def _in_vocabulary(model: SelfiesVAE, data: PreparedData, source: str) -> PreparedData:
    try:
        data = data.in_vocabulary(model.vocab)
    except ValueError as err:
        stereo = any(mark in token for token in data.vocab.tokens
                     if token not in model.vocab.tokens for mark in "@/\\")
        hint = ("; the model knows no stereochemistry: prep them with --no-stereo, or train a "
                "new model") if stereo else "; train a new model on them instead"
        raise ValueError(f"{source} cannot read these molecules: {err}{hint}") from None
    if data.vocab.max_length < max(data.train.lengths.max(), data.val.lengths.max()) - 2:
        log.warning("some molecules are longer than %s writes (%d tokens): it cannot sample "
                    "them", source, data.vocab.max_length)
    return data


def _carry_statistics(model: SelfiesVAE, data: PreparedData) -> None:
    model.property_mean.copy_(torch.from_numpy(data.property_mean))
    model.property_std.copy_(torch.from_numpy(data.property_std))
    model.condition_mean.copy_(torch.from_numpy(data.condition_mean))
    model.condition_std.copy_(torch.from_numpy(data.condition_std))
