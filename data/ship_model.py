"""Ship a trained model with molvae: half-precision weights into ``molvae/pretrained/NAME/``.

    python data/ship_model.py MODEL_DIR NAME --card MODEL_CARD.md

The weights are stored as float16 (half the size; loading casts them back to float32), with
tensors and plain data only, so ``torch.load(weights_only=True)`` reads them. The card says
what the model was trained on, how, on what, for how long, and what it measured.
"""

from __future__ import annotations

import argparse
import shutil

import torch

from molvae.model.pretrained import PRETRAINED_ROOT
from molvae.model.store import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a trained model folder (holding model.pt)")
    parser.add_argument("name", help="the name users pass as --model")
    parser.add_argument("--card", required=True, help="the model card (Markdown)")
    args = parser.parse_args()
    folder = PRETRAINED_ROOT / args.name
    path = save_model(load_model(args.model, "cpu"), folder, dtype=torch.float16)
    shutil.copyfile(args.card, folder / "MODEL_CARD.md")
    print(f"shipped {args.model} as '{args.name}': {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
