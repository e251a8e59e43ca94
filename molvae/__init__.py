"""molvae: molecular design with a SELFIES GRU variational auto-encoder.

The few things a notebook needs, importable without loading torch or RDKit until first use::

    import molvae

    model = molvae.load("model")              # a folder, models:/NAME/VERSION or runs:/ID/model
    molvae.sample(model, 10)                  # SMILES from the fitted prior
    z = molvae.encode(model, ["CCO"])         # posterior means [N, latent_dim]
    molvae.decode(model, z)                   # SMILES per latent row
    molvae.interpolate(model, "CCO", "c1ccccc1O", steps=5)
    molvae.reconstruct(model, ["CCO"])
    molvae.elbo(model, ["CCO"])               # ELBO terms: an out-of-distribution score
    molvae.optimize(model, objective=lambda smiles: ..., budget=100)
    molvae.analogs(model, ["CCO"], n=20)      # similar molecules, for data augmentation

See :mod:`molvae.api` for the arguments. Each command-line stage is also one Python call:
``molvae.stages.registry.run_stage(name, config)``.
"""

from __future__ import annotations

from typing import Any

from molvae.version import __version__

API = ("load", "sample", "encode", "decode", "interpolate", "reconstruct", "elbo", "predict",
       "optimize", "analogs")


def __getattr__(name: str) -> Any:
    """The API functions of :mod:`molvae.api`, imported on first use."""
    if name in API:
        from molvae import api

        return getattr(api, name)
    raise AttributeError(f"module 'molvae' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


__all__ = ["__version__", *API]
