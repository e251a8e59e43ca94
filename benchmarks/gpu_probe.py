"""What the GPU path really does, measured on the device: host syncs per training step (with
``torch.cuda.set_sync_debug_mode``) and the dtypes the GRUs and the output layer compute in
under ``--amp``.

    python benchmarks/gpu_probe.py --steps 20      # on a CUDA machine (see gpu_check.sh)

Runs the training loop's own step (batching, loss, AdamW, clipping, the bf16 autocast of
``molvae train``) on MOSES-like molecules; the count of synchronizing CUDA calls over N steps
and over 2N steps must be the same (no per-step sync), and the GRU state must be float32.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pandas as pd
import torch

from molvae.data.batching import DeviceTokens, TokenDataset, epoch_batches
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.devices import autocast
from molvae.model.loss import vae_loss
from molvae.model.presets import build_model

DATA = Path(__file__).resolve().parents[1] / "data" / "moses_sample.csv.gz"


def syncs_over(steps: int, model: torch.nn.Module, tokens: DeviceTokens, batches: list,
               optimizer: torch.optim.Optimizer, pad: int) -> int:
    """Synchronizing CUDA calls over ``steps`` training steps (warnings of sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        loss_sum = torch.zeros((), device="cuda")
        for rows in batches[:steps]:
            batch = tokens.batch(rows)
            with autocast(torch.device("cuda"), True):
                terms = vae_loss(model(batch.tokens, batch.lengths), batch, pad, 0.1, 0.0, 1.0)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            loss_sum += terms["loss"].detach()
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False}))
        return
    selfies = [s for s in map(smiles_to_selfies, pd.read_csv(DATA)["smiles"][:20000]) if s]
    vocab = Vocab.build(selfies)
    data = TokenDataset.from_selfies(selfies, vocab)
    model = build_model(vocab, "default").cuda().train()
    dtypes: dict[str, str] = {}
    model.decoder.register_forward_hook(
        lambda m, a, out: dtypes.setdefault("decoder_gru_state", str(out[1].dtype)))
    model.to_logits.register_forward_hook(
        lambda m, a, out: dtypes.setdefault("output_layer", str(out.dtype)))
    tokens = DeviceTokens(data, torch.device("cuda"))
    batches = epoch_batches(data.lengths, args.batch_size, 0, 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    syncs_over(3, model, tokens, batches, optimizer, vocab.pad_id)  # warm-up
    once = syncs_over(args.steps, model, tokens, batches, optimizer, vocab.pad_id)
    twice = syncs_over(2 * args.steps, model, tokens, batches, optimizer, vocab.pad_id)
    print(json.dumps({"cuda": torch.cuda.get_device_name(), "steps": args.steps,
                      f"syncs_{args.steps}_steps": once, f"syncs_{2 * args.steps}_steps": twice,
                      "syncs_per_step": (twice - once) / args.steps, **dtypes}))


if __name__ == "__main__":
    main()
