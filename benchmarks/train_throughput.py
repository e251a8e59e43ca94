"""Training throughput of the VAE presets: molecules/s per optimizer step and peak memory.

    python benchmarks/train_throughput.py --presets tiny default --batch-size 256 --steps 20

Uses MOSES-like molecules (data/moses_sample.csv.gz, else the test fixture), the real
batching, objective and AdamW step, with bf16 autocast on CUDA as in ``molvae train``.
The first steps (warm-up) are not timed.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from molvae.batching import TokenDataset, collate, epoch_batches
from molvae.io import read_table
from molvae.model import PRESETS, build_model, choose_device
from molvae.tokens import Vocab, smiles_to_selfies
from molvae.validation import autocast, objective

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "data" / "moses_sample.csv.gz", ROOT / "tests" / "fixtures" / "molecules.csv")
WARMUP_STEPS = 3


def load_molecules(n: int) -> tuple[list[str], Vocab]:
    """Up to ``n`` SELFIES from the first data source that exists, and their vocabulary."""
    source = next(p for p in SOURCES if p.is_file())
    smiles = read_table(source)["smiles"].head(n)
    selfies = [s for s in map(smiles_to_selfies, smiles) if s]
    print(f"{len(selfies)} molecules from {source.relative_to(ROOT)}")
    return selfies, Vocab.build(selfies)


def peak_memory(device: torch.device) -> str:
    """Peak memory so far: CUDA allocator peak, or the process's maximum resident set."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB CUDA"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS"


def benchmark(preset: str, selfies: list[str], vocab: Vocab, batch_size: int, steps: int,
              device: torch.device) -> None:
    torch.manual_seed(0)
    model = build_model(vocab, preset).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = TokenDataset(selfies, vocab)
    batches = epoch_batches(data.lengths, batch_size, seed=0, epoch=0)
    batches = (batches * (1 + (steps + WARMUP_STEPS) // max(len(batches), 1)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    molecules, seconds = 0, 0.0
    for index, rows in enumerate(batches[:steps + WARMUP_STEPS]):
        started = time.perf_counter()
        batch = collate([data[i] for i in rows]).to(device)
        with autocast(device, True):
            terms = objective(model(batch.tokens, batch.lengths), batch, vocab.pad_id, beta=1.0)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= WARMUP_STEPS:
            seconds += time.perf_counter() - started
            molecules += len(rows)
    params = sum(p.numel() for p in model.parameters())
    print(f"train {preset:8s} {params:>10,d} params  batch {batch_size:4d}  "
          f"{molecules / seconds:9.0f} molecules/s  ({seconds / steps * 1000:.0f} ms/step)  "
          f"peak {peak_memory(device)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=PRESETS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per preset")
    parser.add_argument("--molecules", type=int, default=20_000, help="molecules to read")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    selfies, vocab = load_molecules(args.molecules)
    print(f"vocabulary {len(vocab)} tokens, mean length "
          f"{np.mean([len(vocab.encode(s)) for s in selfies]):.1f} tokens with bos/eos")
    for preset in args.presets:
        benchmark(preset, selfies, vocab, args.batch_size, args.steps, device)


if __name__ == "__main__":
    main()
