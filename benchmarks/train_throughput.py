"""Training throughput of the VAE presets: molecules/s per optimizer step and peak memory.

    python benchmarks/train_throughput.py --presets tiny default --batch-size 256 --steps 20
    python benchmarks/train_throughput.py --presets default --moses-baseline --batch-size 512

Uses MOSES-like molecules (data/moses_sample.csv.gz, else the test fixture), the real
batching, objective and AdamW step, with bf16 autocast on CUDA as in ``molvae train``.
The first steps (warm-up) are not timed.

``--moses-baseline`` also times the MOSES benchmark's own VAE (``moses/vae/model.py``, read
out of the molsets wheel that ``prep moses`` caches, run unchanged with its default sizes, its
character vocabulary of one-hot embeddings, Adam and gradient clipping as in its trainer) on
the same molecules as SMILES, and prints our speed-up over it.
"""

from __future__ import annotations

import argparse
import resource
import time
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from molvae.data.batching import DeviceTokens, TokenDataset, epoch_batches
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.devices import autocast, choose_device
from molvae.io import read_table
from molvae.model.loss import vae_loss
from molvae.model.presets import PRESETS, build_model

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "data" / "moses_sample.csv.gz", ROOT / "tests" / "fixtures" / "molecules.csv")
WARMUP_STEPS = 3


def load_smiles(n: int) -> list[str]:
    """Up to ``n`` SMILES from the first data source that exists."""
    source = next(p for p in SOURCES if p.is_file())
    smiles = read_table(source)["smiles"].head(n).tolist()
    print(f"{len(smiles)} molecules from {source.relative_to(ROOT)}")
    return smiles


def to_selfies(smiles: list[str]) -> tuple[list[str], Vocab]:
    """SELFIES of the molecules that encode, and their vocabulary."""
    selfies = [s for s in map(smiles_to_selfies, smiles) if s]
    return selfies, Vocab.build(selfies)


def load_molecules(n: int) -> tuple[list[str], Vocab]:
    """Up to ``n`` SELFIES from the first data source that exists, and their vocabulary."""
    return to_selfies(load_smiles(n))


def peak_memory(device: torch.device) -> str:
    """Peak memory so far: CUDA allocator peak, or the process's maximum resident set."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB CUDA"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS"


def timed_steps(step: Callable[[list[int]], None], batches: list[list[int]], steps: int,
                device: torch.device) -> float:
    """Molecules/s of ``step`` over ``steps`` batches, after WARMUP_STEPS untimed ones."""
    batches = batches * (1 + (steps + WARMUP_STEPS) // max(len(batches), 1))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    molecules, seconds = 0, 0.0
    for index, rows in enumerate(batches[:steps + WARMUP_STEPS]):
        started = time.perf_counter()
        step(rows)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= WARMUP_STEPS:
            seconds += time.perf_counter() - started
            molecules += len(rows)
    return molecules / seconds


def report(label: str, model: torch.nn.Module, batch_size: int, speed: float,
           device: torch.device) -> None:
    params = sum(p.numel() for p in model.parameters())
    print(f"train {label:14s} {params:>10,d} params  batch {batch_size:4d}  "
          f"{speed:9.0f} molecules/s  ({batch_size / speed * 1000:.0f} ms/step)  "
          f"peak {peak_memory(device)}")


def benchmark(preset: str, selfies: list[str], vocab: Vocab, batch_size: int, steps: int,
              device: torch.device) -> float:
    """Our training step (length-bucketed batches index-selected on the device, bf16 on CUDA);
    returns molecules/s."""
    torch.manual_seed(0)
    model = build_model(vocab, preset).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = TokenDataset.from_selfies(selfies, vocab)
    on_device = DeviceTokens(data, device)

    def step(rows: list[int]) -> None:
        batch = on_device.batch(rows)
        with autocast(device, True):
            terms = vae_loss(model(batch.tokens, batch.lengths), batch, vocab.pad_id, beta=1.0,
                             free_bits=0.0, property_weight=0.0)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    speed = timed_steps(step, epoch_batches(data.lengths, batch_size, seed=0, epoch=0), steps,
                        device)
    report(preset, model, batch_size, speed, device)
    return speed


class CharVocab:
    """The vocabulary interface MOSES's VAE expects: characters plus bos/eos/unk/pad, one-hot."""

    def __init__(self, smiles: list[str]) -> None:
        self.chars = sorted({c for s in smiles for c in s}) + ["<bos>", "<eos>", "<pad>", "<unk>"]
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.bos, self.eos, self.pad, self.unk = (self.index[t] for t in self.chars[-4:])
        self.vectors = torch.eye(len(self.chars))

    def __len__(self) -> int:
        return len(self.chars)

    def string2ids(self, string: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        ids = [self.index.get(c, self.unk) for c in string]
        return [self.bos] * add_bos + ids + [self.eos] * add_eos


def moses_vae_class() -> type:
    """``moses.vae.model.VAE`` from the cached molsets wheel (it imports torch alone)."""
    from molvae.data.sources import moses_wheel

    module = types.ModuleType("moses_vae_model")
    with zipfile.ZipFile(moses_wheel()) as wheel:
        exec(compile(wheel.read("moses/vae/model.py"), "moses/vae/model.py", "exec"),
             module.__dict__)
    return module.VAE


def moses_baseline(smiles: list[str], batch_size: int, steps: int, device: torch.device) -> float:
    """The MOSES VAE's training step with its defaults; returns molecules/s."""
    config = types.SimpleNamespace(  # moses/vae/config.py defaults
        q_cell="gru", q_bidir=False, q_d_h=256, q_n_layers=1, q_dropout=0.5, d_cell="gru",
        d_n_layers=3, d_dropout=0.0, d_z=128, d_d_h=512, freeze_embeddings=False)
    torch.manual_seed(0)
    model = moses_vae_class()(CharVocab(smiles), config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    order = np.random.default_rng(0).permutation(len(smiles))
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def step(rows: list[int]) -> None:  # moses/vae/trainer.py: collate and _train_epoch
        texts = sorted((smiles[i] for i in rows), key=len, reverse=True)
        kl, recon = model(tuple(model.string2tensor(t, device=device) for t in texts))
        optimizer.zero_grad()
        (0.05 * kl + recon).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50)
        optimizer.step()

    speed = timed_steps(step, batches, steps, device)
    report("moses-vae", model, batch_size, speed, device)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=PRESETS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per preset")
    parser.add_argument("--molecules", type=int, default=20_000, help="molecules to read")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--moses-baseline", action="store_true",
                        help="also time the MOSES benchmark's VAE on the same molecules")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    smiles = load_smiles(args.molecules)
    selfies, vocab = to_selfies(smiles)
    print(f"vocabulary {len(vocab)} tokens, mean length "
          f"{np.mean([len(vocab.encode(s)) for s in selfies]):.1f} tokens with bos/eos")
    ours = {preset: benchmark(preset, selfies, vocab, args.batch_size, args.steps, device)
            for preset in args.presets}
    if args.moses_baseline:
        baseline = moses_baseline(smiles, args.batch_size, args.steps, device)
        for preset, speed in ours.items():
            print(f"speed-up of {preset} over the MOSES VAE: {speed / baseline:.2f}x")


if __name__ == "__main__":
    main()
